"""Section 6: are pixel-value distributions normal? D'Agostino–Pearson, Shapiro–Wilk, Kolmogorov–Smirnov.

Colour images: the per-image mean is that of the luminance (ITU-R BT.601); the nonzero-pixel test is
refused (zero is the blank background only in the grey datasets), with a note saying so.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from parallel_vision.eda.base import LUMA_WEIGHTS, AnalysisResult, Table, fmt_p, is_colour, luminance_input, new_figure

ALPHA = 0.05
SHAPIRO_MAX = 5000
NONZERO_REFUSED = (
    "The nonzero-pixel test is not run on colour images: zero marks the blank background only in the grey "
    "datasets, so in colour photographs 'nonzero' selects no meaningful set of pixels."
)


def interpret(p: float, alpha: float = ALPHA) -> str:
    """One line from a p-value: the only thing the test itself says."""
    shown = f"p {fmt_p(p)}" if fmt_p(p).startswith("<") else f"p = {fmt_p(p)}"
    if p < alpha:
        return f"{shown}: reject normality at α = {alpha}"
    return f"{shown} ≥ {alpha}: no evidence against normality at α = {alpha}"


def normality_summary(values: np.ndarray, rng: np.random.Generator) -> dict:
    """Three tests on one 1-D sample; Shapiro–Wilk on a random subsample of at most 5,000."""
    values = np.asarray(values, dtype=np.float64)
    k2, p_k2 = stats.normaltest(values)
    sw_n = min(SHAPIRO_MAX, len(values))
    sw_sample = values if sw_n == len(values) else rng.choice(values, size=sw_n, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about ties / large n; the statistic is still defined
        w, p_w = stats.shapiro(sw_sample)
    mu, sigma = float(values.mean()), float(values.std(ddof=1))
    d, p_d = stats.kstest(values, "norm", args=(mu, sigma))
    return {
        "n": int(len(values)),
        "mean": round(mu, 4),
        "std": round(sigma, 4),
        "skewness": round(float(stats.skew(values)), 4),
        "excess_kurtosis": round(float(stats.kurtosis(values)), 4),
        "dagostino_pearson": {
            "statistic": round(float(k2), 4),
            "p": float(p_k2),
            "n": int(len(values)),
            "verdict": interpret(float(p_k2)),
        },
        "shapiro_wilk": {
            "statistic": round(float(w), 6),
            "p": float(p_w),
            "n": int(sw_n),
            "verdict": interpret(float(p_w)),
        },
        "kolmogorov_smirnov": {
            "statistic": round(float(d), 6),
            "p": float(p_d),
            "n": int(len(values)),
            "fitted_mean": round(mu, 4),
            "fitted_std": round(sigma, 4),
            "verdict": interpret(float(p_d)),
        },
    }


def normality_tests(
    images: np.ndarray,
    rng: np.random.Generator,
    pixel_sample_images: int = 2000,
) -> AnalysisResult:
    """Test (a) each image's mean intensity (all images), (b) nonzero pixel values of sampled images.

    Colour images: (a) on luminance; (b) is refused (`NONZERO_REFUSED`).
    """
    colour = is_colour(images)
    if colour:
        # Y is linear, so the mean luminance of an image is Y of its channel means (no (N, H, W) float copy).
        channel_means = images.reshape(len(images), -1, images.shape[-1]).mean(axis=1, dtype=np.float64)
        per_image = channel_means @ np.asarray(LUMA_WEIGHTS)
        what = "luminance"
    else:
        per_image = images.reshape(len(images), -1).mean(axis=1, dtype=np.float64)
        what = "intensity"
    variables = {"per_image_mean": (per_image, f"mean {what} per image (all {len(images):,} images)")}
    m = 0
    if not colour:
        flat = images.reshape(len(images), -1)
        m = min(pixel_sample_images, len(images))
        idx = rng.choice(len(images), size=m, replace=False)
        nz = flat[idx]
        nz = nz[nz > 0].astype(np.float64)
        variables["nonzero_pixels"] = (nz, f"nonzero pixel values ({m:,} random images, {len(nz):,} pixels)")
    results: dict = {key: normality_summary(v, rng) for key, (v, _) in variables.items()}
    for key, (_, label) in variables.items():
        results[key]["description"] = label
    if colour:
        results["nonzero_pixels"] = {"refused": NONZERO_REFUSED}

    rows_n = len(variables)
    fig = new_figure(10, 3.2 * rows_n)
    for row, (key, (values, label)) in enumerate(variables.items()):
        r = results[key]
        ax = fig.add_subplot(rows_n, 2, 2 * row + 1)
        bins = 60 if key == "per_image_mean" else np.arange(0.5, 256.5, 5)
        ax.hist(values, bins=bins, density=True, color="tab:blue", alpha=0.7, label="data")
        xs = np.linspace(values.min(), values.max(), 300)
        ax.plot(xs, stats.norm.pdf(xs, r["mean"], r["std"]), color="tab:red", lw=1.5, label="fitted normal")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(f"mean {what} per image (0..255)" if key == "per_image_mean" else "pixel value (1..255)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
        ax = fig.add_subplot(rows_n, 2, 2 * row + 2)
        q = np.sort(rng.choice(values, size=min(5000, len(values)), replace=False))
        theo = stats.norm.ppf((np.arange(1, len(q) + 1) - 0.5) / len(q))
        ax.plot(theo, q, ".", ms=2, color="tab:blue")
        ax.plot(theo, r["mean"] + r["std"] * theo, color="tab:red", lw=1)
        ax.set_title(
            f"Q–Q vs normal (skew {r['skewness']:.2f}, excess kurtosis {r['excess_kurtosis']:.2f})",
            fontsize=9,
        )
        ax.set_xlabel("normal quantile")
        ax.set_ylabel("sample quantile")
    fig.tight_layout()

    numbers = {
        "alpha": ALPHA,
        "shapiro_max_n": SHAPIRO_MAX,
        "pixel_sample_images": m if not colour else None,
        **results,
    }
    pieces = []
    for key in variables:
        r = results[key]
        rejected = sum(r[t]["p"] < ALPHA for t in ("dagostino_pearson", "shapiro_wilk", "kolmogorov_smirnov"))
        pieces.append(
            f"For the {r['description']}, {rejected} of 3 tests reject normality at α = {ALPHA} "
            f"(skewness {r['skewness']:.2f}, excess kurtosis {r['excess_kurtosis']:.2f})."
        )
    if colour:
        pieces.append(NONZERO_REFUSED)
    caption = (
        " ".join(pieces)
        + f" Shapiro–Wilk runs on a random subsample of at most {SHAPIRO_MAX:,}. KS compares with a normal"
        " whose mean and std are fitted to the same data, which makes its p-value conservative (Lilliefors)."
        " With samples this large, even small departures from normality give tiny p-values."
    )
    rows = []
    names = {
        "dagostino_pearson": "D'Agostino–Pearson",
        "shapiro_wilk": "Shapiro–Wilk",
        "kolmogorov_smirnov": "Kolmogorov–Smirnov",
    }
    for key in variables:
        for t, tname in names.items():
            r = results[key][t]
            rows.append([key.replace("_", " "), tname, f"{r['n']:,}", f"{r['statistic']:.4g}", r["verdict"]])
    table = Table(["variable", "test", "n", "statistic", "interpretation"], rows)
    source, note = luminance_input(colour, NONZERO_REFUSED)
    return AnalysisResult(
        key="normality", title="Normality tests",
        numbers=numbers, caption=caption, figures={"normality": fig}, tables=[table], input=source, note=note
    )
