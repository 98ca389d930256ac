"""Process set-up of a JAX run: the environment JAX reads at import, JAX and Keras imported, the devices and
the distribution, and the one state object every step of the run shares (`JaxRun`, the Keras layer's KerasRun).

Strategies
    single       one device: the first GPU when one is used, else the CPU (one XLA CPU device).
    dp           keras.distribution.DataParallel over `workers` local devices: GPUs, or, without GPUs,
                 `workers` virtual CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count, set
                 before JAX is imported). One SPMD program: XLA partitions the step over the batch axis
                 and inserts the gradient all-reduce itself. Virtual CPU devices share one process's
                 thread pool, so on a CPU this measures the SPMD machinery, not a speed-up.
    multiworker  one process per device (never virtual devices with cross-process CPU collectives,
                 openxla/xla#16430): jax.distributed.initialize from KERAS_DISTRIBUTION_*
                 (cluster.py; heartbeat timeout = --collective-timeout, else 100 s), then DataParallel
                 over every process's device; each process feeds its own shard of every global batch
                 (auto_shard_dataset=False).
                 CPU collectives across processes: gloo. Rank 0 writes every output.

    model-parallel
                 keras.distribution.ModelParallel over `workers` local devices (virtual CPU devices as in
                 `dp`): a (1, N) mesh ('batch', 'model'), wide_mlp's hidden layers split on 'model' by a
                 LayoutMap (layout.py), the batch whole on every device. Multi-process model parallelism is not
                 offered: the strategy is one process (strategies.py), like `dp`.

In `dp` and `multiworker` the parameters are replicated and the batch is split; BatchNorm's batch statistics
are those of the whole global batch (the SPMD program reduces them across devices), so the maths of
`dp` and `multiworker` is that of `single` at the same global batch, up to reduction order. In
`model-parallel` each state array has its variable's layout instead, and the maths is single's as well.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, ClassVar

from parallel_vision import envvars
from parallel_vision.config import RunConfig, heartbeat_timeout_s, usable_cores
from parallel_vision.engines.common import pin_to_cores
from parallel_vision.engines.jax import backup as jax_backup
from parallel_vision.engines.jax import layout, pooling
from parallel_vision.engines.jax.cluster import JaxCluster, cluster_from_env
from parallel_vision.engines.jax.cluster import present as cluster_present
from parallel_vision.engines.keras.backup import KerasBackups
from parallel_vision.engines.keras.run import KerasRun, refuse_devices
from parallel_vision.errors import ConfigError

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def xla_flags(current: str, virtual_devices: int | None, single_thread: bool) -> str:
    """XLA_FLAGS for this process: the user's own flags kept, ours added (a device count replaces theirs)."""
    flags = [f for f in current.split() if not f.startswith(DEVICE_COUNT_FLAG)]
    if virtual_devices is not None:
        flags.append(f"{DEVICE_COUNT_FLAG}={virtual_devices}")
    if single_thread and not any(f.startswith("--xla_cpu_multi_thread_eigen") for f in flags):
        # Only `--` flags: XLA stops reading XLA_FLAGS at a bare word (an `intra_op_parallelism_threads=1` here
        # once hid every flag after it, benchmarks/jax_cpu.py); the pool's size comes from pinning (start_run).
        flags.append("--xla_cpu_multi_thread_eigen=false")
    return " ".join(flags)


def configure_environment(cfg: RunConfig) -> None:
    """What JAX and Keras read once, at import: must run before either is imported in this process."""
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != "jax":
        raise ConfigError("Keras was already imported in this process with another backend; "
                          "the JAX engine needs a process of its own")
    os.environ["KERAS_BACKEND"] = "jax"
    if cfg.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    virtual = cfg.workers if cfg.strategy_spec.shares_process else None  # only the CPU platform reads it
    os.environ["XLA_FLAGS"] = xla_flags(os.environ.get("XLA_FLAGS", ""), virtual, cfg.resolved_threads() == 1)


def import_jax() -> tuple[Any, Any]:
    """Import JAX and Keras (backend jax), with TensorFlow hidden from Keras and tiled max-pooling done as
    reshape + max (engines/jax/pooling.py).

    Keras 3 imports TensorFlow lazily whenever it is installed, whatever the backend: `set_random_seed`
    seeds it, and `model.save` checks for tf.TensorShape. TensorFlow and JAX must never share a process
    (each brings its own XLA runtime and thread pools), and this engine uses nothing of TensorFlow, so Keras'
    lazy handle is marked unavailable before anything can load it (`other_frameworks_loaded` in the result
    shows it stayed that way).
    """
    import jax
    import keras

    try:
        from keras.src.utils import module_utils

        if module_utils.tensorflow.module is None:
            module_utils.tensorflow._available = False
    except (ImportError, AttributeError):  # pragma: no cover - a Keras without the lazy handle
        pass

    if keras.backend.backend() != "jax":
        raise ConfigError(f"Keras runs on the {keras.backend.backend()!r} backend in this process, not 'jax'")
    pooling.install(keras)  # max-pool's gradient without XLA:CPU's slow select-and-scatter (pooling.py)
    if os.environ.get(envvars.DEBUG):
        keras.config.disable_traceback_filtering()
    return jax, keras


