"""The Keras model of a TensorFlow run: the paper's CNN, its optimiser and metrics, compiled inside the
strategy's scope (and patched where Keras 3 cannot `fit` under MultiWorkerMirroredStrategy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from parallel_vision.engines.keras.model import build_model, make_optimizer
from parallel_vision.engines.tensorflow.setup import TFRun

__all__ = ["build_model", "compiled_model", "make_optimizer", "patch_for_multiworker", "sample_count_metric"]


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
