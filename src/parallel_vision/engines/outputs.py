"""The one way an engine finishes a run: assemble the RunResult and write it with its artifacts.

Complete, stopped by a signal, or resumed after the last epoch: every engine calls `write_run`
with a `FinishedRun` (framework-free), so the result's keys, derived numbers and file writing exist once.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.atomic import atomic_write_bytes, disk_full, is_disk_full
from parallel_vision.config import RunConfig
from parallel_vision.engines.common import launch_time, peak_rss_mib, steps_per_epoch
from parallel_vision.engines.levers import schedule_record
from parallel_vision.engines.metrics import classification_outputs
from parallel_vision.engines.workload import workload_record
from parallel_vision.results.schema import SCHEMA_VERSION, TIMING_KEYS, summarise_epochs, target_summary, write_result

PREDICTIONS_FILE = "predictions.npy"
TB_DIR = "tb"


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
    restarts: int = 0,
    summary_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the RunResult dict; every derived number is computed here, once, for both engines.
    `summary_extra`: what only the engine knows (e.g. torch DDP's comm_bytes_per_step)."""
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
            "restarts": restarts,  # how often torchrun restarted the group (0 for any other launch)
        }
    )
    summary.update(schedule_record(cfg, n_train))  # the learning rate actually used, accumulation
    if cfg.target_accuracy is not None:
        summary.update(target_summary(cfg.target_accuracy, epochs))
    summary.update(summary_extra or {})
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
        "workload": workload_record(cfg),
    }
    if extra:
        result.update(extra)
    return result


def save_result(result: dict[str, Any], out_dir: str | Path, *, kept: str | None = None) -> Path:
    return write_result(result, out_dir, kept=kept)


def save_predictions(y_pred: np.ndarray, out_dir: str | Path, *, kept: str | None = None) -> str:
    """Predicted labels of the evaluated test images in test-set order, written atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(y_pred, dtype=np.int64))
    atomic_write_bytes(Path(out_dir) / PREDICTIONS_FILE, buffer.getvalue(), kept=kept)
    return PREDICTIONS_FILE


#: About what one scalar takes in a TensorBoard event file (for the size in a disk-full message).
TB_EVENT_BYTES = 64


def tensorboard_disk_full(exc: BaseException, tb_dir: Path, scalars: int, kept: str) -> Exception:
    """The one-line DiskFullError for a TensorBoard write that ran out of space (naming the newest
    event file), or `exc` itself when it is some other failure.

    TensorBoard logs fail like every other output: one line, exit code 2, the last checkpoint
    (torch) or epoch-end backup (TensorFlow) kept; the run is not continued without its logs.
    """
    if not is_disk_full(exc):
        return exc
    try:
        events = sorted(Path(tb_dir).glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns)
    except OSError:
        events = []
    return disk_full(events[-1] if events else tb_dir, scalars * TB_EVENT_BYTES, kept, exc)


@dataclass
class FinishedRun:
    """A finished run as `write_run` takes it: complete, or `incomplete` (stopped by a signal).

    `predictions` is required when complete; an incomplete run keeps the finished epochs only, the engine's
    checkpoint or backup holding the rest (its classification report is the last finished epoch's, when the
    engine passes that epoch's predictions). `kept` says what survives a full disk (parallel_vision.atomic).
    `summary_extra`: what only the engine knows (e.g. torch DDP's comm_bytes_per_step)."""

    cfg: RunConfig
    out: Path
    status: str
    records: list[dict[str, Any]]
    timing: dict[str, float | None]
    environment: dict[str, Any]
    labels: np.ndarray
    predictions: np.ndarray | None
    class_names: Sequence[str]
    world_size: int
    n_train: int
    artifacts: dict[str, str]
    extra: dict[str, Any] | None = None
    peak_rss_per_worker_mib: list[float] | None = None
    kept: str | None = None
    restarts: int = 0
    summary_extra: dict[str, Any] | None = None


def write_run(run: FinishedRun) -> dict[str, Any]:
    """Write OUT/result.json (and, for a complete run, OUT/predictions.npy); return the result."""
    cfg, out, records, kept = run.cfg, run.out, run.records, run.kept
    timing = dict(run.timing, eval_total_s=sum(r["eval_time_s"] for r in records))
    artifacts = dict(run.artifacts)
    if run.status == "complete":
        if run.predictions is None:
            raise ValueError("a complete run needs its predictions")
        artifacts["predictions"] = save_predictions(run.predictions, out, kept=kept)
    if cfg.tensorboard:
        artifacts["tensorboard"] = TB_DIR
    result = build_result(
        cfg, environment=run.environment, epochs=records, timing=timing, y_true=run.labels,
        y_pred=run.predictions if run.predictions is not None else np.empty(0, dtype=np.int64),
        class_names=run.class_names, world_size=run.world_size, n_train=run.n_train, artifacts=artifacts,
        status=run.status, extra=run.extra, peak_rss_per_worker_mib=run.peak_rss_per_worker_mib,
        restarts=run.restarts, summary_extra=run.summary_extra,
    )
    save_result(result, out, kept=kept)
    return result
