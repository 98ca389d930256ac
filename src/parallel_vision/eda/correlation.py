"""Section 5: correlation between pixels (pooled heatmap, most-correlated full-resolution pairs).

Colour images: run on their luminance (ITU-R BT.601), one value per pixel position.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from parallel_vision.eda.base import AnalysisResult, Table, intensity, is_colour, luminance_input, new_figure


def avg_pool(images: np.ndarray, factor: int = 2) -> np.ndarray:
    """(N, H, W) -> (N, H//f, W//f) by averaging f×f blocks (a remainder row/column at the edge is dropped)."""
    n, h, w = images.shape
    ph, pw = h // factor, w // factor
    return images[:, : ph * factor, : pw * factor].reshape(n, ph, factor, pw, factor).mean(axis=(2, 4))


def _corr(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of the columns of x; zero-variance columns are dropped (mask False)."""
    x = x.astype(np.float64)
    varying = x.std(axis=0) > 0
    return np.corrcoef(x[:, varying], rowvar=False), varying


def pixel_correlation(
    images: np.ndarray,
    rng: np.random.Generator,
    sample: int = 10_000,
    pool: int = 2,
    top: int = 10,
    min_active: float = 0.01,
) -> AnalysisResult:
    """Pixel-pixel Pearson correlation on a random subsample of images.

    The heatmap is over `pool`×`pool`-averaged pixels (196 for 28×28, 256 for 32×32) so it stays
    readable; the most-correlated pairs are found at full resolution among pixels that vary in the
    sample and are nonzero in at least `min_active` of its images (a pixel inked in one or two images
    correlates perfectly with its neighbour by accident). Colour images: on their luminance.
    """
    colour = is_colour(images)
    n = min(sample, len(images))
    idx = np.sort(rng.choice(len(images), size=n, replace=False))
    sub = intensity(images[idx])
    h, w = sub.shape[1:]

    pooled = avg_pool(sub.astype(np.float64), pool)
    ph, pw = pooled.shape[1:]
    pc, pvary = _corr(pooled.reshape(n, -1))
    heat = np.full((ph * pw, ph * pw), np.nan)
    heat[np.ix_(pvary, pvary)] = pc

    flat = sub.reshape(n, -1)
    active = (flat > 0).mean(axis=0) >= min_active
    full, vary = _corr(flat[:, active])
    pix = np.flatnonzero(active)[vary]
    iu = np.triu_indices(len(pix), 1)
    vals = full[iu]
    best = np.argsort(-vals)[:top]
    pairs = []
    for b in best:
        a, c = pix[iu[0][b]], pix[iu[1][b]]
        (ra, ca), (rc, cc) = divmod(int(a), w), divmod(int(c), w)
        pairs.append(
            {
                "a": [ra, ca],
                "b": [rc, cc],
                "r": round(float(vals[b]), 4),
                "adjacent": max(abs(ra - rc), abs(ca - cc)) == 1,
            }
        )
    neg = int(np.argmin(vals))
    a, c = pix[iu[0][neg]], pix[iu[1][neg]]
    most_negative = {
        "a": list(divmod(int(a), w)),
        "b": list(divmod(int(c), w)),
        "r": round(float(vals[neg]), 4),
    }

    fig = new_figure(7.2, 6.2)
    ax = fig.add_subplot()
    cmap = colormaps["coolwarm"].with_extremes(bad="white")
    im = ax.imshow(heat, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ticks = np.arange(0, ph * pw, pw)
    ax.set_xticks(ticks, [str(t // pw) for t in ticks], fontsize=7)
    ax.set_yticks(ticks, [str(t // pw) for t in ticks], fontsize=7)
    ax.set_xlabel(f"pooled pixel (ticks mark the start of each pooled row 0..{ph - 1}; row-major)")
    ax.set_ylabel("pooled pixel (pooled row)")
    ax.set_title(
        f"Pearson correlation of {pool}×{pool}-pooled pixels ({ph}×{pw}={ph * pw}), n={n:,} images",
        fontsize=10,
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Pearson r (white: constant pixel)")
    fig.tight_layout()

    numbers = {
        "sample_size": n,
        "image_shape": [h, w],
        "pool": pool,
        "pooled_shape": [ph, pw],
        "pooled_constant": int((~pvary).sum()),
        "full_constant": int((flat.std(axis=0) == 0).sum()),
        "min_active_fraction": min_active,
        "full_used": int(len(pix)),
        "n_pairs": int(len(vals)),
        "mean_abs_r": round(float(np.abs(vals).mean()), 4),
        "fraction_r_above_0_5": round(float((vals > 0.5).mean()), 6),
        "top_pairs": pairs,
        "most_negative_pair": most_negative,
        "pooled_correlation": np.round(heat, 4).tolist(),
    }
    n_adj = sum(p["adjacent"] for p in pairs)
    caption = (
        f"Correlations over a random sample of {n:,} training images"
        f"{' (their luminance)' if colour else ''}. {numbers['full_constant']} of {h * w} "
        "pixels are constant in the sample (white in the "
        f"heatmap). Pairs are ranked among the {len(pix)} pixels "
        f"that are nonzero in at least {min_active * 100:g}% of the sampled images; across their "
        f"{len(vals):,} pairs the mean |r| is {numbers['mean_abs_r']:.3f} and "
        f"{numbers['fraction_r_above_0_5'] * 100:.2f}% have r > 0.5. The strongest pair is "
        f"({pairs[0]['a'][0]},{pairs[0]['a'][1]})–({pairs[0]['b'][0]},{pairs[0]['b'][1]}) with "
        f"r = {pairs[0]['r']:.3f}; {n_adj} of the top {len(pairs)} pairs are 8-neighbours. The most negative "
        f"pair has r = {most_negative['r']:.3f}."
    )
    table = Table(
        ["#", "pixel A (row,col)", "pixel B (row,col)", "r", "neighbours"],
        [
            [
                i + 1,
                f"({p['a'][0]},{p['a'][1]})",
                f"({p['b'][0]},{p['b'][1]})",
                f"{p['r']:.4f}",
                "yes" if p["adjacent"] else "no",
            ]
            for i, p in enumerate(pairs)
        ],
        title=f"Top {len(pairs)} most-correlated pixel pairs (full resolution)",
    )
    source, note = luminance_input(colour)
    return AnalysisResult(
        key="correlation", title="Pixel correlation",
        numbers=numbers, caption=caption, figures={"correlation": fig}, tables=[table], input=source, note=note
    )
