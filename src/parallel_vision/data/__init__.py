"""Verified datasets (MNIST, Fashion-MNIST, KMNIST, CIFAR-10): catalogue, decoding, checksums, cache, download.

Typical use: `images, labels = load("mnist", "train")`, then `normalize(images, spec.mean, spec.std)`
(per-channel tuples; colour images are NHWC).
"""

from __future__ import annotations

from parallel_vision.data.catalog import DATASETS, DatasetSpec, FileSpec, MemberSpec, SplitSpec, get_dataset
from parallel_vision.data.download import fetch
from parallel_vision.data.idx import parse_idx, read_idx
from parallel_vision.data.info import DatasetInfo, SplitInfo, channel_stats, dataset_info, pixel_stats
from parallel_vision.data.load import image_shape, load, normalize
from parallel_vision.data.paths import resolve_cache_dir, resolve_data_dir
from parallel_vision.data.verify import FileStatus, verify

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetSpec",
    "FileSpec",
    "FileStatus",
    "MemberSpec",
    "SplitInfo",
    "SplitSpec",
    "channel_stats",
    "dataset_info",
    "fetch",
    "get_dataset",
    "image_shape",
    "load",
    "normalize",
    "parse_idx",
    "pixel_stats",
    "read_idx",
    "resolve_cache_dir",
    "resolve_data_dir",
    "verify",
]
