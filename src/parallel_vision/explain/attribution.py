"""The attribution methods in numpy over a framework's gradient functions: how `pvision explain` explains Keras
runs on either backend (TensorFlow and JAX) with one implementation (docs/explain.md).

After PAIR's `saliency` library (github.com/PAIR-code/saliency, `core/base.py`): a method never sees the
framework, only callables that take NHWC numpy batches (`Model`): the logits, the gradient of the explained
class's logit with respect to the input, and for Grad-CAM a layer's activations with that logit's gradient.
Each engine supplies them (`tf.GradientTape`; `jax.grad` over `stateless_call`). Every setting and rule is
Captum's default as the torch child uses it (engines/torch/explain.py), so torch and Keras maps of the same
weights can be compared (tests/test_explain_keras.py, the implementation floor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: IntegratedGradients: Gauss-Legendre steps from the black baseline (Captum's default rule). SmoothGrad: noisy
#: samples, noise 15 % of the input range (Smilkov et al. 2017). Occlusion: a 4×4 patch in strides of 2, replaced
#: by black. The torch child reads the same numbers from here.
IG_STEPS = 32
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15
OCCLUSION_PATCH, OCCLUSION_STRIDE = 4, 2
#: Images per gradient or forward call inside IG (its steps), SmoothGrad (its samples) and occlusion (its patches).
BATCH = 800

#: (NHWC x, classes y) -> d logit_y / d x, NHWC.
Gradients = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: (NHWC x, classes y) -> (the layer's NHWC activations, d logit_y / d activations).
LayerGradients = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Model:
    """What a method may ask of a model: the framework stays behind these callables."""

    logits: Callable[[np.ndarray], np.ndarray]
    gradients: Gradients
    layer: LayerGradients | None  # Grad-CAM's layer; None where the model has no conv layer


@dataclass(frozen=True)
class Settings:
    """What every method needs besides the model and the images."""

    black: np.ndarray  # (C,): a black pixel, normalised (the baseline of IG and occlusion)
    input_range: float  # white minus black, normalised (the smallest over channels): SmoothGrad's noise scale
    seed: int


def attribute(method: str, model: Model, settings: Settings, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, H, W) float32 attributions of classes `y` for NHWC `x`, channels summed (as the torch child does)."""
    if method == "saliency":
        a = saliency(model, x, y)
    elif method == "gradcam":
        a = gradcam(model, x, y)
    elif method == "ig":
        a = integrated_gradients(model, x, y, settings.black)
    elif method == "smoothgrad":
        a = smoothgrad(model, x, y, sigma=SMOOTHGRAD_NOISE * settings.input_range, seed=settings.seed)
    elif method == "occlusion":
        a = occlusion(model, x, y, settings.black)
    else:
        raise ValueError(f"unknown method {method!r}")
    return a.sum(axis=-1).astype(np.float32)


