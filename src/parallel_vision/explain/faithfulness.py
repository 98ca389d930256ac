"""How faithful an attribution map is, framework-free (numpy/scipy): deletion and insertion curves (RISE,
Petsiuk et al. 2018) and the randomised-model sanity check (Adebayo et al. 2018).

Deletion moves the pixels, most attributed first, into a zero (black) image in `steps` equal steps; insertion
moves them from a blurred copy of the image into the image. The class probability after each step is the
curve; its area (x from 0 to 1, trapezoids) is the score: low for deletion, high for insertion is faithful.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

#: Curve points are steps + 1 (0 % to 100 % of the pixels moved); 16 steps move 49 pixels each on 28×28: every
#: point costs a forward pass per image, and 16 keep the default run near 2 minutes on 2 cores (docs/explain.md).
STEPS = 16
#: The insertion substrate: a Gaussian blur of this many pixels (per image, channels kept apart).
BLUR_SIGMA = 2.0


def order(attribution: np.ndarray) -> np.ndarray:
    """Flat pixel indices, most attributed first (ties: the lower index first, so the order is deterministic)."""
    return np.argsort(-attribution.ravel(), kind="stable")


def random_order(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random pixel order: the baseline a faithful map must beat."""
    return rng.permutation(shape[0] * shape[1])


def fractions(pixels: int, steps: int = STEPS) -> np.ndarray:
    """Pixels moved after each step, 0 to `pixels`, as fractions (the curves' x axis)."""
    return np.round(np.linspace(0, pixels, steps + 1)) / pixels


def frames(start: np.ndarray, end: np.ndarray, pixel_order: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """(steps + 1, H, W, C): `start` with the first k pixels of `pixel_order` taken from `end`, k from 0 to H·W.

    `start` and `end` are (H, W, C); a pixel is moved in all its channels at once.
    """
    h, w = start.shape[:2]
    rank = np.empty(h * w, np.int64)
    rank[pixel_order] = np.arange(h * w)
    moved = np.round(fractions(h * w, steps) * h * w).astype(np.int64)
    mask = (rank[None, :] < moved[:, None]).reshape(steps + 1, h, w, 1)
    return np.where(mask, end[None], start[None]).astype(start.dtype)


def deletion_frames(image: np.ndarray, black: np.ndarray, pixel_order: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """The image with its pixels moved, in `pixel_order`, into `black` (the zero image, normalised)."""
    return frames(image, np.broadcast_to(black, image.shape), pixel_order, steps)


def insertion_frames(image: np.ndarray, pixel_order: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """A blurred copy of the image with its pixels moved back in, in `pixel_order`."""
    return frames(blurred(image), image, pixel_order, steps)


def blurred(image: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """(H, W, C) Gaussian blur over H and W only."""
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest").astype(image.dtype)


def auc(curves: np.ndarray) -> np.ndarray:
    """The area under each curve of (N, steps + 1) probabilities at equal steps from 0 to 1 (trapezoids): (N,)."""
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    width = 1.0 / (curves.shape[1] - 1)
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * width).sum(axis=1)


def rank_correlations(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each pair of flattened maps (N,); a constant map correlates 0."""
    out = np.zeros(len(maps_a))
    for i, (a, b) in enumerate(zip(maps_a, maps_b, strict=True)):
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            out[i] = spearmanr(a.ravel(), b.ravel()).statistic
    return out
