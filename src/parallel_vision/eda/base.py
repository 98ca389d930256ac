"""What every analysis returns, and the small helpers they share.

An analysis is a plain function of arrays (images uint8 (N, 28, 28), labels int (N,))
plus an rng / class names. It returns an `AnalysisResult`: its numbers as a JSON-able
dict, a caption computed from those numbers, optional tables (also built from the
numbers) and its matplotlib figures. Figures are `matplotlib.figure.Figure` objects
drawn on the Agg canvas, never through pyplot, so nothing here needs a display or
touches global plotting state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Pixels are stored 0..255; analyses that need floats work on 0..1 (value / 255).
FULL_SCALE = 255.0


@dataclass
class Table:
    """A small table for the page; every cell must also be somewhere in `numbers`."""

    headers: list[str]
    rows: list[list[Any]]
    title: str = ""


@dataclass
class AnalysisResult:
    key: str
    title: str
    numbers: dict[str, Any]
    caption: str
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    """Objects for later analyses (e.g. a fitted PCA); never serialised."""

    def to_json(self) -> dict[str, Any]:
        return jsonable({"title": self.title, "caption": self.caption, "numbers": self.numbers})


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure bound to the Agg canvas (no display, no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def image_grid(
    images: np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cmap: str = "gray",
    cell: float = 0.75,
    vmin: float | None = 0.0,
    vmax: float | None = None,
    title: str | None = None,
    label_width: float = 1.1,
) -> Figure:
    """A (rows, cols, H, W) grid of images as ONE mosaic (one imshow, not rows×cols axes: much faster).

    Panels are separated by white gutters; all panels share one colour scale (vmin/vmax, or the data's
    range when None). Row labels go on the left, column titles on top.
    """
    images = np.asarray(images, dtype=np.float64)
    rows, cols, h, w = images.shape
    gap = max(1, h // 14)
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[r, c]
    left = label_width if row_labels is not None else 0.05
    top = 0.3 if col_labels is not None else 0.05
    top += 0.35 if title else 0.0
    width, height = left + cols * cell + 0.05, top + rows * cell + 0.05
    fig = new_figure(width, height)
    ax = fig.add_axes((left / width, 0.05 / height, cols * cell / width, rows * cell / height))
    colormap = colormaps[cmap].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            ax.text(-gap * 1.5, r * (h + gap) + h / 2 - 0.5, str(label), ha="right", va="center", fontsize=9)
    if col_labels is not None:
        for c, label in enumerate(col_labels):
            ax.text(c * (w + gap) + w / 2 - 0.5, -gap * 1.5, str(label), ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    return fig


def class_ticks(ax, positions, class_names: Sequence[str], fontsize: float = 10) -> None:
    """Class names as x tick labels, slanted and right-anchored when any is longer than 3 characters."""
    names = [str(c) for c in class_names]
    if max(map(len, names)) > 3:
        ax.set_xticks(positions, names, rotation=30, ha="right", rotation_mode="anchor", fontsize=fontsize)
    else:
        ax.set_xticks(positions, names, fontsize=fontsize)


def as_float(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 rows (N, H*W) on 0..1."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(FULL_SCALE)


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of about `n` items keeping each class's share (all items if n >= len)."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * n / len(labels)).astype(int)
    # Hand out what rounding left over to the classes with the largest remainders.
    remainder = counts * n / len(labels) - quota
    for i in np.argsort(-remainder)[: n - quota.sum()]:
        quota[i] += 1
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picks))


def pick_per_class(labels: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """(n_classes, per_class) indices drawn at random within each class."""
    return np.stack([rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(n_classes)])


def jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays -> Python; NaN/inf -> None (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def fmt_int(value: int) -> str:
    return f"{int(value):,}"


def fmt_p(p: float) -> str:
    """A p-value for prose: tiny ones as '< 1e-300', others to 3 significant digits."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.3g}"
