"""Process set-up of a TensorFlow run: TensorFlow imported quietly, threads, devices and the strategy,
and the one state object every step of the run shares (`TFRun`, the Keras layer's KerasRun).

Strategies
    single       the default strategy on one device: '/gpu:0' when a GPU is used, else the CPU.
    mirrored     tf.distribute.MirroredStrategy over `workers` GPUs, or, without GPUs, over
                 `workers` logical CPU devices (configured before TensorFlow initialises; it
                 otherwise sees all cores as one device). All CPU replicas share the process's
                 intra-op thread pool; gradients are summed with ReductionToOneDevice on CPU and
                 TensorFlow's default (NCCL) on GPUs.
    multiworker  tf.distribute.MultiWorkerMirroredStrategy, one process per worker, cluster from
                 TF_CONFIG (checked first, see `cluster.py`); ring collectives on CPU, NCCL on GPUs.
                 The chief (worker 0 when there is no chief) writes every output.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.engines.common import pin_to_cores
from parallel_vision.engines.keras.backup import KerasBackups
from parallel_vision.engines.keras.run import KerasRun, refuse_devices
from parallel_vision.engines.levers import bf16_refusal
from parallel_vision.engines.tensorflow import backup as tf_backup
from parallel_vision.engines.tensorflow.cluster import ClusterTask, cluster_from_env
from parallel_vision.errors import ConfigError

#: Start-up lines TensorFlow writes to stderr on every import whatever TF_CPP_MIN_LOG_LEVEL says
#: (they are logged before absl is initialised). Anything else on stderr is passed through.
IMPORT_NOISE = (
    re.compile(r"^I\d{4} "),  # absl INFO lines, e.g. "oneDNN custom operations are on"
    re.compile(r"All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"This TensorFlow binary is optimized to use available CPU instructions"),
    re.compile(r"To enable the following instructions"),
    re.compile(r"Could not find cuda drivers on your machine"),
    re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory"),
    re.compile(r"TF-TRT Warning"),
)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's log chatter out of the user's terminal; real errors still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass


def import_tensorflow() -> tuple[Any, Any]:
    """Import TensorFlow and Keras with their start-up noise filtered out of stderr.

    The noise is written by C++ straight to file descriptor 2, so it is captured at that
    level; every captured line that is not known noise is written back, and if the import
    fails, everything is.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras
            import tensorflow as tf
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines()
            kept = [ln for ln in lines if failed or not any(p.search(ln) for p in IMPORT_NOISE)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()
    quiet_tensorflow()
    if os.environ.get(envvars.DEBUG):
        keras.config.disable_traceback_filtering()
    return tf, keras


@dataclass
class Placement:
    """The strategy and where its replicas run."""

    strategy: Any
    devices: list[str]
    gpus: list[str]
    cross_device_ops: str | None
    world_size: int
    is_writer: bool
    intra_op_threads: int
    inter_op_threads: int
    cluster: ClusterTask | None = None


def _gpu_name(tf: Any, gpu: Any) -> str:
    try:
        return str(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
    except (RuntimeError, ValueError):
        return str(gpu.name)


def place(tf: Any, cfg: RunConfig, cluster: ClusterTask | None) -> Placement:
    """Configure threads and devices (before TensorFlow initialises) and create the strategy."""
    gpus = tf.config.list_physical_devices("GPU")
    use_gpu = bool(gpus) and cfg.device != "cpu"
    refuse_devices(cfg, "TensorFlow", gpu_seen=bool(gpus), use_gpu=use_gpu)
    if cfg.precision == "bf16" and (refusal := bf16_refusal(use_gpu)):
        raise ConfigError(refusal)

    in_process_replicas = cfg.workers if cfg.strategy == "mirrored" else 1
    intra = cfg.resolved_threads()
    inter = 2 if in_process_replicas > 1 else 1
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)

    names: list[str] = []
    if cfg.strategy == "single":
        if use_gpu:
            tf.config.set_visible_devices(gpus[:1], "GPU")
            names = [_gpu_name(tf, gpus[0])]
        else:
            tf.config.set_visible_devices([], "GPU")
        strategy = tf.distribute.get_strategy()
        devices = ["/gpu:0" if use_gpu else "/cpu:0"]
        return Placement(strategy=strategy, devices=devices, gpus=names, cross_device_ops=None, world_size=1,
                         is_writer=True, intra_op_threads=intra, inter_op_threads=inter)

    if cfg.strategy == "mirrored":
        if use_gpu:
            if cfg.workers > len(gpus):
                raise ConfigError(
                    f"--workers {cfg.workers} but only {len(gpus)} GPU(s) are visible; "
                    "use --device cpu for logical CPU replicas"
                )
            tf.config.set_visible_devices(gpus[: cfg.workers], "GPU")
            names = [_gpu_name(tf, g) for g in gpus[: cfg.workers]]
            devices = [f"/gpu:{i}" for i in range(cfg.workers)]
            strategy = tf.distribute.MirroredStrategy(devices=devices)
        else:
            tf.config.set_visible_devices([], "GPU")
            cpus = tf.config.list_physical_devices("CPU")
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(cfg.workers)]
            )
            devices = [f"/cpu:{i}" for i in range(cfg.workers)]
            strategy = tf.distribute.MirroredStrategy(
                devices=devices,
                cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device="/cpu:0"),
            )
        ops = type(strategy.extended._cross_device_ops).__name__ if hasattr(
            strategy.extended, "_cross_device_ops") else None
        return Placement(strategy=strategy, devices=devices, gpus=names, cross_device_ops=ops, world_size=cfg.workers,
                         is_writer=True, intra_op_threads=intra, inter_op_threads=inter)

    assert cluster is not None
    implementation = tf.distribute.experimental.CommunicationImplementation
    if use_gpu:
        gpu = gpus[cluster.rank % len(gpus)]
        tf.config.set_visible_devices([gpu], "GPU")
        names = [_gpu_name(tf, gpu)]
        comm = implementation.NCCL
    else:
        tf.config.set_visible_devices([], "GPU")
        comm = implementation.RING
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(implementation=comm)
    )
    devices = [str(d) for d in strategy.extended.worker_devices]
    return Placement(
        strategy=strategy, devices=devices, gpus=names, cross_device_ops=f"collective-{comm.name.lower()}",
        world_size=cluster.world_size, is_writer=cluster.is_writer, intra_op_threads=intra, inter_op_threads=inter,
        cluster=cluster,
    )


class TFRun(KerasRun):
    """The state of a TensorFlow run: engines.keras.run.KerasRun, with `tf` naming its backend."""

    BACKUPS: ClassVar[KerasBackups] = tf_backup.BACKUPS
    tf = property(attrgetter("backend"))


def start_run(cfg: RunConfig) -> TFRun:
    """Everything before the data: cluster check (before TensorFlow is imported), pinning, TensorFlow,
    devices and strategy, determinism, seeds and precision. Records startup_s (launch → strategy ready)."""
    cluster = cluster_from_env(cfg.workers) if cfg.strategy == "multiworker" else None
    if cfg.pin_threads:
        pin_to_cores(cfg.resolved_threads(), cluster.local_rank if cluster else 0)
    tf, keras = import_tensorflow()
    placement = place(tf, cfg, cluster)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)
    return TFRun.started(cfg, tf, keras, placement)
