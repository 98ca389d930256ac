"""ResNet-18, CIFAR variant, in Keras 3: `models.torch_resnet.ResNet18` layer for layer.

NHWC input, logits out (the last Dense is float32 even under a mixed-precision policy). Every layer is
named after its PyTorch module (``conv1``, ``layer2.0.conv1``, ``layer2.0.shortcut.0``, ``linear``; the
naming rule is the identity, Keras 3 accepts '.'), so canonical weights map by name
(`models.keras_zoo.load_canonical`).

Padding: a stride-2 3×3 convolution is an explicit ZeroPadding2D(1) and a `valid` convolution. Keras'
`same` padding at stride 2 pads an even-sized input only at the bottom/right (TensorFlow's rule), PyTorch's
``padding=1`` pads both sides, so `same` would sample different pixels (at 32×32: 8 → 4 in stage 4) and the
two frameworks would compute different functions. Stride-1 3×3 convolutions use `same` (one pixel each
side, as torch). BatchNorm momentum/epsilon default to PyTorch's (see `models.keras_cnn`).

Keras is imported inside the function: importing this module is free.
"""

from __future__ import annotations

from typing import Any

from parallel_vision.models.catalog import RESNET18_STAGES


def build_keras_resnet18(
    input_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
    *,
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-5,
    name: str = "resnet18",
) -> Any:
    """CIFAR ResNet-18 as a functional `keras.Model` (NHWC input, float32 logits)."""
    import keras
    from keras import layers

    def bn(layer_name: str) -> Any:
        return layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=layer_name)

    def conv3x3(x: Any, filters: int, stride: int, layer_name: str) -> Any:
        if stride == 1:
            return layers.Conv2D(filters, 3, padding="same", use_bias=False, name=layer_name)(x)
        x = layers.ZeroPadding2D(1, name=layer_name + ".pad")(x)
        return layers.Conv2D(filters, 3, strides=stride, padding="valid", use_bias=False, name=layer_name)(x)

    inputs = keras.Input(shape=input_shape)
    x = conv3x3(inputs, 64, 1, "conv1")
    x = layers.ReLU(name="relu")(bn("bn1")(x))
    in_planes = 64
    for stage, planes, first_stride in RESNET18_STAGES:
        for block in range(2):
            p = f"layer{stage}.{block}."
            stride = first_stride if block == 0 else 1
            out = conv3x3(x, planes, stride, p + "conv1")
            out = layers.ReLU(name=p + "relu1")(bn(p + "bn1")(out))
            out = bn(p + "bn2")(conv3x3(out, planes, 1, p + "conv2"))
            shortcut = x
            if stride != 1 or in_planes != planes:
                shortcut = layers.Conv2D(planes, 1, strides=stride, padding="valid", use_bias=False,
                                         name=p + "shortcut.0")(x)
                shortcut = bn(p + "shortcut.1")(shortcut)
            x = layers.ReLU(name=p + "relu2")(layers.Add(name=p + "add")([out, shortcut]))
            in_planes = planes
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    # float32 logits even under a mixed-precision policy (stable softmax/loss).
    outputs = layers.Dense(num_classes, dtype="float32", name="linear")(x)
    return keras.Model(inputs, outputs, name=name)
