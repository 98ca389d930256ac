"""The Keras model of a TensorFlow run: the paper's CNN, its optimiser and metrics, compiled inside the
strategy's scope (and patched where Keras 3 cannot `fit` under MultiWorkerMirroredStrategy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from parallel_vision.config import RunConfig
from parallel_vision.engines import levers
from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.models import init as model_init
from parallel_vision.models.keras_zoo import build_keras_model, load_canonical


def sample_count_metric(keras: Any) -> Any:
    """A metric that counts the examples it saw, summed over replicas and workers (`n_images` in the logs)."""

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


def lr_schedule(keras: Any, cfg: RunConfig, n_train: int) -> Any:
    """The learning rate of every optimiser step, `engines.levers.lr_sequence` (the numbers the torch engine
    uses too), as a Keras LearningRateSchedule; the plain `lr` when nothing changes it.

    Keras calls a schedule with its raw iteration counter, which counts micro-steps under gradient
    accumulation; the update of optimiser step s happens at micro-step s·K + K − 1, so step = counter ÷ K."""
    if not levers.needs_schedule(cfg):
        return cfg.lr
    table = np.asarray(levers.lr_sequence(cfg, n_train), dtype=np.float32)
    accumulation = cfg.grad_accum

    class StepTable(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            index = keras.ops.floor_divide(keras.ops.cast(step, "int64"), accumulation)
            index = keras.ops.minimum(index, len(table) - 1)
            return keras.ops.take(keras.ops.convert_to_tensor(table), index)

        def get_config(self) -> dict[str, Any]:
            return {"lr_sequence": table.tolist(), "grad_accum": accumulation}

    return StepTable()


def make_optimizer(keras: Any, cfg: RunConfig, n_train: int = 0) -> Any:
    """Adam or SGD as configured. Keras applies weight decay decoupled (AdamW-style), unlike torch.
    Adam's epsilon is Keras' 1e-7, or torch's 1e-8 under `init="aligned"` (models/init.py).
    The rate follows `lr_schedule` (LR scaling, warm-up); `grad_accum` > 1 is Keras' own
    `gradient_accumulation_steps` (the mean of the micro-batches' gradients, one update per K micro-steps)."""
    decay = cfg.weight_decay or None
    rate = lr_schedule(keras, cfg, n_train)
    accumulate = {"gradient_accumulation_steps": cfg.grad_accum} if cfg.grad_accum > 1 else {}
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate, weight_decay=decay,
                                     epsilon=model_init.adam_epsilon("tensorflow", cfg.init), **accumulate)
    return keras.optimizers.SGD(learning_rate=rate, momentum=cfg.momentum, weight_decay=decay, **accumulate)


def build_model(cfg: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """The configured zoo model in Keras; under `init="aligned"` it starts from the framework-free weights of
    models/init.py
    (the same numbers the torch engine starts from, converted to Keras' layout)."""

    model = build_keras_model(cfg.model, input_shape, num_classes, cfg.dropout)  # type: ignore[arg-type]
    if cfg.init == "aligned":
        side, channels = int(input_shape[0]), int(input_shape[-1])
        load_canonical(model, model_init.aligned_weights(cfg.seed, channels, side, num_classes, model=cfg.model))
    return model


def compiled_model(run: TFRun, input_shape: tuple[int, ...]) -> Any:
    """The model to train: built and compiled inside the strategy's scope."""
    cfg, keras = run.cfg, run.keras
    with run.placement.strategy.scope():
        model = build_model(cfg, input_shape, len(run.class_names))
        model.compile(
            optimizer=make_optimizer(keras, cfg, run.n_train),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"), sample_count_metric(keras)],
            jit_compile=bool(cfg.jit_compile),
        )
        if cfg.strategy == "multiworker":
            patch_for_multiworker(run.tf, model, input_shape)
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
