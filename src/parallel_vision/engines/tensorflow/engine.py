"""The TensorFlow engine: the paper's CNN in Keras 3 under one device, MirroredStrategy or
MultiWorkerMirroredStrategy, trained with `model.fit` as users (and the paper) do.

Imported only by the engine child process (or, under a user's own TF_CONFIG, by
the worker process itself); TensorFlow is imported inside the functions here.

Strategies
    single       the default strategy on one device: '/gpu:0' when a GPU is used, else the CPU.
    mirrored     tf.distribute.MirroredStrategy over `workers` GPUs, or, without GPUs, over
                 `workers` logical CPU devices (configured before TensorFlow initialises; it
                 otherwise sees all cores as one device). All CPU replicas share the process's
                 intra-op thread pool; gradients are summed with ReductionToOneDevice on CPU and
                 TensorFlow's default (NCCL) on GPUs.
    multiworker  tf.distribute.MultiWorkerMirroredStrategy, one process per worker, cluster from
                 TF_CONFIG (checked first, see `tf_cluster`); ring collectives on CPU, NCCL on GPUs.
                 The chief (worker 0 when there is no chief) writes every output.

Input pipeline (identical for every strategy): in-memory uint8 arrays → normalise once
((x/255 − mean)/std, float32, NHWC) → cache → seeded shuffle reshuffled every epoch →
batch(GLOBAL batch, drop_remainder=True) → prefetch. The strategy splits each global batch
over its replicas; `multiworker` shards by DATA (every worker reads the same shuffled order
and keeps its share), so all strategies take the same `steps_per_epoch` global steps.

What each number means (same keys as the torch engine, see results.schema)
    epoch_time_s     wall time of the epoch's training loop only: from `on_epoch_begin` to the
                     end of the last training step (its logs are read back, which synchronises).
                     Evaluation is excluded. The first epoch includes tf.function tracing and the
                     cache fill; `summarise_epochs` reports it separately as the warm-up epoch.
    eval_time_s      from the end of the training loop to the end of that epoch's evaluation of
                     the whole test set (batched by `eval_batch_size`, last batch kept).
    data_time_s      an ESTIMATE, not an in-loop measurement: `fit` runs the tf.data pipeline on
                     background threads ahead of the model (prefetch), so its cost cannot be
                     separated inside the loop. Before training, outside every clock, the same
                     pipeline is iterated alone for two epochs without a model: the first (cold:
                     normalising and filling the cache) is recorded for epoch 1, the second (warm)
                     for later epochs. Because the real pipeline overlaps compute, this is an upper
                     bound on input stall, and compute_time_s = epoch − data a lower bound.
    comm_time_s      None: gradient all-reduce runs inside the traced train step and is not
                     measurable from `fit`.
    n_test_evaluated counted by a summing metric across every replica and worker, and checked to
                     equal the test-set size every epoch (an EngineError otherwise); likewise the
                     training images per epoch must equal steps × global batch.

Timing block: startup_s = launch → strategy ready (process start, TensorFlow import, device and
cluster set-up); data_load_s = reading the arrays, building the pipelines and the two probe
passes; model_build_s = building and compiling the model inside the strategy scope; compile_s =
None (tracing happens inside the warm-up epoch and cannot be isolated from `fit`); eval_total_s =
sum of per-epoch eval times; final_eval_s = the final prediction pass.

Outputs (writer only): result.json, predictions.npy (every test image, in order, predicted by a
plain single-device copy of the trained weights, so every worker count gives the same layout),
model.keras (that copy, uncompiled, loadable with plain `keras.models.load_model`, written
atomically) and TensorBoard scalars under tb/ when `tensorboard` is on.

Reliability (docs/reliability.md): a backup at every epoch end (`tf_backup`, Keras'
BackupAndRestore contract, written atomically); `--resume` continues from the first unfinished
epoch. SIGINT/SIGTERM stop `single` and `mirrored` after the current step with an `incomplete`
result.json and exit 130/143; `multiworker` workers stop at once (a clean stop would need every
worker to leave at the same step), the last epoch's backup is what survives.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.engines.common import (
    EpochProgress,
    epoch_record,
    launch_time,
    load_split,
    normalisation,
    steps_per_epoch,
)
from parallel_vision.engines.metrics import metrics_from_logits
from parallel_vision.engines.outputs import build_result, save_predictions, save_result, tensorboard_disk_full
from parallel_vision.engines.provenance import host_environment
from parallel_vision.engines.signals import StopRequest
from parallel_vision.engines.tensorflow import backup as tf_backup
from parallel_vision.engines.tensorflow.cluster import ClusterTask, cluster_from_env
from parallel_vision.errors import ConfigError, EngineError, RunInterrupted
from parallel_vision.models import init as model_init

MODEL_FILE = "model.keras"
TB_DIR = "tb"
STRATEGY_NAMES = {
    "single": "default (one device)",
    "mirrored": "tf.distribute.MirroredStrategy",
    "multiworker": "tf.distribute.MultiWorkerMirroredStrategy",
}
TB_SCALARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_time_s", "images_per_s")


# --------------------------------------------------------------------------- process set-up
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


def pin_to_own_cores(cfg: RunConfig, rank: int) -> None:
    """`pin_threads`: keep this process (and the threads TensorFlow will start) on its own cores,
    the same slice the torch engine takes for the same rank."""
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - non-Linux
        return
    threads = cfg.resolved_threads()
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[(rank * threads) % len(cores):][:threads] or cores[:threads]
    os.sched_setaffinity(0, mine)


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
    if cfg.device == "cuda" and not gpus:
        raise ConfigError("--device cuda was given but TensorFlow sees no GPU")
    use_gpu = bool(gpus) and cfg.device != "cpu"
    if cfg.precision == "fp16" and not use_gpu:
        raise ConfigError("precision fp16 needs a GPU; use bf16 or fp32 on CPU")

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
        return Placement(strategy, devices, names, None, 1, True, intra, inter)

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
        return Placement(strategy, devices, names, ops, cfg.workers, True, intra, inter)

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
        strategy, devices, names, f"collective-{comm.name.lower()}", cluster.world_size,
        cluster.is_writer, intra, inter, cluster,
    )


# --------------------------------------------------------------------------- data
def to_nhwc(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, C, H, W) uint8 → (N, H, W, C), contiguous."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    elif x.ndim != 4:
        raise EngineError(f"expected images of shape (N, H, W[, C]); got {x.shape}")
    return np.ascontiguousarray(x)


def make_dataset(
    tf: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    mean: float,
    std: float,
    batch: int,
    train: bool,
    seed: int,
    shard_policy: Any,
) -> Any:
    """The input pipeline (see the module docstring). `images` are NHWC uint8."""
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))

    def normalise(x: Any, y: Any) -> tuple[Any, Any]:
        return (tf.cast(x, tf.float32) / 255.0 - mean) / std, y

    ds = ds.map(normalise, num_parallel_calls=autotune, deterministic=True).cache()
    if train:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch, drop_remainder=True)
    else:
        ds = ds.batch(batch, drop_remainder=False)
    ds = ds.prefetch(autotune)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy
    options.deterministic = True
    return ds.with_options(options)


def probe_pipeline(dataset: Any) -> tuple[float, float]:
    """Seconds to iterate `dataset` alone: a cold epoch (fills its cache), then a warm one."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for _batch in dataset:
            pass
        times.append(time.perf_counter() - start)
    return times[0], times[1]


