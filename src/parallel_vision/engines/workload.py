"""What a run trains on, framework-free: the images' shape, classes and normalisation, the synthetic
dataset, and the workload block of result.json (model FLOPs and gradient bytes).

Every engine asks here, so "cifar10 on resnet18" means the same images, the same normalisation and
the same cost figures in each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parallel_vision.config import RunConfig
from parallel_vision.data import DATASETS
from parallel_vision.models.catalog import model_costs

SYNTHETIC = "synthetic"
#: A synthetic training set holds this many global batches unless --limit-train says otherwise.
SYNTHETIC_STEPS_PER_EPOCH = 10
#: Test images of a synthetic run unless --limit-test says otherwise.
SYNTHETIC_TEST_IMAGES = 1000
#: Uniform 0..255 pixels scaled to 0..1 have mean 1/2 and standard deviation 1/√12.
SYNTHETIC_MEAN = 0.5
SYNTHETIC_STD = float(np.sqrt(1 / 12))


@dataclass(frozen=True)
class Workload:
    """The images of a run as every engine must see them."""

    channels: int
    image_size: int
    classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    synthetic: bool

    @property
    def accuracy_meaningful(self) -> bool:
        """Random labels on random pixels: a synthetic run measures throughput only."""
        return not self.synthetic


def workload(cfg: RunConfig) -> Workload:
    """The shape, classes and per-channel normalisation of `cfg`'s dataset."""
    if cfg.dataset == SYNTHETIC:
        channels, side, classes = cfg.synthetic_shape
        return Workload(channels=channels, image_size=side, classes=classes,
                        class_names=tuple(str(c) for c in range(classes)), mean=(SYNTHETIC_MEAN,) * channels,
                        std=(SYNTHETIC_STD,) * channels, synthetic=True)
    spec = DATASETS[cfg.dataset]
    side = spec.image_shape[0]
    return Workload(channels=spec.channels, image_size=side, classes=spec.num_classes,
                    class_names=tuple(spec.class_names), mean=tuple(float(m) for m in spec.mean),
                    std=tuple(float(s) for s in spec.std), synthetic=False)


def synthetic_count(cfg: RunConfig, split: str) -> int:
    """Images in a synthetic split: the configured limit, else 10 global batches (train) or 1000 (test)."""
    if split == "train":
        return cfg.limit_train or SYNTHETIC_STEPS_PER_EPOCH * cfg.batch_size
    return cfg.limit_test or SYNTHETIC_TEST_IMAGES


def synthetic_seed(cfg: RunConfig, split: str) -> int:
    """Train and test draw from different streams of the run's seed."""
    return cfg.seed * 2 + (split == "test")


def synthetic_split(cfg: RunConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images and int64 labels, uniform at random, for engines that generate on the host."""
    w = workload(cfg)
    rng = np.random.default_rng(synthetic_seed(cfg, split))
    n = synthetic_count(cfg, split)
    images = rng.integers(0, 256, size=(n, w.image_size, w.image_size, w.channels), dtype=np.uint8)
    labels = rng.integers(0, w.classes, size=n, dtype=np.int64)
    return images, labels


def workload_record(cfg: RunConfig) -> dict[str, Any]:
    """result.json's `workload` block: what was trained, and what one image costs in compute and what one
    step costs in gradient traffic (docs/models.md)."""
    w = workload(cfg)
    costs = model_costs(cfg.model, w.channels, w.image_size, w.classes)
    return {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "input_shape": [w.channels, w.image_size, w.image_size],
        "classes": w.classes,
        "parameters": costs.parameters,
        "bn_statistics": costs.bn_statistics,
        "forward_flops_per_image": costs.forward_flops_per_image,
        "train_flops_per_image": costs.train_flops_per_image,
        "gradient_bytes": costs.gradient_bytes,
        "accuracy_meaningful": w.accuracy_meaningful,
        "augment": cfg.augment,
    }
