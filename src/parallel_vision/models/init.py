"""`--init aligned`: one set of initial weights and one set of optimiser constants for every engine.

Framework-free (numpy only): the weights are drawn ONCE, from the run's seed, in a
canonical layout, and each framework's model module converts that set into its own
layout (`models.torch_zoo.load_canonical`, `models.keras_zoo.load_canonical`; for the
paper's CNN also `models.torch_cnn` / `models.keras_cnn`), so a PyTorch run and a
TensorFlow run start from bit-identical weights. Every model of the zoo
(`models.catalog.MODEL_NAMES`) has one: `aligned_weights(..., model=name)` draws it from
`models.catalog.layer_specs`, layer by layer in canonical order (weight, then bias if the
layer has one), so the paper CNN's set is bit-identical to what it was before the zoo.

Canonical layout (PyTorch's, written out so that nothing here needs torch):

- convolution weight (out, in, kH, kW), bias (out,) (no bias where BatchNorm follows, as in ResNet-18);
- dense weight (out, in), bias (out,); the first dense layer after Flatten reads its
  inputs in (C, H, W) order (channels first);
- BatchNorm gamma, beta, moving mean, moving variance, each (features,).

Keras stores conv kernels (kH, kW, in, out), dense kernels (in, out), and flattens
NHWC feature maps in (H, W, C) order, so `keras_weights` transposes the kernels and
permutes the rows of the first dense kernel. `torch_arrays` is the identity.

The scheme is PyTorch's default for `nn.Conv2d` / `nn.Linear` (Kaiming-uniform with
a = √5, i.e. weights and biases U(−1/√fan_in, 1/√fan_in)), BatchNorm at gamma 1, beta 0,
mean 0, variance 1 (both frameworks' default). It is chosen because (1) a PyTorch user
meets exactly this distribution, so `aligned` moves only the TensorFlow side onto a
scheme users already know; (2) measured on the quick preset (docs/definitions.md,
"Framework defaults vs aligned initialisation"), Keras' Glorot-uniform kernels / zero
biases are what costs TensorFlow its short-run accuracy, so Glorot would align both
frameworks on the worse start. `scheme="glorot"` (Keras' default) is kept for such
measurements; engines always use the default.

Adam: both frameworks use β1 0.9, β2 0.999; the epsilons differ (torch 1e-8, Keras 1e-7).
`aligned` uses 1e-8 in both. (Keras adds epsilon to √v before bias correction, torch after,
so equal constants still differ by a factor √(1 − β2^t) in epsilon's weight; at these
gradient scales that is immaterial — see the measured table.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from parallel_vision.models.catalog import DEFAULT_MODEL, layer_specs

InitMode = Literal["framework", "aligned"]
INIT_MODES: tuple[str, ...] = ("framework", "aligned")
Scheme = Literal["torch", "glorot"]

#: Each framework's own Adam epsilon (torch.optim.Adam, keras.optimizers.Adam).
FRAMEWORK_ADAM_EPSILON = {"torch": 1e-8, "tensorflow": 1e-7, "jax": 1e-7}  # jax: Keras on JAX
#: The epsilon every engine uses under `--init aligned`.
ALIGNED_ADAM_EPSILON = 1e-8


def adam_epsilon(framework: str, init: str) -> float:
    """Adam's epsilon for this engine and init mode."""
    return ALIGNED_ADAM_EPSILON if init == "aligned" else FRAMEWORK_ADAM_EPSILON[framework]


@dataclass(frozen=True)
class Layer:
    """One layer with parameters, in the model's order, with its canonical arrays."""

    name: str
    kind: Literal["conv", "bn", "dense"]
    arrays: dict[str, np.ndarray]
    flatten_from: tuple[int, int, int] | None = None
    """For the first dense layer after Flatten: the (C, H, W) shape it flattens."""


def paper_cnn_shapes(
    in_channels: int = 1, image_size: int = 28, num_classes: int = 10
) -> list[tuple[str, str, tuple[int, ...], tuple[int, int, int] | None]]:
    """(name, kind, shape, flatten_from) of every parameterised layer of Fig. 2, in order.

    conv/dense shape is (out, in[, kH, kW]); bn shape is (features,). (`catalog.layer_specs("paper_cnn")`
    has the full description.)
    """
    return [(s.name, s.kind, s.shape, s.flatten_from) for s in layer_specs("paper_cnn", in_channels, image_size,
                                                                             num_classes)]


