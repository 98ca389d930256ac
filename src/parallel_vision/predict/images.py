"""A user's image file as the model's input: decoded with Pillow, brought to the dataset's shape and
polarity, every step written down. numpy, Pillow and scipy only (no framework; of the package, only `errors`).

    decode(path, channels)          -> uint8 (H, W, C), the steps (EXIF orientation, alpha, channels)
    preprocess(pixels, target, …)   -> uint8 (side, side, C) the model sees, the steps
    load_image(path, target, …)     -> Prepared (both, in one)

What each dataset gets (docs/predict.md):
- an image already in the dataset's shape and polarity goes in unchanged;
- mnist, kmnist: inverted if the background is light (`--invert auto` judges the border), background
  levelled to 0, the ink's bounding box fitted into 20×20 keeping the aspect ratio, then placed in 28×28
  with its centre of mass at the centre: how MNIST was made (LeCun et al.);
- fashion-mnist: the same inversion and levelling, then the longest edge fitted to 28 and the image
  centred on the canvas: how Fashion-MNIST was made (Xiao et al. 2017, no 20×20 box, no centre of mass);
- cifar10, synthetic: a plain resize to the side (the aspect ratio is not kept).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from parallel_vision.errors import DataError

#: Datasets of light ink on a black background, made like MNIST (fit into a box, centre the ink).
DIGIT_DATASETS = ("mnist", "kmnist", "fashion-mnist")
#: Ink is what is brighter than this share of the brightest pixel, once the background is levelled to 0.
INK_FRACTION = 0.1
#: The file suffixes a folder argument is searched for (any file named on the command line is tried).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
INVERT_CHOICES = ("auto", "yes", "no")
_ORIENTATION = 0x0112  # the EXIF tag
#: Fitting ink into its box: area-weighted (anti-aliased when shrinking, like MNIST's size normalisation; sharp
#: edges when enlarging, like MNIST's bilevel sources). On load_digits' 8×8 images it gave 82 % where Lanczos
#: gave 57 % and bilinear 32 % (docs/predict.md).
FIT_RESAMPLE = Image.Resampling.BOX
#: Resizing a photo to CIFAR-10's or a synthetic run's side.
RESIZE_RESAMPLE = Image.Resampling.LANCZOS


class UnreadableImage(DataError):
    """One input file that cannot be used: not an image, truncated, a decompression bomb."""


@dataclass(frozen=True)
class Target:
    """The input a run's model takes: its dataset, square side and channels."""

    dataset: str
    side: int
    channels: int


@dataclass(frozen=True)
class Prepared:
    """One file as the model sees it (uint8, before normalisation) and what was done to it."""

    path: Path
    pixels: np.ndarray
    steps: tuple[str, ...]


