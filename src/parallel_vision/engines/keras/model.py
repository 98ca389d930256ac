"""The Keras model and optimiser both Keras engines train (TensorFlow and JAX backends), framework-free
until called: Keras is imported by `models.keras_zoo` inside the functions, in the engine process."""

from __future__ import annotations

from typing import Any

import numpy as np

from parallel_vision.config import RunConfig
from parallel_vision.engines import levers
from parallel_vision.models import init as model_init
from parallel_vision.models.keras_zoo import build_keras_model, load_canonical


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
            index = keras.ops.floor_divide(keras.ops.cast(step, "int32"), accumulation)  # int32: JAX without x64
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
                                     epsilon=model_init.adam_epsilon(cfg.framework, cfg.init), **accumulate)
    return keras.optimizers.SGD(learning_rate=rate, momentum=cfg.momentum, weight_decay=decay, **accumulate)


def build_model(cfg: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """The configured zoo model in Keras; under `init="aligned"` it starts from the framework-free weights of
    models/init.py (the same numbers the torch engine starts from, converted to Keras' layout)."""

    model = build_keras_model(cfg.model, input_shape, num_classes, cfg.dropout)  # type: ignore[arg-type]
    if cfg.init == "aligned":
        side, channels = int(input_shape[0]), int(input_shape[-1])
        load_canonical(model, model_init.aligned_weights(cfg.seed, channels, side, num_classes, model=cfg.model))
    return model