def aligned_weights(
    seed: int,
    in_channels: int = 1,
    image_size: int = 28,
    num_classes: int = 10,
    model: str = DEFAULT_MODEL,
    *,
    scheme: Scheme = "torch",
) -> list[Layer]:
    """The canonical initial weights of zoo model `model` for `seed` (float32), identical on every machine
    and framework. `aligned_weights(seed, c, size, classes)` is the paper CNN's set, as before the zoo."""
    if scheme not in ("torch", "glorot"):
        raise ValueError(f"unknown init scheme {scheme!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED_1417]))
    layers = []
    for spec in layer_specs(model, in_channels, image_size, num_classes):
        shape = spec.shape
        if spec.kind == "bn":
            n = shape[0]
            arrays = {"gamma": np.ones(n, np.float32), "beta": np.zeros(n, np.float32),
                      "mean": np.zeros(n, np.float32), "var": np.ones(n, np.float32)}
        else:
            out, fan_in = shape[0], int(np.prod(shape[1:]))
            receptive = int(np.prod(shape[2:])) if spec.kind == "conv" else 1
            bias = None
            if scheme == "torch":
                # kaiming_uniform_(a=√5): gain √(2/(1+5)), bound gain·√(3/fan_in) = 1/√fan_in; bias alike.
                bound = 1.0 / np.sqrt(fan_in)
                weight = rng.uniform(-bound, bound, size=shape)
                if spec.bias:
                    bias = rng.uniform(-bound, bound, size=out)
            else:  # glorot
                fan_out = out * receptive
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                weight = rng.uniform(-limit, limit, size=shape)
                if spec.bias:
                    bias = np.zeros(out)
            arrays = {"weight": weight.astype(np.float32)}
            if bias is not None:
                arrays["bias"] = bias.astype(np.float32)
        layers.append(Layer(spec.name, spec.kind, arrays, spec.flatten_from))
    return layers


def count(layers: list[Layer]) -> int:
    """Every number in the set (Keras' count_params: BatchNorm moving statistics included)."""
    return sum(a.size for layer in layers for a in layer.arrays.values())


def torch_arrays(layers: list[Layer]) -> list[list[np.ndarray]]:
    """Per layer, in module order: [weight, bias] ([weight] without bias) or BatchNorm
    [weight, bias, running_mean, running_var]."""
    out = []
    for layer in layers:
        a = layer.arrays
        if layer.kind == "bn":
            out.append([a["gamma"], a["beta"], a["mean"], a["var"]])
        else:
            out.append([a["weight"], a["bias"]] if "bias" in a else [a["weight"]])
    return out


def keras_dense_kernel(weight: np.ndarray, flatten_from: tuple[int, int, int] | None) -> np.ndarray:
    """Canonical (out, in) → Keras (in, out); after Flatten, inputs reordered from (C, H, W) to (H, W, C)."""
    if flatten_from is None:
        return np.ascontiguousarray(weight.T)
    c, h, w = flatten_from
    out = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out))


def keras_layer_weights(layer: Layer) -> list[np.ndarray]:
    """One layer's arrays as its Keras layer's `set_weights` takes them: conv [HWIO kernel(, bias)], dense
    [(in, out) kernel(, bias)] (after Flatten: rows in NHWC flatten order), BatchNorm [gamma, beta, mean, var]."""
    a = layer.arrays
    if layer.kind == "bn":
        return [a["gamma"], a["beta"], a["mean"], a["var"]]
    if layer.kind == "conv":
        kernel = np.ascontiguousarray(a["weight"].transpose(2, 3, 1, 0))  # OIHW → HWIO
    else:
        kernel = keras_dense_kernel(a["weight"], layer.flatten_from)
    return [kernel, a["bias"]] if "bias" in a else [kernel]


def keras_weights(layers: list[Layer]) -> list[np.ndarray]:
    """The flat list `keras.Model.set_weights` takes for `build_keras_cnn` (its `get_weights` order)."""
    return [value for layer in layers for value in keras_layer_weights(layer)]