# --------------------------------------------------------------------------- model
def _sample_count_metric(keras: Any) -> Any:
    """A metric that counts the examples it saw, summed over replicas and workers."""

    class SampleCount(keras.metrics.Metric):
        def __init__(self, name: str = "n_images", **kwargs: Any) -> None:
            super().__init__(name=name, dtype="float64", **kwargs)
            self.count = self.add_variable(shape=(), initializer="zeros", dtype="float64", name="count")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            n = keras.ops.shape(y_true)[0]
            self.count.assign_add(keras.ops.cast(n, "float64"))

        def result(self) -> Any:
            return keras.ops.add(self.count, 0.0)  # a new tensor, not a view of the variable

        def reset_state(self) -> None:
            self.count.assign(0.0)

    return SampleCount()


def make_optimizer(keras: Any, cfg: RunConfig) -> Any:
    """Adam or SGD as configured. Keras applies weight decay decoupled (AdamW-style), unlike torch.
    Adam's epsilon is Keras' 1e-7, or torch's 1e-8 under `init="aligned"` (models/init.py)."""
    decay = cfg.weight_decay or None
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.lr, weight_decay=decay,
                                     epsilon=model_init.adam_epsilon("tensorflow", cfg.init))
    return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum, weight_decay=decay)


def build_model(cfg: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """The Keras CNN; under `init="aligned"` it starts from the framework-free weights of models/init.py
    (the same numbers the torch engine starts from, converted to Keras' layout)."""
    from parallel_vision.models.keras_cnn import build_keras_cnn, load_canonical

    model = build_keras_cnn(input_shape=input_shape, num_classes=num_classes, dropout=cfg.dropout)  # type: ignore[arg-type]
    if cfg.init == "aligned":
        side, channels = int(input_shape[0]), int(input_shape[-1])
        load_canonical(model, model_init.aligned_weights(cfg.seed, channels, side, num_classes))
    return model


def patch_for_multiworker(tf: Any, model: Any, input_shape: tuple[int, ...]) -> None:
    """Make Keras 3 `fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two bugs in Keras' TF trainer stop it there, each side-stepped on this model instance only:

    1. Before training it averages the first distributed batch with `strategy.reduce("MEAN", …)`
       just to learn shapes and dtypes; under MultiWorkerMirrored that raises "Attempt to
       convert a value (PerReplica…) to a Tensor". We give the build step a zero batch of the
       right shape instead, which is all it uses.
    2. After each step it reduces every logged scalar with `strategy.reduce("MEAN", v, axis=0)`,
       which fails on a 0-d value ("Invalid reduction dimension 0"). The step's logs are returned
       as 1-element vectors, so that reduce yields the same scalar mean. (The epoch's logs come
       from the metrics themselves, aggregated over all workers, as without the patch.)
    """
    original_build = model._maybe_symbolic_build
    example = (np.zeros((1, *input_shape), np.float32), np.zeros((1,), np.int64))

    def build(iterator: Any = None, data_batch: Any = None) -> Any:
        return original_build(data_batch=example if data_batch is None else data_batch)

    original_step = model.train_step

    def train_step(data: Any) -> Any:
        logs = original_step(data)
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}

    model._maybe_symbolic_build = build
    model.train_step = train_step


