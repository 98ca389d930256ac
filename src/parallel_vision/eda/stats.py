"""Sections 3, 4 and 11: descriptive pixel statistics, intensity box plots, class mean images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parallel_vision.eda.base import FULL_SCALE, AnalysisResult, Table, class_ticks, image_grid, new_figure


def _hist_moments(hist: np.ndarray) -> tuple[float, float]:
    """Mean and (population) std of pixel values from a 256-bin count histogram — exact."""
    values = np.arange(len(hist), dtype=np.float64)
    n = hist.sum()
    mean = float((hist * values).sum() / n)
    var = float((hist * (values - mean) ** 2).sum() / n)
    return mean, float(np.sqrt(var))


def pixel_maps(images: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std (0..255), computed in chunks to bound memory."""
    flat = images.reshape(len(images), -1)
    s1 = np.zeros(flat.shape[1])
    s2 = np.zeros(flat.shape[1])
    for start in range(0, len(flat), chunk):
        block = flat[start : start + chunk].astype(np.float64)
        s1 += block.sum(0)
        s2 += (block * block).sum(0)
    mean = s1 / len(flat)
    std = np.sqrt(np.maximum(s2 / len(flat) - mean**2, 0.0))
    shape = images.shape[1:]
    return mean.reshape(shape), std.reshape(shape)


