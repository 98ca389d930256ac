"""The paper's CNN (Fig. 2) in Keras 3, nothing else.

Layer for layer as the figure: three conv blocks (32, 64, 128 filters, 3×3
`same`, BatchNorm, ReLU; max-pool after the 2nd and 3rd), then Flatten,
Dropout and three dense layers (128, 64, 10) with BatchNorm, ReLU and dropout
between them. The last layer returns logits (train with `from_logits=True`).
`count_params()` is 906,186, the figure's total (Keras counts BatchNorm's
moving mean/variance as parameters).

Two choices the figure leaves open, made to match `models/torch_cnn.py` so a
TensorFlow number and a PyTorch number describe the same network:

- Fig. 2 lists no activation layer after the dense BatchNorms; the text says the
  dense layers use BatchNorm and ReLU, so the order is Dense–BN–ReLU–Dropout.
- BatchNorm momentum/epsilon default to PyTorch's (0.9 in Keras' convention,
  i.e. torch's 0.1, and 1e-5) rather than Keras' 0.99/1e-3: with only 29 steps
  per epoch at batch 2048, Keras' 0.99 leaves the moving statistics mostly at
  their initial values for the first epochs, so test accuracy would lag for a
  reason that has nothing to do with the framework. Pass `bn_momentum=0.99,
  bn_epsilon=1e-3` for Keras' own defaults.

Weight initialisers are each framework's defaults (Keras: Glorot uniform); `load_canonical`
replaces them with the framework-free set of `models.init` (`--init aligned`).
Keras is imported inside the function: importing this module is free.
"""

from __future__ import annotations

from typing import Any

from parallel_vision.models.init import keras_weights

PAPER_TOTAL_PARAMETERS = 906_186


def build_keras_cnn(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    dropout: float = 0.25,
    *,
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-5,
    name: str = "paper_cnn",
) -> Any:
    """Fig. 2 as a `keras.Sequential` (NHWC input, logits out; the last Dense is always float32)."""
    import keras
    from keras import layers

    def bn() -> Any:
        return layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon)

    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, padding="same"),
            bn(),
            layers.ReLU(),
            layers.Conv2D(64, 3, padding="same"),
            bn(),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, padding="same"),
            bn(),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(dropout),
            layers.Dense(128),
            bn(),
            layers.ReLU(),
            layers.Dropout(dropout),
            layers.Dense(64),
            bn(),
            layers.ReLU(),
            layers.Dropout(dropout),
            # float32 logits even under a mixed-precision policy (stable softmax/loss).
            layers.Dense(num_classes, dtype="float32"),
        ],
        name=name,
    )


def load_canonical(model: Any, layers: list[Any]) -> None:
    """Set a canonical weight set (`models.init.aligned_weights`) into a `build_keras_cnn` model.

    `keras_weights` does the layout conversion (HWIO kernels, (in, out) dense kernels, the first dense
    kernel's rows in NHWC flatten order); shapes are checked here against the model's own.
    """

    values = keras_weights(layers)
    current = [tuple(v.shape) for v in model.weights]  # shapes only: reading values may be a collective
    if len(values) != len(current):
        raise ValueError(f"the model has {len(current)} weight arrays, the weight set {len(values)}")
    for i, (have, new) in enumerate(zip(current, values, strict=True)):
        if have != new.shape:
            raise ValueError(f"weight {i}: shape {have} vs {new.shape}")
    model.set_weights(values)
