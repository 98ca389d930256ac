"""`--init aligned`: one set of initial weights and one set of optimiser constants for every engine.

Framework-free (numpy only): the weights are drawn ONCE, from the run's seed, in a
canonical layout, and each framework's model module converts that set into its own
layout (`models.torch_cnn.load_canonical`, `models.keras_cnn.load_canonical`), so a
PyTorch run and a TensorFlow run start from bit-identical weights.

Canonical layout (PyTorch's, written out so that nothing here needs torch):

- convolution weight (out, in, kH, kW), bias (out,);
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

    conv/dense shape is (out, in[, kH, kW]); bn shape is (features,).
    """
    side = image_size // 4
    return [
        ("conv1", "conv", (32, in_channels, 3, 3), None), ("bn1", "bn", (32,), None),
        ("conv2", "conv", (64, 32, 3, 3), None), ("bn2", "bn", (64,), None),
        ("conv3", "conv", (128, 64, 3, 3), None), ("bn3", "bn", (128,), None),
        ("dense1", "dense", (128, 128 * side * side), (128, side, side)), ("bn4", "bn", (128,), None),
        ("dense2", "dense", (64, 128), None), ("bn5", "bn", (64,), None),
        ("dense3", "dense", (num_classes, 64), None),
    ]


def aligned_weights(
    seed: int, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, scheme: Scheme = "torch"
) -> list[Layer]:
    """The canonical initial weights for `seed` (float32), identical on every machine and framework."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED_1417]))
    layers = []
    for name, kind, shape, flatten_from in paper_cnn_shapes(in_channels, image_size, num_classes):
        if kind == "bn":
            n = shape[0]
            arrays = {"gamma": np.ones(n, np.float32), "beta": np.zeros(n, np.float32),
                      "mean": np.zeros(n, np.float32), "var": np.ones(n, np.float32)}
        else:
            out, fan_in = shape[0], int(np.prod(shape[1:]))
            receptive = int(np.prod(shape[2:])) if kind == "conv" else 1
            if scheme == "torch":
                # kaiming_uniform_(a=√5): gain √(2/(1+5)), bound gain·√(3/fan_in) = 1/√fan_in; bias alike.
                bound = 1.0 / np.sqrt(fan_in)
                weight = rng.uniform(-bound, bound, size=shape)
                bias = rng.uniform(-bound, bound, size=out)
            elif scheme == "glorot":
                fan_out = out * receptive
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                weight = rng.uniform(-limit, limit, size=shape)
                bias = np.zeros(out)
            else:
                raise ValueError(f"unknown init scheme {scheme!r}")
            arrays = {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}
        layers.append(Layer(name, kind, arrays, flatten_from))  # type: ignore[arg-type]
    return layers


def count(layers: list[Layer]) -> int:
    """Every number in the set (Keras' count_params: BatchNorm moving statistics included)."""
    return sum(a.size for layer in layers for a in layer.arrays.values())


def torch_arrays(layers: list[Layer]) -> list[list[np.ndarray]]:
    """Per layer, in module order: [weight, bias] or BatchNorm [weight, bias, running_mean, running_var]."""
    out = []
    for layer in layers:
        a = layer.arrays
        out.append([a["gamma"], a["beta"], a["mean"], a["var"]] if layer.kind == "bn" else [a["weight"], a["bias"]])
    return out


def keras_dense_kernel(weight: np.ndarray, flatten_from: tuple[int, int, int] | None) -> np.ndarray:
    """Canonical (out, in) → Keras (in, out); after Flatten, inputs reordered from (C, H, W) to (H, W, C)."""
    if flatten_from is None:
        return np.ascontiguousarray(weight.T)
    c, h, w = flatten_from
    out = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out))


def keras_weights(layers: list[Layer]) -> list[np.ndarray]:
    """The flat list `keras.Model.set_weights` takes for `build_keras_cnn` (its `get_weights` order)."""
    out: list[np.ndarray] = []
    for layer in layers:
        a = layer.arrays
        if layer.kind == "conv":
            out += [np.ascontiguousarray(a["weight"].transpose(2, 3, 1, 0)), a["bias"]]  # OIHW → HWIO
        elif layer.kind == "dense":
            out += [keras_dense_kernel(a["weight"], layer.flatten_from), a["bias"]]
        else:
            out += [a["gamma"], a["beta"], a["mean"], a["var"]]
    return out
