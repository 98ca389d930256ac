"""How a TensorFlow run ends: `finish`, the one way, complete or stopped by a signal, through
`engines.outputs.write_run` (the writer only).

Complete: predictions.npy (every test image, in order, predicted by a plain single-device copy of the
trained weights), model.keras (that copy, uncompiled, loadable with plain `keras.models.load_model`,
written atomically), result.json, TensorBoard scalars under tb/ when `tensorboard` is on; then the
epoch-end backup is removed. Stopped: an `incomplete` result.json of the finished epochs (no model, no
predictions; the backup of the last one is already on disk) and RunInterrupted (exit 128 + signal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.engines.outputs import write_run
from parallel_vision.engines.tensorflow import backup as tf_backup
from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.errors import RunInterrupted
from parallel_vision.provenance import host_environment

MODEL_FILE = "model.keras"
STRATEGY_NAMES = {
    "single": "default (one device)",
    "mirrored": "tf.distribute.MirroredStrategy",
    "multiworker": "tf.distribute.MultiWorkerMirroredStrategy",
}


@dataclass
class Complete:
    """Every epoch ran: the single-device copy that is saved, and its predictions of the test set."""

    model: Any
    labels: np.ndarray
    predictions: np.ndarray


@dataclass(frozen=True)
class Stopped:
    """A signal (or Ctrl-C) ended training early."""

    exit_code: int
    signal_name: str = "SIGINT"


def save_model_atomically(model: Any, out: Path) -> str:
    """`model.save` into memory (see tf_backup.keras_bytes: h5py must never meet a full disk), then
    written atomically (temp file, fsync, rename); a full disk is a one-line DiskFullError."""
    payload = tf_backup.keras_bytes(model.save, MODEL_FILE)
    atomic_write_bytes(out / MODEL_FILE, payload, kept=tf_backup.kept_note(out))
    return MODEL_FILE


def environment(run: TFRun) -> dict[str, Any]:
    tf, keras, cfg, placement = run.tf, run.keras, run.cfg, run.placement
    env = host_environment()
    env.update(
        {
            "framework": "tensorflow",
            "tf_version": tf.__version__,
            "keras_version": keras.__version__,
            "devices": placement.devices,
            "gpus": placement.gpus,
            "strategy": STRATEGY_NAMES[cfg.strategy],
            "num_replicas_in_sync": int(placement.strategy.num_replicas_in_sync),
            "cross_device_ops": placement.cross_device_ops,
            "world_size": placement.world_size,
            "intra_op_threads": placement.intra_op_threads,
            "inter_op_threads": placement.inter_op_threads,
            "dtype_policy": keras.mixed_precision.global_policy().name,
            "jit_compile": bool(cfg.jit_compile),
            "cluster": placement.cluster.cluster if placement.cluster else None,
        }
    )
    return env


def finish(run: TFRun, outcome: Complete | Stopped | None) -> None:
    """End the run: the writer writes its outputs (a stopped run only when an epoch had finished); a
    stopped run then raises RunInterrupted. `outcome` is None on a worker that writes nothing."""
    out, stopped = run.out, isinstance(outcome, Stopped)
    if run.writer and outcome is not None and (not stopped or run.records):
        kept = tf_backup.kept_note(out)  # what a full disk leaves: the last backup, removed only at the end
        if isinstance(outcome, Complete):
            artifacts = {"model": save_model_atomically(outcome.model, out)}
            labels, predictions, extra = outcome.labels, outcome.predictions, {"reliability": run.reliability}
        else:
            artifacts = {"backup": tf_backup.BACKUP_DIR}
            labels, predictions, extra = np.zeros(0, dtype=np.int64), None, None
        write_run(
            run.cfg, out, status="incomplete" if stopped else "complete", records=run.records, timing=run.timing,
            environment=environment(run), labels=labels, predictions=predictions, class_names=run.class_names,
            world_size=run.placement.world_size, n_train=run.n_train, artifacts=artifacts, extra=extra, kept=kept,
        )
    if isinstance(outcome, Stopped):
        kept_epochs = (f"{len(run.records)} finished epoch(s) kept; continue with --resume"
                       if run.writer and run.records else "no epoch had finished")
        raise RunInterrupted(f"stopped by {outcome.signal_name}: {kept_epochs}", exit_code=outcome.exit_code) from None
    if run.writer:
        tf_backup.remove(out)  # the run is complete: nothing is left to resume
