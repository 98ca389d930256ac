"""What both engines share, framework-free: data subsetting, the result record, progress.

Keeping these here is what makes a TensorFlow number and a PyTorch number mean
the same thing: same images, same definitions, same keys.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.config import RunConfig
from parallel_vision.engines.metrics import classification_outputs
from parallel_vision.results.schema import SCHEMA_VERSION, TIMING_KEYS, summarise_epochs, write_result

START_ENV = "PVISION_LAUNCH_TIME"
PROGRESS_ENV = "PVISION_PROGRESS"


def launch_time() -> float:
    """When the user's command started (set by the launcher), else now: total time counts from there."""
    try:
        return float(os.environ[START_ENV])
    except (KeyError, ValueError):
        os.environ[START_ENV] = repr(time.time())
        return float(os.environ[START_ENV])


def load_split(cfg: RunConfig, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 images, int64 labels and class names of one split, cut to the configured limit.

    A limit takes the first N images in the dataset's own order, so every
    framework and strategy sees exactly the same subset.
    """
    from parallel_vision.data import DATASETS, load

    images, labels = load(cfg.dataset, split, cfg.data_dir)
    limit = cfg.limit_train if split == "train" else cfg.limit_test
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels, list(DATASETS[cfg.dataset].class_names)


def normalisation(cfg: RunConfig) -> tuple[float, float]:
    """The dataset's pixel mean and std on the 0..1 scale, used by both engines."""
    from parallel_vision.data import DATASETS

    spec = DATASETS[cfg.dataset]
    return float(spec.mean), float(spec.std)


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
) -> dict[str, Any]:
    """One epoch's row, the same keys from both frameworks (see results.schema.EPOCH_KEYS)."""
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
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB): the memory a worker really needed."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def build_result(
    cfg: RunConfig,
    *,
    environment: dict[str, Any],
    epochs: list[dict[str, Any]],
    timing: dict[str, float | None],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    world_size: int,
    n_train: int,
    artifacts: dict[str, str],
    status: str = "complete",
    extra: dict[str, Any] | None = None,
    peak_rss_per_worker_mib: list[float] | None = None,
) -> dict[str, Any]:
    """Assemble the RunResult dict; every derived number is computed here, once, for both engines."""
    total = time.time() - launch_time()
    summary: dict[str, Any] = {}
    if epochs:
        summary = summarise_epochs(epochs, total)
    summary.update(
        {
            "world_size": world_size,
            "global_batch": cfg.batch_size,
            "per_worker_batch": cfg.per_worker_batch,
            "steps_per_epoch": steps_per_epoch(n_train, cfg.batch_size),
            "n_train": n_train,
            "total_time_s": total,
            "peak_rss_mib_per_worker": peak_rss_per_worker_mib or [peak_rss_mib()],
            "restarts": 0,  # an engine that can be restarted (torchrun) overwrites it
        }
    )
    outputs = classification_outputs(y_true, y_pred, class_names) if len(y_pred) else {}
    result = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "status": status,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "environment": environment,
        "epochs": epochs,
        "summary": summary,
        "timing": {k: timing.get(k) for k in TIMING_KEYS},
        "classification_report": outputs.get("classification_report", {}),
        "classification_report_text": outputs.get("classification_report_text", ""),
        "confusion_matrix": outputs.get("confusion_matrix", []),
        "artifacts": artifacts,
    }
    if extra:
        result.update(extra)
    return result


def save_result(result: dict[str, Any], out_dir: str | Path, *, kept: str | None = None) -> Path:
    return write_result(result, out_dir, kept=kept)


def save_predictions(y_pred: np.ndarray, out_dir: str | Path, *, kept: str | None = None) -> str:
    """Predicted labels of the evaluated test images in test-set order, written atomically."""
    import io

    from parallel_vision.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(y_pred, dtype=np.int64))
    atomic_write_bytes(Path(out_dir) / "predictions.npy", buffer.getvalue(), kept=kept)
    return "predictions.npy"


#: About what one scalar takes in a TensorBoard event file (for the size in a disk-full message).
TB_EVENT_BYTES = 64


def tensorboard_disk_full(exc: BaseException, tb_dir: Path, scalars: int, kept: str) -> Exception:
    """The one-line DiskFullError for a TensorBoard write that ran out of space (naming the newest
    event file), or `exc` itself when it is some other failure.

    TensorBoard logs fail like every other output: one line, exit code 2, the last checkpoint
    (torch) or epoch-end backup (TensorFlow) kept; the run is not continued without its logs.
    """
    from parallel_vision.atomic import disk_full, is_disk_full

    if not is_disk_full(exc):
        return exc
    try:
        events = sorted(Path(tb_dir).glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns)
    except OSError:
        events = []
    return disk_full(events[-1] if events else tb_dir, scalars * TB_EVENT_BYTES, kept, exc)


def progress_enabled() -> bool:
    return os.environ.get(PROGRESS_ENV, "1") != "0"


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

            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[total_epochs]}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                transient=False,
            )
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