def descriptive_stats(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    class_names: Sequence[str],
) -> AnalysisResult:
    """Pixel mean/std overall and per class, per-pixel mean/std maps and the pixel-value histogram."""
    hist = np.bincount(train_images.ravel(), minlength=256)
    mean, std = _hist_moments(hist)
    test_mean, test_std = _hist_moments(np.bincount(test_images.ravel(), minlength=256))
    per_class = []
    for c in range(len(class_names)):
        m, s = _hist_moments(np.bincount(train_images[train_labels == c].ravel(), minlength=256))
        per_class.append({"mean": round(m, 4), "std": round(s, 4)})
    mean_map, std_map = pixel_maps(train_images)
    constant = std_map == 0
    hot = np.unravel_index(int(mean_map.argmax()), mean_map.shape)
    numbers = {
        "scale": "0..255 (divide by 255 for 0..1)",
        "train": {
            "mean": round(mean, 4),
            "std": round(std, 4),
            "mean_01": round(mean / FULL_SCALE, 6),
            "std_01": round(std / FULL_SCALE, 6),
        },
        "test": {
            "mean": round(test_mean, 4),
            "std": round(test_std, 4),
            "mean_01": round(test_mean / FULL_SCALE, 6),
            "std_01": round(test_std / FULL_SCALE, 6),
        },
        "per_class": per_class,
        "zero_fraction": round(float(hist[0] / hist.sum()), 6),
        "full_fraction": round(float(hist[255] / hist.sum()), 6),
        "histogram": hist.tolist(),
        "constant_pixels": int(constant.sum()),
        "constant_zero_pixels": int((constant & (mean_map == 0)).sum()),
        "brightest_pixel": {"row": int(hot[0]), "col": int(hot[1]), "mean": round(float(mean_map[hot]), 4)},
        "mean_map": mean_map.round(3).tolist(),
        "std_map": std_map.round(3).tolist(),
    }

    maps = new_figure(9, 3.8)
    for i, (data, label) in enumerate(((mean_map, "per-pixel mean"), (std_map, "per-pixel std"))):
        ax = maps.add_subplot(1, 2, i + 1)
        im = ax.imshow(data, cmap="magma", interpolation="nearest")
        ax.set_title(f"{label} (0..255)", fontsize=10)
        ax.set_xlabel("col")
        ax.set_ylabel("row")
        maps.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    maps.tight_layout()

    hfig = new_figure(9, 3.4)
    ax = hfig.add_subplot()
    ax.bar(np.arange(256), hist, width=1.0, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlim(-1, 256)
    ax.set_xlabel("pixel value")
    ax.set_ylabel("count (log scale)")
    ax.set_title(f"Pixel-value histogram, training split ({hist.sum():,} pixels)", fontsize=10)
    hfig.tight_layout()

    bright = int(np.argmax([p["mean"] for p in per_class]))
    dark = int(np.argmin([p["mean"] for p in per_class]))
    caption = (
        f"Training pixels: mean {mean:.3f}, std {std:.3f} on 0..255 ({mean / FULL_SCALE:.4f} / "
        f"{std / FULL_SCALE:.4f} of full scale); test: {test_mean:.3f} / {test_std:.3f}. "
        f"{numbers['zero_fraction'] * 100:.1f}% of training pixels are exactly 0 and "
        f"{numbers['full_fraction'] * 100:.1f}% are 255. Per class the mean ranges from "
        f"{per_class[dark]['mean']:.2f} ('{class_names[dark]}') to {per_class[bright]['mean']:.2f} "
        f"('{class_names[bright]}'). {numbers['constant_pixels']} of {mean_map.size} pixel positions never "
        f"change across the training split; the highest per-pixel mean is {mean_map[hot]:.1f} at "
        f"(row {hot[0]}, col {hot[1]})."
    )
    table = Table(
        ["class", "mean", "std"],
        [[class_names[c], f"{p['mean']:.3f}", f"{p['std']:.3f}"] for c, p in enumerate(per_class)]
        + [
            ["all (train)", f"{mean:.3f}", f"{std:.3f}"],
            ["all (test)", f"{test_mean:.3f}", f"{test_std:.3f}"],
        ],
        title="Pixel value by class (0..255)",
    )
    return AnalysisResult(
        "descriptive",
        "Descriptive statistics",
        numbers,
        caption,
        {"pixel_maps": maps, "pixel_histogram": hfig},
        [table],
    )


def _box_stats(values: np.ndarray) -> dict:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = values[(values >= lo) & (values <= hi)]
    return {
        "n": int(len(values)),
        "mean": round(float(values.mean()), 4),
        "q1": round(float(q1), 4),
        "median": round(float(med), 4),
        "q3": round(float(q3), 4),
        "whisker_low": round(float(inside.min()), 4),
        "whisker_high": round(float(inside.max()), 4),
        "outliers": int(len(values) - len(inside)),
    }


def intensity_boxplots(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> AnalysisResult:
    """Box plots of each image's mean intensity (0..255), one box per class."""
    per_image = images.reshape(len(images), -1).mean(axis=1, dtype=np.float64)
    groups = [per_image[labels == c] for c in range(len(class_names))]
    stats = [_box_stats(g) for g in groups]

    fig = new_figure(9, 4)
    ax = fig.add_subplot()
    ax.boxplot(groups, whis=1.5, flierprops={"markersize": 2, "alpha": 0.4, "markeredgecolor": "0.4"})
    class_ticks(ax, np.arange(1, len(class_names) + 1), class_names)
    ax.set_xlabel("class")
    ax.set_ylabel("mean intensity per image (0..255)")
    ax.set_title("Mean intensity per image, by class (whiskers: 1.5 IQR)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()

    medians = [s["median"] for s in stats]
    hi, lo = int(np.argmax(medians)), int(np.argmin(medians))
    outliers = sum(s["outliers"] for s in stats)
    numbers = {"n_images": int(len(images)), "per_class": stats, "total_outliers": outliers}
    caption = (
        f"Each box summarises the mean intensity of the {len(images):,} training images of one class. Median "
        f"per-image mean is highest for '{class_names[hi]}' ({medians[hi]:.1f}) and lowest for "
        f"'{class_names[lo]}' ({medians[lo]:.1f}); {outliers:,} images ({outliers / len(images) * 100:.1f}%) "
        f"lie beyond 1.5 IQR of their class's box."
    )
    table = Table(
        ["class", "q1", "median", "q3", "outliers"],
        [
            [class_names[c], f"{s['q1']:.2f}", f"{s['median']:.2f}", f"{s['q3']:.2f}", s["outliers"]]
            for c, s in enumerate(stats)
        ],
    )
    return AnalysisResult("boxplots", "Pixel intensity box plots", numbers, caption, {"boxplots": fig}, [table])


def class_means(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> AnalysisResult:
    """The mean image of each class and the Euclidean distances between those means."""
    k = len(class_names)
    means = np.stack([images[labels == c].mean(axis=0, dtype=np.float64) for c in range(k)])
    flat = means.reshape(k, -1) / FULL_SCALE
    dist = np.sqrt(((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1))
    iu = np.triu_indices(k, 1)
    order = np.argsort(dist[iu])
    closest = (int(iu[0][order[0]]), int(iu[1][order[0]]))
    farthest = (int(iu[0][order[-1]]), int(iu[1][order[-1]]))

    fig = image_grid(means[None], col_labels=list(class_names), cell=1.0, cmap="magma", vmin=0, vmax=float(means.max()))

    dfig = new_figure(5.6, 4.8)
    ax = dfig.add_subplot()
    im = ax.imshow(dist, cmap="viridis")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{dist[i, j]:.1f}",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if dist[i, j] < dist.max() * 0.6 else "black",
            )
    class_ticks(ax, range(k), class_names, fontsize=8)
    ax.set_yticks(range(k), list(class_names), fontsize=8)
    ax.set_title("Euclidean distance between class means (pixels on 0..1)", fontsize=9)
    dfig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    dfig.tight_layout()

    numbers = {
        "mean_intensity": [round(float(m.mean()), 4) for m in means],
        "max_of_means": round(float(means.max()), 4),
        "distance_matrix": dist.round(4).tolist(),
        "closest_pair": {"classes": list(closest), "distance": round(float(dist[closest]), 4)},
        "farthest_pair": {"classes": list(farthest), "distance": round(float(dist[farthest]), 4)},
    }
    caption = (
        f"Average of all training images of each class (one colour scale for all, 0 to "
        f"{means.max():.0f} on 0..255). Measured as Euclidean distance between mean images "
        f"(pixels on 0..1), the closest pair of classes is '{class_names[closest[0]]}'/"
        f"'{class_names[closest[1]]}' ({dist[closest]:.2f}) and the farthest is "
        f"'{class_names[farthest[0]]}'/'{class_names[farthest[1]]}' ({dist[farthest]:.2f})."
    )
    return AnalysisResult(
        "class_means",
        "Mean image of each class",
        numbers,
        caption,
        {"class_means": fig, "class_mean_distances": dfig},
    )
