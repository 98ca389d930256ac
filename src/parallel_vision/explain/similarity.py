"""How alike two attribution maps of the same image are, four ways, per image (docs/explain.md).

- Spearman rank correlation of the maps as they are (signed methods keep their sign) and of their absolute
  values (what is salient, whatever its sign): the measure of Adebayo et al. 2018 and Watson et al. 2022;
- SSIM of the absolute maps scaled to [0, 1] by their largest value (scikit-image), as Adebayo et al.;
- HOG similarity: the Pearson correlation of the two scaled maps' histograms of oriented gradients (scikit-image),
  Adebayo et al.'s fourth measure, which asks whether the maps have the same edges;
- top-k agreement: the share of the k most salient pixels (by absolute value) the two maps have in common, Krishna
  et al. 2022's feature agreement, with k a tenth of the pixels.

A map with no variation (Grad-CAM can be all zero where ReLU cuts everything) has no rank correlation: NaN, which
the summaries leave out and count. Framework-free: numpy, SciPy and scikit-image only.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from skimage.feature import hog
from skimage.metrics import structural_similarity

METRICS = ("spearman", "spearman_abs", "ssim", "hog", "topk")
METRIC_TITLES = {"spearman": "Spearman", "spearman_abs": "Spearman |·|", "ssim": "SSIM", "hog": "HOG",
                 "topk": "top-10 %"}
#: Top-k agreement's k, as a share of the map's pixels.
TOPK_SHARE = 0.1


def scaled(m: np.ndarray) -> np.ndarray:
    """|m| divided by its largest value (all zeros stay zeros): the maps SSIM and HOG compare."""
    a = np.abs(m.astype(np.float64))
    top = a.max()
    return a / top if top > 0 else a


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


def _hog(m: np.ndarray) -> np.ndarray:
    cell = max(2, min(m.shape) // 7)  # 4×4 cells on a 28×28 map, 2×2 blocks: 1,296 features
    return hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2), feature_vector=True)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def topk_agreement(a: np.ndarray, b: np.ndarray, share: float = TOPK_SHARE) -> float:
    """The share of the k pixels with the largest |attribution| that both maps name (k = share × pixels)."""
    k = max(1, int(round(share * a.size)))
    top_a = np.argpartition(-np.abs(a.ravel()), k - 1)[:k]
    top_b = np.argpartition(-np.abs(b.ravel()), k - 1)[:k]
    return len(np.intersect1d(top_a, top_b)) / k


def pair(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Every metric for one image's two maps (H, W)."""
    sa, sb = scaled(a), scaled(b)
    return {
        "spearman": _spearman(a, b),
        "spearman_abs": _spearman(np.abs(a), np.abs(b)),
        "ssim": float(structural_similarity(sa, sb, data_range=1.0)),
        "hog": _pearson(_hog(sa), _hog(sb)),
        "topk": topk_agreement(a, b),
    }


def per_image(maps_a: np.ndarray, maps_b: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric per image for two (N, H, W) stacks of maps of the same N images, in the same order."""
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"maps of different shapes: {maps_a.shape} vs {maps_b.shape}")
    rows = [pair(a, b) for a, b in zip(maps_a, maps_b, strict=True)]
    return {m: np.array([r[m] for r in rows]) for m in METRICS}


def median_ci(values: np.ndarray, seed: int = 0, resamples: int = 2000) -> dict[str, float | int | None]:
    """The median of the values that are numbers, with its 95 % percentile-bootstrap interval (SciPy), and how
    many values there were and were left out (NaN)."""
    finite = values[np.isfinite(values)]
    out: dict[str, float | int | None] = {"median": None, "lo": None, "hi": None, "n": int(finite.size),
                                          "left_out": int(values.size - finite.size)}
    if finite.size == 0:
        return out
    out["median"] = float(np.median(finite))
    if finite.size == 1 or np.ptp(finite) == 0:
        out["lo"] = out["hi"] = out["median"]
        return out
    ci = stats.bootstrap((finite,), np.median, confidence_level=0.95, n_resamples=resamples, method="percentile",
                         rng=np.random.default_rng(seed)).confidence_interval
    out["lo"], out["hi"] = float(ci.low), float(ci.high)
    return out
