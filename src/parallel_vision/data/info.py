"""Summaries of a loaded dataset: shapes, class balance and pixel statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parallel_vision.data.catalog import DatasetSpec, get_dataset
from parallel_vision.data.load import load
from parallel_vision.data.paths import resolve_data_dir

_STATS_CHUNK = 1 << 22


@dataclass(frozen=True)
class SplitInfo:
    split: str
    images_shape: tuple[int, ...]
    images_dtype: str
    labels_dtype: str
    class_counts: tuple[int, ...]
    pixel_mean: float
    """Over all pixels and channels, on the 0..1 scale."""
    pixel_std: float
    channel_mean: tuple[float, ...] = ()
    """One entry per channel, on the 0..1 scale, comparable with DatasetSpec.mean."""
    channel_std: tuple[float, ...] = ()


@dataclass(frozen=True)
class DatasetInfo:
    spec: DatasetSpec
    data_dir: Path
    splits: tuple[SplitInfo, ...]


def dataset_info(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> DatasetInfo:
    """Load every split (never downloading: inspecting must not change the disk) and summarise it."""
    spec = get_dataset(dataset)
    root = resolve_data_dir(data_dir)
    splits = []
    for part in spec.splits:
        images, labels = load(spec, part.name, root, download=False, cache_dir=cache_dir)
        mean, std = pixel_stats(images)
        channel_mean, channel_std = channel_stats(images, spec.channels)
        counts = np.bincount(labels, minlength=spec.num_classes)
        splits.append(
            SplitInfo(
                split=part.name,
                images_shape=images.shape,
                images_dtype=str(images.dtype),
                labels_dtype=str(labels.dtype),
                class_counts=tuple(int(c) for c in counts),
                pixel_mean=mean,
                pixel_std=std,
                channel_mean=channel_mean,
                channel_std=channel_std,
            )
        )
    return DatasetInfo(spec, root, tuple(splits))


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Exact mean and std of uint8 pixels on the 0..1 scale, via a histogram.

    `images.std()` would make a float64 copy of every pixel (376 MB for MNIST train).
    """
    flat = images.reshape(-1)
    hist = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, _STATS_CHUNK):
        hist += np.bincount(flat[start : start + _STATS_CHUNK], minlength=256)
    return _hist_stats(hist)


def channel_stats(images: np.ndarray, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (means, stds) on the 0..1 scale: of the last axis of NHWC images, or one pair for grey."""
    if channels == 1:
        mean, std = pixel_stats(images)
        return (mean,), (std,)
    rows = images.reshape(-1, channels)
    hists = np.zeros((channels, 256), dtype=np.int64)
    step = max(1, _STATS_CHUNK // channels)
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        for c in range(channels):
            hists[c] += np.bincount(block[:, c], minlength=256)
    pairs = [_hist_stats(h) for h in hists]
    return tuple(m for m, _ in pairs), tuple(s for _, s in pairs)


def _hist_stats(hist: np.ndarray) -> tuple[float, float]:
    n = int(hist.sum())
    if n == 0:
        return float("nan"), float("nan")
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float(hist @ values) / n
    var = float(hist @ values**2) / n - mean**2
    return mean, float(np.sqrt(max(var, 0.0)))
