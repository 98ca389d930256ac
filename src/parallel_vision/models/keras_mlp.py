"""`wide_mlp` in Keras 3: `models.torch_mlp.WideMLP` layer for layer.

Flatten → Dense(4096) → BatchNorm → ReLU → Dropout → Dense(4096) → BatchNorm → ReLU → Dropout →
Dense(classes, float32 logits). Layers are named as the PyTorch modules (``fc1``, ``bn1``, ``fc2``,
``bn2``, ``fc3``) so canonical weights map by name. Keras flattens NHWC in (H, W, C) order, PyTorch NCHW
in (C, H, W) order: `models.init.keras_dense_kernel` permutes fc1's rows accordingly.

Keras is imported inside the function: importing this module is free.
"""

from __future__ import annotations

from typing import Any

from parallel_vision.models.catalog import WIDE_MLP_WIDTH


def build_keras_wide_mlp(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    dropout: float = 0.25,
    *,
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-5,
    width: int = WIDE_MLP_WIDTH,
    name: str = "wide_mlp",
) -> Any:
    """The wide MLP as a functional `keras.Model` (NHWC input, float32 logits)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Flatten(name="flatten")(inputs)
    for i in (1, 2):
        x = layers.Dense(width, name=f"fc{i}")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.Dropout(dropout, name=f"drop{i}")(x)
    # float32 logits even under a mixed-precision policy (stable softmax/loss).
    outputs = layers.Dense(num_classes, dtype="float32", name="fc3")(x)
    return keras.Model(inputs, outputs, name=name)