def decode(path: Path, channels: int) -> tuple[np.ndarray, list[str]]:
    """uint8 (H, W, channels): EXIF orientation applied, alpha flattened onto white, converted to L or RGB.
    Anything Pillow cannot read in full, or an image past Pillow's `Image.MAX_IMAGE_PIXELS`, is an
    `UnreadableImage` naming why."""
    steps: list[str] = []
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; past its limit means refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                orientation = opened.getexif().get(_ORIENTATION, 1)
                image = ImageOps.exif_transpose(opened)
                image.load()
                if orientation != 1:
                    steps.append(f"EXIF orientation {orientation} applied")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise UnreadableImage("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImage(f"truncated or corrupt image ({exc})") from None
    image, mode_steps = _to_channels(image, channels)
    pixels = np.asarray(image, dtype=np.uint8)
    return (pixels[..., None] if pixels.ndim == 2 else pixels), steps + mode_steps


def _to_channels(image: Image.Image, channels: int) -> tuple[Image.Image, list[str]]:
    steps = []
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        image = Image.fromarray(np.round(wide * 255.0 / top).clip(0, 255).astype(np.uint8))
        steps.append("16-bit scaled to 8-bit")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
        steps.append("alpha flattened onto white")
    want = "L" if channels == 1 else "RGB"
    if image.mode != want:
        steps.append(f"{image.mode} converted to {want}")
        image = image.convert(want)
    return image, steps


def border(gray: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels of a 2-D image: what the background looks like."""
    if min(gray.shape) <= 2:
        return gray.ravel()
    return np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])


def preprocess(pixels: np.ndarray, target: Target, invert: str = "auto") -> tuple[np.ndarray, list[str]]:
    """uint8 (side, side, channels) for the model, and the steps taken (none for an image already in the
    dataset's shape and polarity)."""
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_CHOICES)}; got {invert!r}")
    height, width = pixels.shape[:2]
    shaped = (height, width) == (target.side, target.side)
    if target.dataset not in DIGIT_DATASETS:
        if shaped:
            return pixels, ["unchanged (already the dataset's shape)"]
        resized = np.asarray(Image.fromarray(_squeeze(pixels)).resize((target.side, target.side), RESIZE_RESAMPLE))
        return _unsqueeze(resized), [f"resized {width}×{height} to {target.side}×{target.side} "
                                     "(aspect ratio not kept)"]
    gray = pixels[..., 0].astype(np.float64)
    edge = float(border(gray).mean())
    flip = {"yes": True, "no": False, "auto": edge > 127.5}[invert]
    if shaped and not flip:
        return pixels, ["unchanged (already the dataset's shape and polarity)"]
    steps = []
    if flip:
        gray = 255.0 - gray
        why = f"light background, border mean {edge:.0f}" if invert == "auto" else "--invert yes"
        steps.append(f"inverted ({why})")
    gray, level_step = _level(gray)
    steps.append(level_step)
    if target.dataset == "fashion-mnist":
        out, fit_steps = _fit_centred(gray, box=target.side, side=target.side)
    else:
        out, fit_steps = _fit_centred(gray, box=20, side=target.side, by_mass=True)
    return out[..., None], steps + fit_steps


def _level(gray: np.ndarray) -> tuple[np.ndarray, str]:
    """Background to 0 (the border's median), brightest pixel to 255: MNIST's black background and full ink."""
    background = float(np.median(border(gray)))
    gray = np.clip(gray - background, 0, None)
    peak = float(gray.max())
    if peak > 0:
        gray = gray * (255.0 / peak)
    return gray, f"levelled (background {background:.0f} to 0, peak {peak + background:.0f} to 255)"


def _fit_centred(gray: np.ndarray, box: int, side: int, by_mass: bool = False) -> tuple[np.ndarray, list[str]]:
    """The ink's bounding box scaled (aspect ratio kept) so its longest edge is `box`, on a black side×side
    canvas: centred on the canvas, then (`by_mass`) shifted so its centre of mass is the canvas centre."""
    ink = np.argwhere(gray > INK_FRACTION * max(float(gray.max()), 1e-9))
    if gray.max() <= 0 or not len(ink):
        return np.zeros((side, side), np.uint8), ["blank (no ink found): an all-black input"]
    (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
    crop = gray[top:bottom, left:right]
    h, w = crop.shape
    scale = box / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize((new_w, new_h), FIT_RESAMPLE))
    canvas = np.zeros((side, side), np.float64)
    y0, x0 = (side - new_h) // 2, (side - new_w) // 2
    canvas[y0:y0 + new_h, x0:x0 + new_w] = small
    canvas = np.clip(canvas, 0, 255)
    steps = [f"ink box {w}×{h} fitted into {box}×{box} as {new_w}×{new_h} (aspect ratio kept)"]
    if by_mass and canvas.sum() > 0:
        from scipy import ndimage  # lazily, as the EDA analyses: it costs every other command's start-up

        cy, cx = ndimage.center_of_mass(canvas)
        dy, dx = round((side - 1) / 2 - cy), round((side - 1) / 2 - cx)
        canvas = ndimage.shift(canvas, (dy, dx), order=0, cval=0.0)
        steps.append(f"centred by centre of mass in {side}×{side} (shifted {dx:+d}, {dy:+d} px)")
    else:
        steps.append(f"centred in {side}×{side}")
    return np.round(canvas).astype(np.uint8), steps


def _squeeze(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def _unsqueeze(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., None] if pixels.ndim == 2 else pixels


def load_image(path: Path, target: Target, invert: str = "auto") -> Prepared:
    """`path` decoded and preprocessed for `target`; an `UnreadableImage` if it cannot be used."""
    pixels, decode_steps = decode(path, target.channels)
    model_input, steps = preprocess(pixels, target, invert)
    return Prepared(path=path, pixels=model_input, steps=tuple(decode_steps + steps))


def expand(arguments: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files to predict, in order (a folder: its image files, sorted, not recursive), and the
    arguments that give none (missing, or a folder with no image), each with why."""
    files: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for arg in arguments:
        if arg.is_dir():
            found = sorted(p for p in arg.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if found:
                files += found
            else:
                failed.append((arg, f"a folder with no image files ({', '.join(IMAGE_SUFFIXES[:3])}, …)"))
        elif arg.is_file():
            files.append(arg)
        else:
            failed.append((arg, "no such file or folder"))
    return files, failed


def png_bytes(pixels: np.ndarray) -> bytes:
    """The PNG bytes of a uint8 (H, W, 1|3) image (for --save-inputs)."""
    buffer = io.BytesIO()
    Image.fromarray(_squeeze(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()
