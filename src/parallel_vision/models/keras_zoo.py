"""The model zoo in Keras 3: build any `catalog.MODEL_NAMES` model and load its canonical weights.

`build_keras_model` returns `build_keras_cnn` (models.keras_cnn, unchanged), `build_keras_resnet18`
(models.keras_resnet) or `build_keras_wide_mlp` (models.keras_mlp). `load_canonical` sets a
`models.init.aligned_weights(..., model=name)` set into any of them: by layer name for the zoo models
(a Keras layer is named exactly as its canonical layer / PyTorch module: the rule is the identity),
by order for the paper CNN's Sequential (as `keras_cnn.load_canonical` always has). Mapping by name
matters: a functional model's weight order is its topological order, not the order of creation.

Keras is imported inside the functions: importing this module is free.
"""

from __future__ import annotations

from typing import Any

from parallel_vision.models import keras_cnn
from parallel_vision.models.catalog import MODEL_NAMES, layer_specs
from parallel_vision.models.init import keras_layer_weights

__all__ = ["MODEL_NAMES", "build_keras_model", "keras_layer_name", "load_canonical"]


def keras_layer_name(canonical_name: str) -> str:
    """The Keras layer that holds canonical layer `canonical_name`: the same name (Keras 3 accepts '.')."""
    return canonical_name


def build_keras_model(
    name: str,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    dropout: float = 0.25,
    *,
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-5,
) -> Any:
    """Zoo model `name` for NHWC input `input_shape` = (H, W, C) (square images), returning float32 logits.

    `dropout` is used by paper_cnn and wide_mlp; ResNet-18 has no dropout and ignores it.
    """
    height, width, channels = input_shape
    if height != width:
        raise ValueError(f"the zoo models take square images, got {height}×{width}")
    layer_specs(name, channels, height, num_classes)  # validates name and sizes
    kwargs = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
    if name == "paper_cnn":
        return keras_cnn.build_keras_cnn(input_shape, num_classes, dropout, **kwargs)  # type: ignore[arg-type]
    if name == "resnet18":
        from parallel_vision.models.keras_resnet import build_keras_resnet18

        return build_keras_resnet18(input_shape, num_classes, **kwargs)  # type: ignore[arg-type]
    if name == "wide_mlp":
        from parallel_vision.models.keras_mlp import build_keras_wide_mlp

        return build_keras_wide_mlp(input_shape, num_classes, dropout, **kwargs)  # type: ignore[arg-type]
    raise AssertionError(name)  # pragma: no cover - layer_specs rejected it


def load_canonical(model: Any, layers: list[Any]) -> None:
    """Set a canonical weight set (`models.init.aligned_weights`) into a zoo model.

    Zoo models are matched BY NAME: every canonical layer must be a Keras layer of `keras_layer_name(name)`
    and every Keras layer with weights must have a canonical layer. A model with none of the names (the
    paper CNN's Sequential, with Keras' automatic names) is loaded by order with `keras_cnn.load_canonical`.
    All shapes are checked (shapes only: reading values may be a collective) before anything is assigned.
    """
    with_weights = {layer.name: layer for layer in model.layers if layer.weights}
    wanted = {keras_layer_name(layer.name): layer for layer in layers}
    if not set(wanted) & set(with_weights):
        keras_cnn.load_canonical(model, layers)
        return
    missing = [n for n in wanted if n not in with_weights]
    extra = [n for n in with_weights if n not in wanted]
    if missing or extra or len(wanted) != len(layers):
        raise ValueError(f"weight set and model do not match by name: missing in the model {missing[:5]}, "
                         f"not in the weight set {extra[:5]}")
    plan = []
    for keras_name, layer in wanted.items():
        target = with_weights[keras_name]
        values = keras_layer_weights(layer)
        have = [tuple(v.shape) for v in target.weights]
        if have != [v.shape for v in values]:
            raise ValueError(f"{keras_name}: weight shapes {have} in the model, {[v.shape for v in values]} "
                             "in the weight set")
        plan.append((target, values))
    for target, values in plan:
        target.set_weights(values)
