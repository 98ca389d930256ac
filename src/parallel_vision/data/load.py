"""Load a verified split as arrays, and turn pixels into model inputs.

`load` returns raw uint8 pixels; scaling is the separate, explicit `normalize`
step so that each engine states the normalisation it trains with.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from parallel_vision.data.cache import read_verified
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
    """Images as uint8 (N, H, W), C-contiguous, and labels as int64 (N,), checksum-verified.

    Missing files are downloaded first when `download` is true; otherwise they are an error.
    """
    spec = get_dataset(dataset)
    part = spec.split(split)
    root = resolve_data_dir(data_dir)
    if root.exists() or not download:
        require_readable_dir(root)
    raw = raw_dir(root, spec.name)
    missing = [f.name for f in (part.images, part.labels) if not (raw / f.name).exists()]
    if missing and not download:
        raise DataError(
            f"{', '.join(missing)} missing from {raw}"
            f" (run `pvision data fetch {spec.name} --data-dir {root}`)"
        )
    if missing:
        fetch(spec, root)
    cache = resolve_cache_dir(cache_dir) / spec.name
    images = read_verified(raw / part.images.name, part.images, cache)
    labels = read_verified(raw / part.labels.name, part.labels, cache)
    _check(spec, part, raw, images, labels)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _check(spec: DatasetSpec, part: SplitSpec, raw: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Checksums prove the bytes are the catalogue's; this proves the catalogue describes them."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != spec.image_shape:
        raise DataError(
            f"{raw / part.images.name}: expected uint8 images of shape (N, {spec.image_shape[0]},"
            f" {spec.image_shape[1]}), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{raw / part.labels.name}: expected 1-D integer labels, got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(f"{spec.name} {part.name}: {len(images)} images but {len(labels)} labels in {raw}")
    if len(images) != part.count:
        raise DataError(f"{spec.name} {part.name}: {len(images)} examples, expected {part.count} in {raw}")
    bad = (labels < 0) | (labels >= spec.num_classes)
    if bad.any():
        raise DataError(
            f"{raw / part.labels.name}: {int(bad.sum())} label(s) outside 0..{spec.num_classes - 1}"
            f" (first: {int(labels[bad][0])} at index {int(np.argmax(bad))})"
        )


def normalize(images: np.ndarray, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """float32 pixels: ÷255, then (x - mean) / std for whichever of the two is given."""
    if images.dtype != np.uint8:
        # Normalising twice is a silent accuracy bug; refuse anything but raw pixels.
        raise TypeError(f"normalize expects uint8 pixels, got {images.dtype} (already normalised?)")
    if std is not None and not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    out = images.astype(np.float32)
    out /= np.float32(255)
    if mean is not None:
        out -= np.float32(mean)
    if std is not None:
        out /= np.float32(std)
    return out
