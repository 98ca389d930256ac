"""Load a verified split as arrays, and turn pixels into model inputs.

`load` returns raw uint8 pixels, (N, H, W) for grey datasets and (N, H, W, C) for
colour ones; scaling is the separate, explicit `normalize` step so that each engine
states the normalisation it trains with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from parallel_vision.data import cifar
from parallel_vision.data.cache import read_decoded, read_verified
from parallel_vision.data.catalog import DatasetSpec, SplitSpec, get_dataset
from parallel_vision.data.download import fetch
from parallel_vision.data.paths import raw_dir, require_readable_dir, resolve_cache_dir, resolve_data_dir
from parallel_vision.errors import DataError


def load(
    dataset: str | DatasetSpec,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8, C-contiguous, and labels as int64 (N,), checksum-verified.

    Images are (N, H, W) for 1-channel datasets and (N, H, W, C) (NHWC) for colour ones.

    Missing files are downloaded first when `download` is true; otherwise they are an error.
    """
    spec = get_dataset(dataset)
    part = spec.split(split)
    root = resolve_data_dir(data_dir)
    if root.exists() or not download:
        require_readable_dir(root)
    raw = raw_dir(root, spec.name)
    missing = [f.name for f in part.files if not (raw / f.name).exists()]
    if missing and not download:
        raise DataError(
            f"{', '.join(missing)} missing from {raw}"
            f" (run `pvision data fetch {spec.name} --data-dir {root}`)"
        )
    if missing:
        fetch(spec, root)
    cache = resolve_cache_dir(cache_dir) / spec.name
    if spec.format == "cifar-python":
        archive = part.images
        names = (f"{part.name}-images", f"{part.name}-labels")
        arrays = read_decoded(
            raw / archive.name,
            archive,
            cache,
            names,
            lambda data, source: cifar.decode_archive(data, source, spec),
        )
        images, labels = arrays[names[0]], arrays[names[1]]
    elif part.labels is not None:
        images = read_verified(raw / part.images.name, part.images, cache)
        labels = read_verified(raw / part.labels.name, part.labels, cache)
    else:
        raise DataError(f"{spec.name} {part.name}: an IDX split needs a labels file (catalogue error)")
    _check(spec, part, raw, images, labels)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def image_shape(spec: DatasetSpec) -> tuple[int, ...]:
    """The shape of one image as `load` returns it: (H, W), or (H, W, C) for colour datasets."""
    return spec.image_shape if spec.channels == 1 else (*spec.image_shape, spec.channels)


def _check(spec: DatasetSpec, part: SplitSpec, raw: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Checksums prove the bytes are the catalogue's; this proves the catalogue describes them."""
    shape = image_shape(spec)
    if images.dtype != np.uint8 or images.shape[1:] != shape:
        raise DataError(
            f"{raw / part.images.name}: expected uint8 images of shape (N, {', '.join(map(str, shape))}),"
            f" got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{raw / (part.labels or part.images).name}: expected 1-D integer labels,"
            f" got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(f"{spec.name} {part.name}: {len(images)} images but {len(labels)} labels in {raw}")
    if len(images) != part.count:
        raise DataError(f"{spec.name} {part.name}: {len(images)} examples, expected {part.count} in {raw}")
    bad = (labels < 0) | (labels >= spec.num_classes)
    if bad.any():
        raise DataError(
            f"{raw / (part.labels or part.images).name}: {int(bad.sum())} label(s) outside 0..{spec.num_classes - 1}"
            f" (first: {int(labels[bad][0])} at index {int(np.argmax(bad))})"
        )


def normalize(
    images: np.ndarray,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> np.ndarray:
    """float32 pixels: ÷255, then (x - mean) / std for whichever of the two is given.

    `mean` and `std` are per-channel tuples (a catalogue's `DatasetSpec.mean`/`.std`) or plain
    numbers. One entry applies to every pixel, so (0.1307,) works on (N, H, W); C entries are
    broadcast over the last axis, which must then hold C channels (NHWC).
    """
    if images.dtype != np.uint8:
        # Normalising twice is a silent accuracy bug; refuse anything but raw pixels.
        raise TypeError(f"normalize expects uint8 pixels, got {images.dtype} (already normalised?)")
    m = _per_channel(images, mean, "mean")
    s = _per_channel(images, std, "std")
    if s is not None and not np.all(s > 0):
        raise ValueError(f"std must be positive, got {std}")
    out = images.astype(np.float32)
    out /= np.float32(255)
    if m is not None:
        out -= m
    if s is not None:
        out /= s
    return out


def _per_channel(images: np.ndarray, value: float | Sequence[float] | None, what: str) -> np.ndarray | None:
    """`value` as float32 that broadcasts against `images`: a scalar, or a (C,) vector for NHWC."""
    if value is None:
        return None
    vector = np.asarray(value, dtype=np.float32)
    if vector.ndim == 0:
        return vector
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"{what} must be a number or a tuple with one entry per channel, got {value!r}")
    if vector.size == 1:
        return vector.reshape(())
    if images.ndim < 3 or images.shape[-1] != vector.size:
        raise ValueError(
            f"{what} has {vector.size} per-channel entries but the images {images.shape} do not have"
            f" {vector.size} channels in their last axis (expected NHWC)"
        )
    return vector
