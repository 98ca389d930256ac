"""The Keras model and optimiser both Keras engines train (TensorFlow and JAX backends), framework-free
until called: Keras is imported by `models.keras_zoo` inside the functions, in the engine process."""

from __future__ import annotations

from typing import Any

from parallel_vision.config import RunConfig
from parallel_vision.models import init as model_init
from parallel_vision.models.keras_zoo import build_keras_model, load_canonical


def make_optimizer(keras: Any, cfg: RunConfig) -> Any:
    """Adam or SGD as configured. Keras applies weight decay decoupled (AdamW-style), unlike torch.
    Adam's epsilon is Keras' 1e-7, or torch's 1e-8 under `init="aligned"` (models/init.py)."""
    decay = cfg.weight_decay or None
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.lr, weight_decay=decay,
                                     epsilon=model_init.adam_epsilon(cfg.framework, cfg.init))
    return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum, weight_decay=decay)


def build_model(cfg: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> Any:
    """The configured zoo model in Keras; under `init="aligned"` it starts from the framework-free weights of
    models/init.py (the same numbers the torch engine starts from, converted to Keras' layout)."""

    model = build_keras_model(cfg.model, input_shape, num_classes, cfg.dropout)  # type: ignore[arg-type]
    if cfg.init == "aligned":
        side, channels = int(input_shape[0]), int(input_shape[-1])
        load_canonical(model, model_init.aligned_weights(cfg.seed, channels, side, num_classes, model=cfg.model))
    return model
