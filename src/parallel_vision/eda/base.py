"""What every analysis returns, and the small helpers they share.

An analysis is a plain function of arrays (images uint8 (N, H, W) grey or (N, H, W, 3) RGB
colour (NHWC, as `parallel_vision.data.load` returns them), labels int (N,)) plus an rng /
class names. It returns an `AnalysisResult`: its numbers as a JSON-able dict, a caption
computed from those numbers, optional tables (also built from the numbers), its matplotlib
figures and, for colour images, a one-sentence `note` saying what it ran on (the colour
values, their luminance, or nothing: refused). Figures are `matplotlib.figure.Figure` objects
drawn on the Agg canvas, never through pyplot, so nothing here needs a display or
touches global plotting state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Pixels are stored 0..255; analyses that need floats work on 0..1 (value / 255).
FULL_SCALE = 255.0

#: ITU-R BT.601 luma weights of (R, G, B): Y = 0.299 R + 0.587 G + 0.114 B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
CHANNEL_NAMES = ("R", "G", "B")
LUMINANCE_NOTE = (
    "Colour images: this section ran on their luminance, ITU-R BT.601 Y = 0.299 R + 0.587 G + 0.114 B (0..255)."
)

#: What an analysis ran on (`AnalysisResult.input`).
INPUT_GREY, INPUT_COLOUR, INPUT_LUMINANCE = "grey", "colour", "luminance"


@dataclass
class Table:
    """A small table for the page; every cell must also be somewhere in `numbers`."""

    headers: list[str]
    rows: list[list[Any]]
    title: str = ""


@dataclass
class AnalysisResult:
    key: str
    title: str
    numbers: dict[str, Any]
    caption: str
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    """Objects for later analyses (e.g. a fitted PCA); never serialised."""
    input: str = INPUT_GREY
    """What it ran on: "grey", "colour" (all channels, handled as such) or "luminance" (of colour images)."""
    note: str = ""
    """For colour images, one sentence on how the section treats colour (shown above the caption);
    where part of an analysis is refused for colour, the sentence says so and why. Empty for grey."""

    def to_json(self) -> dict[str, Any]:
        return jsonable(
            {
                "title": self.title,
                "input": self.input,
                "note": self.note,
                "caption": self.caption,
                "numbers": self.numbers,
            }
        )


def is_colour(images: np.ndarray) -> bool:
    """True for NHWC RGB batches (N, H, W, 3); False for grey (N, H, W).

    Any other layout is refused here, so that no analysis silently treats channels as pixels.
    """
    if images.ndim == 3:
        return False
    if images.ndim == 4 and images.shape[-1] == 3:
        return True
    raise ValueError(f"expected images (N, H, W) or (N, H, W, 3) (NHWC RGB), got shape {images.shape}")


def luminance(images: np.ndarray) -> np.ndarray:
    """RGB (..., H, W, 3) on 0..255 -> float32 luminance (..., H, W) on 0..255 (ITU-R BT.601)."""
    return np.asarray(images, dtype=np.float32) @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)


def intensity(images: np.ndarray) -> np.ndarray:
    """Grey images as they are; colour (N, H, W, 3) as their luminance (N, H, W) (float32, 0..255)."""
    return luminance(images) if is_colour(images) else images


def colour_input(colour: bool, note: str) -> tuple[str, str]:
    """(input, note) of a section that handles colour as such; grey: ("grey", "")."""
    return (INPUT_COLOUR, note) if colour else (INPUT_GREY, "")


def luminance_input(colour: bool, extra: str = "") -> tuple[str, str]:
    """(input, note) of a section that runs on luminance for colour images; grey: ("grey", "")."""
    return (INPUT_LUMINANCE, LUMINANCE_NOTE + (f" {extra}" if extra else "")) if colour else (INPUT_GREY, "")


def shape_text(shape: Sequence[int]) -> str:
    """(28, 28) -> '28×28'; (32, 32, 3) -> '32×32×3'."""
    return "×".join(str(int(v)) for v in shape)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Grey (..., H, W) -> (..., H, W, 3) by repeating the value in each channel."""
    return np.repeat(np.asarray(images)[..., None], 3, axis=-1)


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure bound to the Agg canvas (no display, no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def image_grid(
    images: np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cmap: str = "gray",
    cell: float = 0.75,
    vmin: float | None = 0.0,
    vmax: float | None = None,
    title: str | None = None,
    label_width: float = 1.1,
) -> Figure:
    """A (rows, cols, H, W) grey or (rows, cols, H, W, 3) RGB grid of images as ONE mosaic (one imshow,
    not rows×cols axes: much faster).

    Panels are separated by white gutters; all panels share one scale (vmin/vmax, or the data's range
    when None). Grey panels use `cmap`; RGB panels are shown in their own colours, each channel mapped
    from vmin..vmax to 0..1 (`cmap` is then unused). Row labels go on the left, column titles on top.
    """
    images = np.asarray(images, dtype=np.float64)
    rgb = images.ndim == 5
    if not (images.ndim == 4 or (rgb and images.shape[-1] == 3)):
        raise ValueError(f"image_grid needs (rows, cols, H, W) or (rows, cols, H, W, 3), got {images.shape}")
    rows, cols, h, w = images.shape[:4]
    gap = max(1, h // 14)
    if rgb:
        lo = float(np.nanmin(images)) if vmin is None else vmin
        hi = float(np.nanmax(images)) if vmax is None else vmax
        images = np.clip((images - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        mosaic = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, 3))  # white gutters
    else:
        mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[r, c]
    left = label_width if row_labels is not None else 0.05
    top = 0.3 if col_labels is not None else 0.05
    top += 0.35 if title else 0.0
    width, height = left + cols * cell + 0.05, top + rows * cell + 0.05
    fig = new_figure(width, height)
    ax = fig.add_axes((left / width, 0.05 / height, cols * cell / width, rows * cell / height))
    if rgb:
        ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    else:
        colormap = colormaps[cmap].with_extremes(bad="white")
        ax.imshow(mosaic, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            ax.text(-gap * 1.5, r * (h + gap) + h / 2 - 0.5, str(label), ha="right", va="center", fontsize=9)
    if col_labels is not None:
        for c, label in enumerate(col_labels):
            ax.text(c * (w + gap) + w / 2 - 0.5, -gap * 1.5, str(label), ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    return fig


def class_ticks(ax, positions, class_names: Sequence[str], fontsize: float = 10) -> None:
    """Class names as x tick labels, slanted and right-anchored when any is longer than 3 characters."""
    names = [str(c) for c in class_names]
    if max(map(len, names)) > 3:
        ax.set_xticks(positions, names, rotation=30, ha="right", rotation_mode="anchor", fontsize=fontsize)
    else:
        ax.set_xticks(positions, names, fontsize=fontsize)


def as_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> float32 rows (N, H*W*C) on 0..1."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(FULL_SCALE)


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of about `n` items keeping each class's share (all items if n >= len)."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * n / len(labels)).astype(int)
    # Hand out what rounding left over to the classes with the largest remainders.
    remainder = counts * n / len(labels) - quota
    for i in np.argsort(-remainder)[: n - quota.sum()]:
        quota[i] += 1
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picks))


def pick_per_class(labels: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """(n_classes, per_class) indices drawn at random within each class."""
    return np.stack([rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(n_classes)])


def jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays -> Python; NaN/inf -> None (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def fmt_int(value: int) -> str:
    return f"{int(value):,}"


def fmt_p(p: float) -> str:
    """A p-value for prose: tiny ones as '< 1e-300', others to 3 significant digits."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.3g}"