# --------------------------------------------------------------------------- evaluation
def make_statistics_broadcast(tf: Any, strategy: Any, model: Any) -> Callable[[], None]:
    """Copy replica 0's non-trainable state (BatchNorm moving mean/variance) to every replica and worker.

    Keras creates the moving statistics with aggregation NONE, so under Mirrored and MultiWorkerMirrored
    each replica updates its own copy from its own part of the batch, while `get_weights()` (what is
    saved) returns replica 0's. Broadcasting replica 0's copy before each evaluation makes the evaluated
    model the saved one, with PyTorch DDP's default semantics (rank 0's buffers are broadcast at every
    forward). Trainable weights are already identical (all-reduced gradients), so they are left alone.
    """
    variables = [v.value if hasattr(v, "value") else v for v in model.non_trainable_variables]
    if strategy.num_replicas_in_sync == 1 or not variables:
        return lambda: None

    def copy_first() -> None:
        ctx = tf.distribute.get_replica_context()
        first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float32)
        summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.cast(v, tf.float32) * first for v in variables])
        for variable, value in zip(variables, summed, strict=True):
            variable.assign(tf.cast(value, variable.dtype))

    @tf.function
    def broadcast() -> None:
        strategy.run(copy_first)

    return broadcast


def make_evaluator(tf: Any, keras: Any, strategy: Any, model: Any, dataset: Any) -> Callable[[], Any]:
    """Mean loss, accuracy and image count over the whole test set, each image exactly once.

    A distributed loop of our own rather than fit's `validation_data`: Keras' evaluate builds
    the model on a mean of the first batch's per-replica parts, which fails when a partial
    batch splits unevenly (e.g. 500 test images over 2 replicas at eval batch 2000). Sums of
    loss, correct predictions and images are reduced over replicas and workers, so an empty
    per-replica part contributes nothing, and the count proves every image was seen once.
    """
    distributed = strategy.experimental_distribute_dataset(dataset)
    share_statistics = make_statistics_broadcast(tf, strategy, model)

    def sums(x: Any, y: Any) -> tuple[Any, Any]:
        logits = tf.cast(model(x, training=False), tf.float32)
        losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=y.dtype), y), tf.float64)
        return tf.reduce_sum(tf.cast(losses, tf.float64)), tf.reduce_sum(correct)

    def step(x: Any, y: Any) -> tuple[Any, Any, Any]:
        n = tf.shape(y)[0]
        zero = tf.constant(0.0, tf.float64)
        # A replica's part of the last batch can be empty; TF's CPU convolution mishandles an
        # empty batch, so such a part skips the model and contributes zeros.
        loss_sum, correct = tf.cond(n > 0, lambda: sums(x, y), lambda: (zero, zero))
        return loss_sum, correct, tf.cast(n, tf.float64)

    @tf.function(reduce_retracing=True)
    def run(x: Any, y: Any) -> tuple[Any, ...]:
        parts = strategy.run(step, args=(x, y))
        return tuple(strategy.reduce("SUM", v, axis=None) for v in parts)

    def evaluate() -> tuple[float, float, int]:
        share_statistics()  # every replica evaluates the state that would be saved now
        totals = [tf.constant(0.0, tf.float64)] * 3
        for x, y in distributed:
            totals = [a + b for a, b in zip(totals, run(x, y), strict=True)]
        loss_sum, correct, count = (float(t) for t in totals)
        if count <= 0:
            raise EngineError("the test set is empty")
        return loss_sum / count, correct / count, int(round(count))

    return evaluate


