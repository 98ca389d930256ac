"""The JAX engine (Keras 3 on the JAX backend): `single`, `dp` (keras.distribution.DataParallel over the
local devices: GPUs or N virtual CPU devices) and `multiworker` (one process per device through
keras.distribution.initialize / jax.distributed; see docs/jax.md).

Importing this package loads no framework: it only describes the engine to the launcher.
`engine.py` (the training code, which imports JAX and Keras) runs inside the engine process.
"""

from __future__ import annotations

from parallel_vision.engines.jax import backup, cluster
from parallel_vision.engines.spec import ClusterEnv, EngineSpec, ResumeFiles


def _layout() -> dict[str, int]:
    try:
        job = cluster.cluster_from_env(None)
    except Exception:  # noqa: BLE001 - a label only
        return {}
    return {"nodes": job.hosts, "processes_per_node": -(-job.world_size // job.hosts)}


ENGINE = EngineSpec(
    framework="jax",
    entry="parallel_vision.engines.jax.engine:train_and_evaluate",
    resume=ResumeFiles(present=backup.present, describe=backup.describe, remove=backup.remove),
    cluster=ClusterEnv(
        strategy="multiworker",
        present=cluster.present,
        world_size=lambda: cluster.cluster_from_env(None).world_size,
        is_writer=lambda workers: cluster.cluster_from_env(workers).is_writer,
        layout=_layout,
        describe_worker=cluster.describe_worker,
        worker_environment=cluster.worker_environment,
        variables=cluster.ADDRESSES,
    ),
)