@dataclass
class Placement:
    """The devices, the distribution and the mesh the run uses."""

    devices: list[Any]
    distribution: Any
    mesh: Any
    gpus: list[str]
    world_size: int  # replicas (devices) in the SPMD program
    processes: int
    is_writer: bool
    threads: int
    cluster: JaxCluster | None = None

    @property
    def platform(self) -> str:
        return str(self.devices[0].platform)


def place(jax: Any, keras: Any, cfg: RunConfig, cluster: JaxCluster | None) -> Placement:
    """Pick the devices and build the DataParallel distribution (after jax.distributed where needed)."""
    threads = cfg.resolved_threads()
    if cluster is not None:
        # What keras.distribution.initialize does (its cross-process seed is moot: start_run set the seed), but
        # with the heartbeat timeout: Keras passes none, and a second jax.distributed.initialize is refused.
        jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.world_size,
                                   process_id=cluster.process_id,
                                   heartbeat_timeout_seconds=heartbeat_timeout_s(cfg.collective_timeout))
    try:
        gpus = jax.devices("gpu") if cfg.device != "cpu" else []
    except RuntimeError:
        gpus = []
    refuse_devices(cfg, "JAX", gpu_seen=bool(gpus), use_gpu=bool(gpus))
    backend = "gpu" if gpus else "cpu"
    if cluster is not None:
        first: dict[int, Any] = {}  # one device per process: never virtual devices with CPU collectives
        for device in sorted(jax.devices(backend), key=lambda d: (d.process_index, d.id)):
            first.setdefault(device.process_index, device)
        devices = list(first.values())
        if len(devices) != cluster.world_size:
            raise ConfigError(f"{len(devices)} devices across {cluster.world_size} processes; "
                              "multiworker uses exactly one device per process")
    else:
        available = jax.devices(backend)
        wanted = cfg.workers if cfg.strategy_spec.shares_process else 1
        if len(available) < wanted:
            kind = "GPU(s)" if gpus else "CPU device(s)"
            raise ConfigError(f"--workers {wanted} but JAX sees only {len(available)} {kind}")
        devices = list(available[:wanted])
    if cfg.strategy == "model-parallel":
        distribution, mesh = layout.distribution(keras, devices), layout.jax_mesh(jax, devices)
    else:
        distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        mesh = jax.sharding.Mesh(devices, ("batch",))
    names = [str(getattr(d, "device_kind", d)) for d in devices] if gpus else []
    return Placement(devices=devices, distribution=distribution, mesh=mesh, gpus=names, world_size=len(devices),
                     processes=cluster.world_size if cluster else 1, is_writer=cluster.is_writer if cluster else True,
                     threads=threads, cluster=cluster)


@dataclass
class JaxRun(KerasRun):
    """The state of a JAX run: engines.keras.run.KerasRun, with `jax` naming its backend."""

    BACKUPS: ClassVar[KerasBackups] = jax_backup.BACKUPS
    jax = property(attrgetter("backend"))
    environment_extra: dict[str, Any] = field(default_factory=dict)  # model-parallel: the layout as it came out


def start_run(cfg: RunConfig) -> JaxRun:
    """Everything before the data: cluster check (before JAX is imported), environment, pinning, JAX and
    Keras, devices and distribution, seeds and precision. Records startup_s (launch → devices ready)."""
    cluster = cluster_from_env(cfg.workers) if cfg.strategy == "multiworker" else None
    if cfg.strategy == "model-parallel" and cluster_present():
        raise ConfigError(layout.NO_PROCESSES)
    configure_environment(cfg)
    threads = cfg.resolved_threads()
    if cfg.pin_threads or threads < usable_cores():
        # XLA sizes its CPU thread pool by the cores this process may use: pinning is what limits it.
        pin_to_cores(threads, cluster.local_rank if cluster else 0)
    jax, keras = import_jax()
    keras.utils.set_random_seed(cfg.seed)  # before jax.distributed: Keras then needs no cross-process seed
    placement = place(jax, keras, cfg, cluster)
    return JaxRun.started(cfg, jax, keras, placement)