# --------------------------------------------------------------------------- the epoch clock
class EpochClock:
    """Keras callback body: times each epoch's training loop and evaluation, builds the records.

    Created through `make_callback` (the Keras base class is imported lazily).
    """

    def __init__(
        self,
        cfg: RunConfig,
        *,
        steps: int,
        n_test: int,
        data_times: tuple[float, float],
        evaluate: Callable[[], tuple[float, float, int]],
        progress: EpochProgress,
        summary_writer: Any,
        stop: StopRequest | None = None,
        on_record: Callable[[int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.stop = stop
        self.on_record = on_record  # called with the number of finished epochs (the backup)
        self.evaluate = evaluate
        self.steps = steps
        self.n_test = n_test
        self.data_times = data_times
        self.progress = progress
        self.summary_writer = summary_writer
        self.records: list[dict[str, Any]] = []
        self.stopped_in_epoch = False
        self._begin = self._train_end = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.progress.start_epoch(epoch + 1, self.steps)
        self._begin = time.perf_counter()
        self._train_end = 0.0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        # Keras has already read this step's logs back to Python (a host sync) before calling us.
        self._train_end = time.perf_counter()
        self.progress.advance()
        if self.stop is not None and self.stop.requested:
            self.stopped_in_epoch = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = dict(logs or {})
        number = epoch + 1
        if self.stopped_in_epoch:
            return  # a signal cut this epoch short: nothing to record, the last backup stands
        if not self._train_end:
            raise EngineError(f"epoch {number} ended without a training step")
        test_loss, test_accuracy, seen_test = self.evaluate()
        eval_end = time.perf_counter()
        expected_train = self.steps * self.cfg.batch_size
        seen_train = int(round(float(logs.get("n_images", -1))))
        if seen_train != expected_train:
            raise EngineError(
                f"epoch {number} trained on {seen_train} images, expected {expected_train} "
                f"({self.steps} steps × global batch {self.cfg.batch_size})"
            )
        if seen_test != self.n_test:
            raise EngineError(f"epoch {number} evaluated {seen_test} test images, expected {self.n_test}")
        train_loss = float(logs["loss"])
        if not np.isfinite(train_loss):
            raise EngineError(f"training diverged: loss is {train_loss} in epoch {number}")
        record = epoch_record(
            epoch=number,
            train_loss=train_loss,
            train_accuracy=float(logs["accuracy"]),
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            epoch_time_s=self._train_end - self._begin,
            n_train_images=seen_train,
            n_test_evaluated=seen_test,
            data_time_s=self.data_times[0] if epoch == 0 else self.data_times[1],
            comm_time_s=None,
            eval_time_s=eval_end - self._train_end,
        )
        self.records.append(record)
        self.progress.end_epoch(record)
        if self.summary_writer is not None:
            import tensorflow as tf

            try:
                with self.summary_writer.as_default():
                    for key in TB_SCALARS:
                        if record[key] is not None:
                            tf.summary.scalar(key, record[key], step=number)
                self.summary_writer.flush()
            except Exception as exc:  # a full disk: tf.errors.ResourceExhaustedError "No space left on device"
                out = Path(self.cfg.out_dir or ".")
                error = tensorboard_disk_full(exc, out / TB_DIR, len(TB_SCALARS), tf_backup.kept_note(out))
                if error is exc:
                    raise
                raise error from None
        if self.on_record is not None:
            self.on_record(number)


def make_callback(keras: Any, clock: EpochClock) -> Any:
    class _Callback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            clock.on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            clock.on_train_batch_end(batch, logs)
            if clock.stopped_in_epoch:
                self.model.stop_training = True  # fit leaves after this step

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            clock.on_epoch_end(epoch, logs)

    return _Callback()


# --------------------------------------------------------------------------- outputs
def save_model_atomically(model: Any, out: Path) -> str:
    """`model.save` into memory (see tf_backup.keras_bytes: h5py must never meet a full disk), then
    written atomically (temp file, fsync, rename); a full disk is a one-line DiskFullError."""
    from parallel_vision.atomic import atomic_write_bytes

    payload = tf_backup.keras_bytes(model.save, MODEL_FILE)
    atomic_write_bytes(out / MODEL_FILE, payload, kept=tf_backup.kept_note(out))
    return MODEL_FILE


def environment(tf: Any, keras: Any, cfg: RunConfig, placement: Placement) -> dict[str, Any]:
    env = host_environment()
    policy = keras.mixed_precision.global_policy().name
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
            "dtype_policy": policy,
            "jit_compile": bool(cfg.jit_compile),
            "cluster": placement.cluster.cluster if placement.cluster else None,
        }
    )
    return env


# --------------------------------------------------------------------------- the run
def train_and_evaluate(cfg: RunConfig) -> None:
    """Run `cfg` in this process (one worker of it for `multiworker`); the writer saves the outputs."""
    cluster = cluster_from_env(cfg.workers) if cfg.strategy == "multiworker" else None
    if cfg.pin_threads:
        pin_to_own_cores(cfg, cluster.rank if cluster else 0)
    tf, keras = import_tensorflow()
    placement = place(tf, cfg, cluster)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)
    if cfg.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    elif cfg.precision == "fp16":
        keras.mixed_precision.set_global_policy("mixed_float16")
    timing: dict[str, float | None] = {"startup_s": time.time() - launch_time(), "compile_s": None}
    out = Path(cfg.out_dir or ".")
    writer = placement.is_writer

    # ---- data
    t = time.perf_counter()
    x_train, y_train, class_names = load_split(cfg, "train")
    x_test, y_test, _ = load_split(cfg, "test")
    x_train, x_test = to_nhwc(x_train), to_nhwc(x_test)
    y_train, y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
    mean, std = normalisation(cfg)
    shard = tf.data.experimental.AutoShardPolicy
    policy = shard.DATA if cfg.strategy == "multiworker" else shard.OFF

    def train_data() -> Any:
        return make_dataset(tf, x_train, y_train, mean=mean, std=std, batch=cfg.batch_size, train=True,
                            seed=cfg.seed, shard_policy=policy)

    def test_data() -> Any:
        return make_dataset(tf, x_test, y_test, mean=mean, std=std, batch=cfg.eval_batch_size, train=False,
                            seed=cfg.seed, shard_policy=policy)

    data_times = probe_pipeline(train_data())  # a separate pipeline: training's cache starts cold too
    train_ds, test_ds = train_data(), test_data()
    timing["data_load_s"] = time.perf_counter() - t
    steps = steps_per_epoch(len(x_train), cfg.batch_size)

    # ---- model
    t = time.perf_counter()
    input_shape = tuple(int(d) for d in x_train.shape[1:])
    with placement.strategy.scope():
        model = build_model(cfg, input_shape, len(class_names))
        model.compile(
            optimizer=make_optimizer(keras, cfg),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"), _sample_count_metric(keras)],
            jit_compile=bool(cfg.jit_compile),
        )
        if cfg.strategy == "multiworker":
            patch_for_multiworker(tf, model, input_shape)
    timing["model_build_s"] = time.perf_counter() - t

    # ---- resume from the last epoch-end backup (every worker reads it: they must start alike)
    reliability: dict[str, Any] = {"backups_written": 0, "backup_time_s": 0.0, "resumed_from": []}
    resumed = None
    if cfg.resume:
        resumed = tf_backup.read(out, cfg.identity(), placement.world_size)
        if resumed is None and writer:
            print(f"pvision: no backup in {out}; starting from the beginning", file=sys.stderr, flush=True)
    if cluster is not None:
        agree_on_start(tf, placement.strategy, resumed.epoch if resumed else 0)
    if resumed is not None:
        with placement.strategy.scope():
            model.optimizer.build(model.trainable_variables)  # so its slots load too
            model.load_weights(str(resumed.weights))
        reliability.update({k: resumed.reliability[k] for k in ("backups_written", "backup_time_s")
                            if k in resumed.reliability})
        reliability["resumed_from"] = list(resumed.reliability.get("resumed_from", [])) + [{"epoch": resumed.epoch}]
        if writer:
            print(f"pvision: resuming after epoch {resumed.epoch} of {cfg.epochs} "
                  f"({tf_backup.backup_dir(out) / tf_backup.STATE_FILE})", file=sys.stderr, flush=True)
    start_epoch = resumed.epoch if resumed else 0

    summary_writer = None
    if writer and cfg.tensorboard:
        summary_writer = tf.summary.create_file_writer(str(out / TB_DIR))

    # ---- train (+ per-epoch evaluation inside fit); a clean stop on a signal except under multiworker
    stop = StopRequest().install() if cluster is None else None
    with EpochProgress(cfg.epochs, enabled=writer) as progress:
        evaluate = make_evaluator(tf, keras, placement.strategy, model, test_ds)

        def back_up(finished: int) -> None:
            t0 = time.perf_counter()
            reliability["backups_written"] += 1  # this one included in the state it writes
            tf_backup.write(model, out, epoch=finished, identity=cfg.identity(), world_size=placement.world_size,
                            records=clock.records, timing=timing, reliability=reliability, writer=writer)
            reliability["backup_time_s"] += time.perf_counter() - t0

        clock = EpochClock(cfg, steps=steps, n_test=len(x_test), data_times=data_times, evaluate=evaluate,
                           progress=progress, summary_writer=summary_writer, stop=stop, on_record=back_up)
        clock.records = list(resumed.records) if resumed else []
        try:
            if start_epoch < cfg.epochs:
                model.fit(train_ds, epochs=cfg.epochs, initial_epoch=start_epoch, verbose=0, shuffle=False,
                          callbacks=[make_callback(keras, clock)])
        except KeyboardInterrupt:  # multiworker (no handler), or a second Ctrl-C
            _stop(cfg, tf, keras, placement, clock.records, timing, class_names, len(x_train), out, writer, 130)
        finally:
            if stop is not None:
                stop.restore()
        if stop is not None and stop.requested and len(clock.records) < cfg.epochs:  # else: the run is done
            _stop(cfg, tf, keras, placement, clock.records, timing, class_names, len(x_train), out, writer,
                  stop.exit_code, stop.name)
    if summary_writer is not None:
        summary_writer.close()
    records = clock.records
    timing["eval_total_s"] = sum(r["eval_time_s"] for r in records)

    # ---- outputs: every worker reads the weights (a collective under multiworker), the writer saves
    weights = model.get_weights()
    if not writer:
        return
    t = time.perf_counter()
    local = build_model(cfg, input_shape, len(class_names))
    local.set_weights(weights)
    predict_ds = make_dataset(tf, x_test, y_test, mean=mean, std=std, batch=cfg.eval_batch_size,
                              train=False, seed=cfg.seed, shard_policy=shard.OFF)
    logits = local.predict(predict_ds, verbose=0)
    y_pred = np.asarray(np.argmax(logits, axis=1), dtype=np.int64)
    timing["final_eval_s"] = time.perf_counter() - t
    if len(y_pred) != len(y_test):
        raise EngineError(f"predicted {len(y_pred)} test images, expected {len(y_test)}")
    if records:  # the last epoch's test metrics are the saved model's, from the predictions it saves
        test_loss, test_accuracy = metrics_from_logits(logits, y_test)
        records[-1] = dict(records[-1], test_loss=test_loss, test_accuracy=test_accuracy)

    kept = tf_backup.kept_note(out)  # what a full disk leaves: the last epoch's backup, removed only at the end
    artifacts = {"predictions": save_predictions(y_pred, out, kept=kept), "model": save_model_atomically(local, out)}
    if cfg.tensorboard:
        artifacts["tensorboard"] = TB_DIR
    result = build_result(
        cfg,
        environment=environment(tf, keras, cfg, placement),
        epochs=records,
        timing=timing,
        y_true=y_test,
        y_pred=y_pred,
        class_names=class_names,
        world_size=placement.world_size,
        n_train=len(x_train),
        artifacts=artifacts,
        extra={"reliability": reliability},
    )
    save_result(result, out, kept=kept)
    tf_backup.remove(out)  # the run is complete: nothing is left to resume


