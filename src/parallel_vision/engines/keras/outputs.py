"""How a Keras run ends (TensorFlow or JAX backend): `finish`, the one way, complete or stopped by a signal,
through `engines.outputs.write_run` (the writer only).

Complete: predictions.npy (every test image, in order, predicted by a plain single-device copy of the
trained weights), model.keras (that copy, uncompiled, loadable with plain `keras.models.load_model`, written
atomically), result.json, TensorBoard scalars under tb/ when `tensorboard` is on; then the epoch-end backup
is removed. Stopped: an `incomplete` result.json of the finished epochs (no model, no predictions; the backup
of the last one is already on disk) and RunInterrupted (exit 128 + signal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.engines.keras.backup import keras_bytes
from parallel_vision.engines.keras.run import KerasRun
from parallel_vision.engines.outputs import FinishedRun, write_run
from parallel_vision.errors import RunInterrupted

MODEL_FILE = "model.keras"


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


def save_model_atomically(model: Any, out: Path, kept: str | None = None) -> str:
    """`model.save` into memory (keras_bytes: h5py must never meet a full disk), then written atomically (temp
    file, fsync, rename); a full disk is a one-line DiskFullError saying what is `kept`."""
    payload = keras_bytes(model.save, MODEL_FILE)
    atomic_write_bytes(out / MODEL_FILE, payload, kept=kept)
    return MODEL_FILE


def finish(run: KerasRun, outcome: Complete | Stopped | None,
           environment: Callable[[Any], dict[str, Any]]) -> None:
    """End the run: the writer writes its outputs (a stopped run only when an epoch had finished), with the
    engine's `environment(run)`; a stopped run then raises RunInterrupted. `outcome` is None on a process that
    writes nothing."""
    out, stopped = run.out, isinstance(outcome, Stopped)
    if run.writer and outcome is not None and (not stopped or run.records):
        kept = run.kept_note()  # what a full disk leaves: the last backup, removed only at the end
        if isinstance(outcome, Complete):
            artifacts = {"model": save_model_atomically(outcome.model, out, kept)}
            labels, predictions, extra = outcome.labels, outcome.predictions, {"reliability": run.reliability}
        else:
            artifacts = {"backup": run.backups.folder}
            labels, predictions, extra = np.zeros(0, dtype=np.int64), None, None
        write_run(FinishedRun(
            cfg=run.cfg, out=out, status="incomplete" if stopped else "complete", records=run.records,
            timing=run.timing, environment=environment(run), labels=labels, predictions=predictions,
            class_names=run.class_names, world_size=run.placement.world_size, n_train=run.n_train,
            artifacts=artifacts, extra=extra, kept=kept, summary_extra=run.summary_extra or None,
        ))
    if isinstance(outcome, Stopped):
        kept_epochs = (f"{len(run.records)} finished epoch(s) kept; continue with --resume"
                       if run.writer and run.records else "no epoch had finished")
        raise RunInterrupted(f"stopped by {outcome.signal_name}: {kept_epochs}", exit_code=outcome.exit_code) from None
    if run.writer:
        run.backups.remove(out)  # the run is complete: nothing is left to resume
