"""How a JAX run ends: `finish`, the one way, complete or stopped by a signal, through
`engines.outputs.write_run` (the writer only).

Complete: predictions.npy (every test image, in order, predicted by a plain single-device copy of the
trained weights), model.keras (that copy, uncompiled, loadable with plain `keras.models.load_model` on any
Keras 3 backend, written atomically), result.json, TensorBoard scalars under tb/; then the epoch-end backup
is removed. Stopped: an `incomplete` result.json of the finished epochs and RunInterrupted (128 + signal).

comm_time_s is null in every record: the gradient all-reduce is an op XLA placed inside the one compiled
step (overlapped with the backward pass where it can), so no host-side clock can isolate it. The
result's environment says so (`comm_time_note`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.engines.jax import backup as jax_backup
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.engines.keras_backup import keras_bytes
from parallel_vision.engines.outputs import write_run
from parallel_vision.errors import RunInterrupted
from parallel_vision.provenance import host_environment

MODEL_FILE = "model.keras"
STRATEGY_NAMES = {
    "single": "one device (jax.jit)",
    "dp": "keras.distribution.DataParallel (one SPMD program over local devices)",
    "multiworker": "keras.distribution.DataParallel over jax.distributed processes (one device each)",
}
COMM_NOTE = ("null: the gradient all-reduce is part of the one XLA program (SPMD partitioner); "
             "it cannot be timed apart from compute")


@dataclass
class Complete:
    model: Any
    labels: np.ndarray
    predictions: np.ndarray


@dataclass(frozen=True)
class Stopped:
    exit_code: int
    signal_name: str = "SIGINT"


def save_model_atomically(model: Any, out: Path) -> str:
    payload = keras_bytes(model.save, MODEL_FILE)
    atomic_write_bytes(out / MODEL_FILE, payload, kept=jax_backup.kept_note(out))
    return MODEL_FILE


def collectives(run: JaxRun) -> str | None:
    placement = run.placement
    if placement.world_size == 1:
        return None
    if placement.processes > 1:
        return "XLA all-reduce across processes (gloo)" if placement.platform == "cpu" else "XLA all-reduce (NCCL)"
    return f"XLA all-reduce within one process ({placement.world_size} {placement.platform} devices)"


def environment(run: JaxRun) -> dict[str, Any]:
    jax, keras, cfg, placement = run.jax, run.keras, run.cfg, run.placement
    import jaxlib

    env = host_environment()
    env.update(
        {
            "framework": "jax",
            "jax_version": jax.__version__,
            "jaxlib_version": jaxlib.__version__,
            "keras_version": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "platform": placement.platform,
            "devices": [str(d) for d in placement.devices],
            "virtual_cpu_devices": cfg.strategy == "dp" and placement.platform == "cpu",
            "gpus": placement.gpus,
            "strategy": STRATEGY_NAMES[cfg.strategy],
            "num_replicas_in_sync": placement.world_size,
            "processes": placement.processes,
            "cross_device_ops": collectives(run),
            "world_size": placement.world_size,
            "intra_op_threads": placement.threads,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "dtype_policy": keras.mixed_precision.global_policy().name,
            "jit_compile": True,
            "comm_time_note": COMM_NOTE,
            "cluster": list(placement.cluster.addresses) if placement.cluster else None,
            "other_frameworks_loaded": sorted(m for m in ("tensorflow", "torch") if m in sys.modules),
        }
    )
    return env


def finish(run: JaxRun, outcome: Complete | Stopped | None) -> None:
    out, stopped = run.out, isinstance(outcome, Stopped)
    if run.writer and outcome is not None and (not stopped or run.records):
        kept = jax_backup.kept_note(out)
        if isinstance(outcome, Complete):
            artifacts = {"model": save_model_atomically(outcome.model, out)}
            labels, predictions, extra = outcome.labels, outcome.predictions, {"reliability": run.reliability}
        else:
            artifacts = {"backup": jax_backup.BACKUP_DIR}
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
        jax_backup.remove(out)