def agree_on_start(tf: Any, strategy: Any, epoch: int) -> None:
    """Every multiworker worker must resume from the same epoch, or the collectives would hang.

    With n replicas, all values are equal iff n·Σe² = (Σe)²; every worker sees the same sums.
    """
    @tf.function
    def sums() -> Any:
        def local() -> Any:
            e = tf.constant(float(epoch), tf.float64)
            return tf.stack([e, e * e, tf.constant(1.0, tf.float64)])
        per_replica = strategy.run(local)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    total, squares, n = (float(v) for v in sums().numpy())
    if abs(n * squares - total * total) > 0.5:
        raise ConfigError(f"workers disagree on where to resume (this one: after epoch {epoch}); every worker must "
                          "see the same --out, on storage they share")


def _stop(
    cfg: RunConfig,
    tf: Any,
    keras: Any,
    placement: Placement,
    records: list[dict[str, Any]],
    timing: dict[str, float | None],
    class_names: list[str],
    n_train: int,
    out: Path,
    writer: bool,
    exit_code: int,
    signal_name: str = "SIGINT",
) -> None:
    """Keep the finished epochs as an `incomplete` result.json (no model, no predictions; the backup
    of the last one is already on disk) and leave with exit code 128 + signal."""
    if writer and records:
        timing = dict(timing, eval_total_s=sum(r["eval_time_s"] for r in records))
        empty = np.zeros(0, dtype=np.int64)
        result = build_result(
            cfg,
            environment=environment(tf, keras, cfg, placement),
            epochs=records,
            timing=timing,
            y_true=empty,
            y_pred=empty,
            class_names=class_names,
            world_size=placement.world_size,
            n_train=n_train,
            artifacts=dict({"backup": tf_backup.BACKUP_DIR}, **({"tensorboard": TB_DIR} if cfg.tensorboard else {})),
            status="incomplete",
        )
        save_result(result, out, kept=tf_backup.kept_note(out))
    kept = (f"{len(records)} finished epoch(s) kept; continue with --resume" if writer and records
            else "no epoch had finished")
    raise RunInterrupted(f"stopped by {signal_name}: {kept}", exit_code=exit_code) from None
