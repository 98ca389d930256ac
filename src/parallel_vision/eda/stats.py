"""Sections 3, 4 and 11: descriptive pixel statistics, intensity box plots, class mean images.

Colour: statistics per channel (3), box plots of per-image mean luminance (4), RGB mean images (11).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parallel_vision.eda.base import (
    CHANNEL_NAMES,
    FULL_SCALE,
    LUMA_WEIGHTS,
    AnalysisResult,
    Table,
    class_ticks,
    colour_input,
    image_grid,
    is_colour,
    luminance_input,
    new_figure,
    shape_text,
)


def _hist_moments(hist: np.ndarray) -> tuple[float, float]:
    """Mean and (population) std of pixel values from a 256-bin count histogram — exact."""
    values = np.arange(len(hist), dtype=np.float64)
    n = hist.sum()
    mean = float((hist * values).sum() / n)
    var = float((hist * (values - mean) ** 2).sum() / n)
    return mean, float(np.sqrt(var))


def pixel_maps(images: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std (0..255), shaped like one image ((H, W) or (H, W, C)), in chunks to bound memory.

    Default chunk: about 6.4 million values (8,192 images of 28×28; 2,083 of 32×32×3).
    """
    flat = images.reshape(len(images), -1)
    chunk = chunk or max(1, (8192 * 784) // flat.shape[1])
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


def _moments(hist: np.ndarray) -> dict:
    """Mean and std on 0..255 and on 0..1 from a 256-bin histogram."""
    mean, std = _hist_moments(hist)
    return {
        "mean": round(mean, 4),
        "std": round(std, 4),
        "mean_01": round(mean / FULL_SCALE, 6),
        "std_01": round(std / FULL_SCALE, 6),
    }


def _histograms(images: np.ndarray, colour: bool) -> list[np.ndarray]:
    """256-bin histograms: one per channel for colour, one for grey."""
    if not colour:
        return [np.bincount(images.ravel(), minlength=256)]
    return [np.bincount(images[..., c].ravel(), minlength=256) for c in range(images.shape[-1])]


def descriptive_stats(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    class_names: Sequence[str],
) -> AnalysisResult:
    """Pixel mean/std overall and per class, per-pixel mean/std maps and the pixel-value histogram.

    Colour images (N, H, W, 3): every statistic is also given per channel (R, G, B), the maps are
    per channel and the histogram has one curve per channel; the pooled numbers are over all channel values.
    """
    colour = is_colour(train_images)
    train_hists = _histograms(train_images, colour)
    test_hists = _histograms(test_images, colour)
    hist = np.sum(train_hists, axis=0)
    mean, std = _hist_moments(hist)
    test_mean, test_std = _hist_moments(np.sum(test_hists, axis=0))
    per_class = []
    for c in range(len(class_names)):
        class_hists = _histograms(train_images[train_labels == c], colour)
        m, s = _hist_moments(np.sum(class_hists, axis=0))
        entry = {"mean": round(m, 4), "std": round(s, 4)}
        if colour:
            channel = [_hist_moments(h) for h in class_hists]
            entry["channel_mean"] = [round(v[0], 4) for v in channel]
            entry["channel_std"] = [round(v[1], 4) for v in channel]
        per_class.append(entry)
    mean_map, std_map = pixel_maps(train_images)
    constant = std_map == 0
    # The brightest position: for colour, of the mean over the channels.
    position_mean = mean_map.mean(axis=-1) if colour else mean_map
    hot = np.unravel_index(int(position_mean.argmax()), position_mean.shape)
    numbers = {
        "scale": "0..255 (divide by 255 for 0..1)",
        "channels": list(CHANNEL_NAMES) if colour else ["grey"],
        "train": {**_moments(hist)},
        "test": {**_moments(np.sum(test_hists, axis=0))},
        "per_class": per_class,
        "zero_fraction": round(float(hist[0] / hist.sum()), 6),
        "full_fraction": round(float(hist[255] / hist.sum()), 6),
        "histogram": hist.tolist(),
        "constant_pixels": int(constant.sum()),
        "constant_zero_pixels": int((constant & (mean_map == 0)).sum()),
        "brightest_pixel": {"row": int(hot[0]), "col": int(hot[1]), "mean": round(float(position_mean[hot]), 4)},
        "mean_map": mean_map.round(3).tolist(),
        "std_map": std_map.round(3).tolist(),
    }
    if colour:
        for split, hists in (("train", train_hists), ("test", test_hists)):
            numbers[split]["per_channel"] = [
                {"channel": name, **_moments(h)} for name, h in zip(CHANNEL_NAMES, hists, strict=True)
            ]
        numbers["channel_histograms"] = {name: h.tolist() for name, h in zip(CHANNEL_NAMES, train_hists, strict=True)}
        numbers["brightest_pixel"]["channel_means"] = [round(float(v), 4) for v in mean_map[hot]]

    planes = (
        [(mean_map[..., c], f"mean, {name}") for c, name in enumerate(CHANNEL_NAMES)]
        + [(std_map[..., c], f"std, {name}") for c, name in enumerate(CHANNEL_NAMES)]
        if colour
        else [(mean_map, "per-pixel mean"), (std_map, "per-pixel std")]
    )
    ncols = 3 if colour else 2
    nrows = len(planes) // ncols
    maps = new_figure(9 if not colour else 10, 3.8 * nrows if not colour else 3.2 * nrows)
    for i, (data, label) in enumerate(planes):
        ax = maps.add_subplot(nrows, ncols, i + 1)
        im = ax.imshow(data, cmap="magma", interpolation="nearest")
        ax.set_title(f"{label} (0..255)", fontsize=10)
        ax.set_xlabel("col")
        ax.set_ylabel("row")
        maps.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    maps.tight_layout()

    hfig = new_figure(9, 3.4)
    ax = hfig.add_subplot()
    if colour:
        for name, h, color in zip(CHANNEL_NAMES, train_hists, ("tab:red", "tab:green", "tab:blue"), strict=True):
            ax.step(np.arange(256), h, where="mid", color=color, lw=1.0, label=name)
        ax.legend(fontsize=8, frameon=False)
        values = f"{hist.sum():,} values: {hist.sum() // len(CHANNEL_NAMES):,} pixels × 3 channels"
    else:
        ax.bar(np.arange(256), hist, width=1.0, color="tab:blue")
        values = f"{hist.sum():,} pixels"
    ax.set_yscale("log")
    ax.set_xlim(-1, 256)
    ax.set_xlabel("pixel value")
    ax.set_ylabel("count (log scale)")
    ax.set_title(f"Pixel-value histogram, training split ({values})", fontsize=10)
    hfig.tight_layout()

    bright = int(np.argmax([p["mean"] for p in per_class]))
    dark = int(np.argmin([p["mean"] for p in per_class]))
    h, w = mean_map.shape[:2]
    if colour:
        tr, te = numbers["train"]["per_channel"], numbers["test"]["per_channel"]

        def each(rows: list[dict], key: str, fmt: str) -> str:
            return "/".join(format(r[key], fmt) for r in rows)

        overall = (
            f"Training pixels per channel (R/G/B): mean {each(tr, 'mean', '.3f')}, std {each(tr, 'std', '.3f')} "
            f"on 0..255 (mean {each(tr, 'mean_01', '.4f')} and std {each(tr, 'std_01', '.4f')} of full scale); "
            f"test mean {each(te, 'mean', '.3f')}, std {each(te, 'std', '.3f')}. Over all channel values: "
            f"mean {mean:.3f}, std {std:.3f} (test {test_mean:.3f} / {test_std:.3f}). "
        )
        positions = f"{mean_map.size} pixel values ({h}×{w} positions × 3 channels)"
        where = "the highest per-position mean (averaged over the channels)"
    else:
        overall = (
            f"Training pixels: mean {mean:.3f}, std {std:.3f} on 0..255 ({mean / FULL_SCALE:.4f} / "
            f"{std / FULL_SCALE:.4f} of full scale); test: {test_mean:.3f} / {test_std:.3f}. "
        )
        positions = f"{mean_map.size} pixel positions"
        where = "the highest per-pixel mean"
    scope = "channel values" if colour else "training pixels"
    caption = (
        overall + f"{numbers['zero_fraction'] * 100:.1f}% of {scope} are exactly 0 and "
        f"{numbers['full_fraction'] * 100:.1f}% are 255. Per class the mean ranges from "
        f"{per_class[dark]['mean']:.2f} ('{class_names[dark]}') to {per_class[bright]['mean']:.2f} "
        f"('{class_names[bright]}'). {numbers['constant_pixels']} of {positions} never "
        f"change across the training split; {where} is {position_mean[hot]:.1f} at "
        f"(row {hot[0]}, col {hot[1]})."
    )
    tables = []
    if colour:
        tables.append(
            Table(
                ["split", "channel", "mean", "std", "mean (0..1)", "std (0..1)"],
                [
                    [
                        split,
                        c["channel"],
                        f"{c['mean']:.3f}",
                        f"{c['std']:.3f}",
                        f"{c['mean_01']:.4f}",
                        f"{c['std_01']:.4f}",
                    ]
                    for split in ("train", "test")
                    for c in numbers[split]["per_channel"]
                ],
                title="Pixel value by channel (the per-channel normalisation constants)",
            )
        )
        tables.append(
            Table(
                ["class", "mean R", "mean G", "mean B", "mean (all)", "std (all)"],
                [
                    [class_names[c], *(f"{v:.2f}" for v in p["channel_mean"]), f"{p['mean']:.2f}", f"{p['std']:.2f}"]
                    for c, p in enumerate(per_class)
                ],
                title="Pixel value by class (0..255)",
            )
        )
    else:
        tables.append(
            Table(
                ["class", "mean", "std"],
                [[class_names[c], f"{p['mean']:.3f}", f"{p['std']:.3f}"] for c, p in enumerate(per_class)]
                + [
                    ["all (train)", f"{mean:.3f}", f"{std:.3f}"],
                    ["all (test)", f"{test_mean:.3f}", f"{test_std:.3f}"],
                ],
                title="Pixel value by class (0..255)",
            )
        )
    source, note = colour_input(
        colour,
        "Colour images: every statistic is given per channel (R, G, B) as well as over all channel values, "
        "with per-channel maps and histograms.",
    )
    return AnalysisResult(
        key="descriptive",
        title="Descriptive statistics",
        numbers=numbers,
        caption=caption,
        figures={"pixel_maps": maps, "pixel_histogram": hfig},
        tables=tables,
        input=source,
        note=note,
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
    """Box plots of each image's mean intensity (0..255), one box per class.

    Colour images: the mean luminance (ITU-R BT.601) per image, i.e. the luma-weighted channel means.
    """
    colour = is_colour(images)
    if colour:
        channel_means = images.reshape(len(images), -1, images.shape[-1]).mean(axis=1, dtype=np.float64)
        per_image = channel_means @ np.asarray(LUMA_WEIGHTS)  # Y is linear: mean of Y = Y of the means
    else:
        per_image = images.reshape(len(images), -1).mean(axis=1, dtype=np.float64)
    what = "luminance" if colour else "intensity"
    groups = [per_image[labels == c] for c in range(len(class_names))]
    stats = [_box_stats(g) for g in groups]

    fig = new_figure(9, 4)
    ax = fig.add_subplot()
    ax.boxplot(groups, whis=1.5, flierprops={"markersize": 2, "alpha": 0.4, "markeredgecolor": "0.4"})
    class_ticks(ax, np.arange(1, len(class_names) + 1), class_names)
    ax.set_xlabel("class")
    ax.set_ylabel(f"mean {what} per image (0..255)")
    ax.set_title(f"Mean {what} per image, by class (whiskers: 1.5 IQR)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()

    medians = [s["median"] for s in stats]
    hi, lo = int(np.argmax(medians)), int(np.argmin(medians))
    outliers = sum(s["outliers"] for s in stats)
    numbers = {
        "n_images": int(len(images)),
        "variable": f"mean {what} per image",
        "per_class": stats,
        "total_outliers": outliers,
    }
    caption = (
        f"Each box summarises the mean {what} of the {len(images):,} training images of one class. Median "
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
    source, note = luminance_input(colour)
    return AnalysisResult(
        key="boxplots", title="Pixel intensity box plots",
        numbers=numbers, caption=caption, figures={"boxplots": fig}, tables=[table], input=source, note=note
    )


def class_means(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> AnalysisResult:
    """The mean image of each class and the Euclidean distances between those means.

    Colour images: RGB mean images; distances over all H×W×3 values.
    """
    colour = is_colour(images)
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
    scale = (
        f"shown in colour, each channel mapped from 0 to {means.max():.0f} (the brightest mean value) on 0..255"
        if colour
        else f"one colour scale for all, 0 to {means.max():.0f} on 0..255"
    )
    caption = (
        f"Average of all training images of each class ({scale}). Measured as Euclidean distance between "
        f"mean images (all {shape_text(means.shape[1:])} values on 0..1), the closest pair of classes is "
        f"'{class_names[closest[0]]}'/"
        f"'{class_names[closest[1]]}' ({dist[closest]:.2f}) and the farthest is "
        f"'{class_names[farthest[0]]}'/'{class_names[farthest[1]]}' ({dist[farthest]:.2f})."
    )
    source, note = colour_input(
        colour, "Colour images: the mean images are RGB and distances are taken over all three channels."
    )
    return AnalysisResult(
        "class_means",
        "Mean image of each class",
        numbers,
        caption,
        {"class_means": fig, "class_mean_distances": dfig},
        input=source,
        note=note,
    )
