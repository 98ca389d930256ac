"""Sections 1-2: split sizes, class balance, image format; a grid of sample images per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parallel_vision.eda.base import (
    AnalysisResult,
    Table,
    class_ticks,
    colour_input,
    fmt_int,
    image_grid,
    is_colour,
    new_figure,
    pick_per_class,
    shape_text,
)


def _split_info(images: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    counts = np.bincount(labels, minlength=n_classes)
    return {
        "n_images": int(len(images)),
        "image_shape": list(images.shape[1:]),
        "channels": int(images.shape[3]) if is_colour(images) else 1,
        "dtype": str(images.dtype),
        "min_value": int(images.min()),
        "max_value": int(images.max()),
        "class_counts": counts.tolist(),
        "class_fractions": (counts / counts.sum()).round(6).tolist(),
        "max_min_ratio": round(float(counts.max() / counts.min()), 4),
        "largest_class": int(counts.argmax()),
        "smallest_class": int(counts.argmin()),
    }


def overview(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
) -> AnalysisResult:
    """Split sizes, class counts per split, image shape and dtype, plus a class-balance bar chart."""
    k = len(class_names)
    train = _split_info(train_images, train_labels, k)
    test = _split_info(test_images, test_labels, k)
    numbers = {"class_names": list(class_names), "train": train, "test": test}

    fig = new_figure(9, 3.6)
    ax = fig.add_subplot()
    x = np.arange(k)
    w = 0.4
    ax.bar(
        x - w / 2,
        np.array(train["class_fractions"]) * 100,
        w,
        label=f"train (n={fmt_int(train['n_images'])})",
    )
    ax.bar(x + w / 2, np.array(test["class_fractions"]) * 100, w, label=f"test (n={fmt_int(test['n_images'])})")
    ax.axhline(100 / k, color="0.3", lw=0.8, ls="--", label="uniform")
    class_ticks(ax, x, class_names)
    ax.set_ylabel("share of split (%)")
    ax.set_ylim(0, max(max(train["class_fractions"]), max(test["class_fractions"])) * 100 * 1.25)
    ax.set_title("Class balance")
    ax.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    fig.tight_layout()

    def name(i: int) -> str:
        return f"'{class_names[i]}'"

    colour = is_colour(train_images)
    kind = "RGB colour (H×W×channels, NHWC)" if colour else "grey"
    caption = (
        f"{fmt_int(train['n_images'])} training and {fmt_int(test['n_images'])} test images, each "
        f"{shape_text(train['image_shape'])} {train['dtype']} {kind} with values "
        f"{train['min_value']}–{train['max_value']}. Training classes range from "
        f"{fmt_int(min(train['class_counts']))} ({name(train['smallest_class'])}) to "
        f"{fmt_int(max(train['class_counts']))} ({name(train['largest_class'])}) images, a max/min ratio of "
        f"{train['max_min_ratio']:.2f}; in the test split the ratio is {test['max_min_ratio']:.2f}."
    )
    rows = [
        [
            class_names[i],
            train["class_counts"][i],
            f"{train['class_fractions'][i] * 100:.2f}",
            test["class_counts"][i],
            f"{test['class_fractions'][i] * 100:.2f}",
        ]
        for i in range(k)
    ]
    rows.append(["total", train["n_images"], "100.00", test["n_images"], "100.00"])
    table = Table(["class", "train", "train %", "test", "test %"], rows)
    source, note = colour_input(
        colour, "Colour images: counts and format do not depend on colour; the shape includes the 3 RGB channels."
    )
    return AnalysisResult(
        key="overview", title="Overview",
        numbers=numbers, caption=caption, figures={"class_balance": fig}, tables=[table], input=source, note=note
    )


def sample_grid(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    per_class: int = 10,
) -> AnalysisResult:
    """`per_class` random images of each class, one row per class."""
    idx = pick_per_class(labels, len(class_names), per_class, rng)
    fig = image_grid(images[idx], row_labels=class_names, vmin=0, vmax=255)
    numbers = {"per_class": per_class, "indices": idx.tolist()}
    caption = (
        f"{per_class} training images per class drawn at random (the rng is seeded; their indices in the "
        f"training split are in eda.json)."
    )
    source, note = colour_input(is_colour(images), "Colour images: shown in their own RGB colours.")
    return AnalysisResult(
        "samples", "Sample images per class", numbers, caption, {"samples": fig}, input=source, note=note
    )
