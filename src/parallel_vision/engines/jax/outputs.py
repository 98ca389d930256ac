"""What a JAX run's result says of its environment. The run ends through the Keras layer's `finish`
(engines/keras/outputs.py: model.keras, loadable with plain `keras.models.load_model` on any Keras 3 backend,
predictions, result.json, complete or stopped), given `environment`.

comm_time_s is null in every record: the gradient all-reduce is an op XLA placed inside the one compiled
step (overlapped with the backward pass where it can), so no host-side clock can isolate it. The
result's environment says so (`comm_time_note`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from parallel_vision.engines.jax import pooling
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.provenance import host_environment

COMM_NOTE = ("null: the gradient all-reduce is part of the one XLA program (SPMD partitioner); "
             "it cannot be timed apart from compute")


def collectives(run: JaxRun) -> str | None:
    placement = run.placement
    if placement.world_size == 1:
        return None
    if run.cfg.strategy == "model-parallel":
        return (f"XLA collectives within one process ({placement.world_size} {placement.platform} devices on the "
                "'model' axis; environment.hlo_collectives lists them)")
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
            "virtual_cpu_devices": cfg.strategy_spec.shares_process and placement.platform == "cpu",
            "gpus": placement.gpus,
            "strategy": cfg.strategy_spec.api,
            "num_replicas_in_sync": int(placement.mesh.shape["batch"]),  # data replicas (model-parallel: 1)
            "processes": placement.processes,
            "cross_device_ops": collectives(run),
            "world_size": placement.world_size,
            "intra_op_threads": placement.threads,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "max_pool": pooling.describe(),
            "dtype_policy": keras.mixed_precision.global_policy().name,
            "jit_compile": True,
            "comm_time_note": COMM_NOTE,
            "cluster": list(placement.cluster.addresses) if placement.cluster else None,
            "other_frameworks_loaded": sorted(m for m in ("tensorflow", "torch") if m in sys.modules),
        }
    )
    env.update(run.environment_extra)
    return env