def saliency(model: Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|∂logit/∂x| (Simonyan et al. 2014; Captum's `Saliency(abs=True)`)."""
    return np.abs(model.gradients(x, y))


def gradcam(model: Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ReLU(Σ_k mean_ij(∂logit/∂A_k) · A_k), bilinearly upsampled to the image (Captum's `LayerGradCam` with
    `relu_attributions=True` and `LayerAttribution.interpolate(..., "bilinear")`); (N, H, W, 1)."""
    if model.layer is None:
        raise ValueError("gradcam needs a convolutional layer")
    acts, grads = model.layer(x, y)
    cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts).sum(axis=-1), 0)
    return upsample_bilinear(cam, x.shape[1:3])[..., None]


def integrated_gradients(model: Model, x: np.ndarray, y: np.ndarray, black: np.ndarray,
                         steps: int = IG_STEPS) -> np.ndarray:
    """(x − b) · Σ_k w_k ∂logit/∂x at b + α_k (x − b), α and w Gauss-Legendre on [0, 1] (Captum's default
    `method="gausslegendre"`), b the black image (Sundararajan et al. 2017)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, widths = (nodes + 1) / 2, weights / 2
    baseline = np.broadcast_to(black.astype(x.dtype), x.shape)
    per_call = max(1, BATCH // max(1, len(x)))
    total = np.zeros_like(x, dtype=np.float64)
    for k in range(0, steps, per_call):
        a = alphas[k:k + per_call].astype(x.dtype)[:, None, None, None, None]
        scaled = (baseline[None] + a * (x - baseline)[None]).reshape(-1, *x.shape[1:])
        grads = model.gradients(scaled, np.tile(y, len(a))).reshape(len(a), *x.shape)
        total += np.tensordot(widths[k:k + per_call], grads, axes=1)
    return (total * (x - baseline)).astype(np.float32)


def smoothgrad(model: Model, x: np.ndarray, y: np.ndarray, *, sigma: float, seed: int,
               samples: int = SMOOTHGRAD_SAMPLES) -> np.ndarray:
    """The mean of |∂logit/∂x| over `samples` copies of x with N(0, σ²) noise, drawn by
    `numpy.random.default_rng(seed)` (Smilkov et al. 2017; Captum's `NoiseTunnel(Saliency)`, `smoothgrad`)."""
    rng = np.random.default_rng(seed)
    per_call = max(1, BATCH // max(1, len(x)))
    total = np.zeros_like(x, dtype=np.float64)
    for k in range(0, samples, per_call):
        n = min(per_call, samples - k)
        noisy = (x[None] + rng.normal(0, sigma, (n, *x.shape)).astype(x.dtype)).reshape(-1, *x.shape[1:])
        total += np.abs(model.gradients(noisy, np.tile(y, n))).reshape(n, *x.shape).sum(axis=0)
    return (total / samples).astype(np.float32)


def occlusion(model: Model, x: np.ndarray, y: np.ndarray, black: np.ndarray, *, patch: int = OCCLUSION_PATCH,
              stride: int = OCCLUSION_STRIDE) -> np.ndarray:
    """Per pixel, the mean drop of the class logit over the patches that cover it, each patch (all channels)
    replaced by black (Zeiler & Fergus 2014; Captum's `Occlusion`: positions 0, stride, … while the patch fits)."""
    n, h, w, _ = x.shape
    corners = [(i, j) for i in range(0, h - patch + 1, stride) for j in range(0, w - patch + 1, stride)]
    rows = np.arange(n)
    base = model.logits(x)[rows, y].astype(np.float64)
    total, covered = np.zeros((n, h, w)), np.zeros((h, w))
    per_call = max(1, BATCH // max(1, n))
    for k in range(0, len(corners), per_call):
        part = corners[k:k + per_call]
        occluded = np.repeat(x[None], len(part), axis=0)
        for c, (i, j) in enumerate(part):
            occluded[c, :, i:i + patch, j:j + patch, :] = black
        scores = model.logits(occluded.reshape(-1, h, w, x.shape[3]))  # patch-major: row c·n + image
        drop = base[None] - scores[np.arange(len(scores)), np.tile(y, len(part))].reshape(len(part), n)
        for c, (i, j) in enumerate(part):
            total[:, i:i + patch, j:j + patch] += drop[c][:, None, None]
            covered[i:i + patch, j:j + patch] += 1
    attribution = np.divide(total, covered, out=np.zeros_like(total), where=covered > 0)
    return np.repeat(attribution[..., None], x.shape[3], axis=-1).astype(np.float32)


def upsample_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) → (N, H, W) bilinear with half-pixel centres and edges clamped: torch's
    `F.interpolate(mode="bilinear", align_corners=False)`, which Captum's interpolate calls."""
    out = maps.astype(np.float64)
    for axis, target in ((1, size[0]), (2, size[1])):
        source = out.shape[axis]
        position = np.maximum((np.arange(target) + 0.5) * source / target - 0.5, 0)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, source - 1)
        weight = position - low
        shape = [1, 1, 1]
        shape[axis] = target
        out = (np.take(out, low, axis=axis) * (1 - weight).reshape(shape)
               + np.take(out, high, axis=axis) * weight.reshape(shape))
    return out.astype(np.float32)
