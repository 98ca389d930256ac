"""What both engines share, framework-free: data subsetting, the result record, progress.

Keeping these here is what makes a TensorFlow number and a PyTorch number mean
the same thing: same images, same definitions, same keys.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.data import load
from parallel_vision.engines.workload import synthetic_split, workload
from parallel_vision.errors import EngineError

#: Zero padding of the random crop of `augment`: the standard CIFAR augmentation (pad 4, crop back to the
#: size), the same in every engine.
PAD = 4


def launch_time() -> float:
    """When the user's command started (set by the launcher), else now: total time counts from there."""
    try:
        return float(os.environ[envvars.LAUNCH_TIME])
    except (KeyError, ValueError):
        os.environ[envvars.LAUNCH_TIME] = repr(time.time())
        return float(os.environ[envvars.LAUNCH_TIME])


def pin_to_cores(threads: int, local_rank: int) -> list[int] | None:
    """`pin_threads`: keep this worker (and the threads its framework will start) on its own slice of
    this node's cores: local rank r takes cores [r·threads, (r+1)·threads), wrapping around. Both
    engines call this, so the same rank gets the same cores in either. Returns the cores, or None
    where affinity cannot be set."""
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - non-Linux
        return None
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[(local_rank * threads) % len(cores):][:threads] or cores[:threads]
    os.sched_setaffinity(0, mine)
    return mine


def load_split(cfg: RunConfig, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 images ((N, H, W) grey or (N, H, W, C) colour), int64 labels and class names of one split,
    cut to the configured limit (`synthetic`: generated, of the configured size).

    A limit takes the first N images in the dataset's own order, so every
    framework and strategy sees exactly the same subset.
    """
    w = workload(cfg)
    if w.synthetic:
        images, labels = synthetic_split(cfg, split)
        return images, labels, list(w.class_names)
    images, labels = load(cfg.dataset, split, cfg.data_dir)
    limit = cfg.limit_train if split == "train" else cfg.limit_test
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels, list(w.class_names)


def to_nhwc(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, C, H, W) uint8 → (N, H, W, C), contiguous (the Keras engines' layout)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    elif x.ndim != 4:
        raise EngineError(f"expected images of shape (N, H, W[, C]); got {x.shape}")
    return np.ascontiguousarray(x)


def normalisation(cfg: RunConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel pixel mean and std on the 0..1 scale, used by every engine."""
    w = workload(cfg)
    return w.mean, w.std


def steps_per_epoch(n_train: int, global_batch: int) -> int:
    """Full global batches per epoch; the incomplete last batch is dropped in every strategy,
    so all strategies take identical steps (and DDP ranks stay in lock-step)."""
    return n_train // global_batch


def epoch_record(
    *,
    epoch: int,
    train_loss: float,
    train_accuracy: float,
    test_loss: float,
    test_accuracy: float,
    epoch_time_s: float,
    n_train_images: int,
    n_test_evaluated: int,
    data_time_s: float,
    comm_time_s: float | None,
    eval_time_s: float,
    comm_bytes: int | None = None,
) -> dict[str, Any]:
    """One epoch's row, the same keys from both frameworks (see results.schema.EPOCH_KEYS), and `comm_bytes`:
    the bytes one worker handed to the gradient all-reduce this epoch (torch DDP; None where not measured)."""
    compute = max(0.0, epoch_time_s - data_time_s)
    return {
        "epoch": epoch,
        "train_loss": float(train_loss),
        "train_accuracy": float(train_accuracy),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "epoch_time_s": float(epoch_time_s),
        "images_per_s": n_train_images / epoch_time_s if epoch_time_s > 0 else None,
        "data_time_s": float(data_time_s),
        "compute_time_s": compute,
        "comm_time_s": None if comm_time_s is None else float(comm_time_s),
        "eval_time_s": float(eval_time_s),
        "n_train_images": int(n_train_images),
        "n_test_evaluated": int(n_test_evaluated),
        "comm_bytes": None if comm_bytes is None else int(comm_bytes),
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB): the memory a worker really needed."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def progress_enabled() -> bool:
    return os.environ.get(envvars.PROGRESS, "1") != "0"


class EpochProgress:
    """A rich progress bar on the writing rank: steps of the current epoch, then its metrics.

    The bar advances per step without reading the loss (no host sync in the hot
    path); loss, accuracy and images/s appear when each epoch ends.
    """

    def __init__(self, total_epochs: int, enabled: bool) -> None:
        self.enabled = enabled and progress_enabled()
        self.total_epochs = total_epochs
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            columns = (
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[total_epochs]}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
            )
            self._progress = Progress(*columns, transient=False)
            self._progress.start()
        return self

    def start_epoch(self, epoch: int, steps: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(
                "train", total=steps, epoch=epoch, total_epochs=self.total_epochs, metrics=""
            )

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def end_epoch(self, record: dict[str, Any]) -> None:
        if self._progress is not None and self._task is not None:
            metrics = (
                f"loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | "
                f"test acc {record['test_accuracy']:.4f} | {record['images_per_s']:.0f} img/s"
            )
            self._progress.update(self._task, metrics=metrics)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
