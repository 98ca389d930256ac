"""Sections 7-8: edge detection (Sobel, Canny) and HOG descriptors, with scikit-image.

Colour images: edges on their luminance (ITU-R BT.601); HOG on the colour image itself (per pixel the
channel with the strongest gradient, as Dalal & Triggs do). Cell sizes follow the image size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.feature import canny, hog
from skimage.filters import sobel
from skimage.transform import resize

from parallel_vision.eda.base import (
    FULL_SCALE,
    AnalysisResult,
    Table,
    colour_input,
    image_grid,
    intensity,
    is_colour,
    luminance_input,
    pick_per_class,
    to_rgb,
)

CANNY_SIGMA = 1.0
VIS_SCALE = 3
HOG_PARAMS = {"orientations": 9, "pixels_per_cell": (7, 7), "cells_per_block": (2, 2), "block_norm": "L2-Hys"}
"""For 28×28 images; `hog_params_for` scales the cells to other sizes (a 4×4 grid of cells)."""
HOG_COLOUR_NOTE = (
    "Colour images: HOG ran on the colour image itself (at each pixel skimage keeps the gradient of the channel "
    "with the largest magnitude, as Dalal & Triggs do), so the descriptor has the same length as for one channel."
)


def hog_params_for(shape: tuple[int, ...]) -> dict:
    """`HOG_PARAMS` with cells of a quarter of the image side: 7×7 on 28×28, 8×8 on 32×32."""
    h, w = shape[:2]
    return {**HOG_PARAMS, "pixels_per_cell": (max(1, h // 4), max(1, w // 4))}


def edge_detection(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    stats_sample: int = 1000,
    canny_sigma: float = CANNY_SIGMA,
) -> AnalysisResult:
    """Sobel gradient magnitude and Canny edges on one example per class, plus edge density on a sample.

    Colour images: both run on the luminance; the top row of the figure shows the colour originals.
    """
    colour = is_colour(images)
    k = len(class_names)
    idx = pick_per_class(labels, k, 1, rng)[:, 0]
    originals = np.asarray(intensity(images[idx]), dtype=np.float64) / FULL_SCALE
    sobels = np.stack([sobel(im) for im in originals])
    cannys = np.stack([canny(im, sigma=canny_sigma) for im in originals])
    rows = [originals, sobels / max(sobels.max(), 1e-12), cannys.astype(float)]
    if colour:
        rows = [images[idx].astype(np.float64) / FULL_SCALE] + [to_rgb(r) for r in rows[1:]]
    grid = np.stack(rows)
    fig = image_grid(
        grid,
        row_labels=["original", f"Sobel |∇|{' of Y' if colour else ''}", f"Canny σ={canny_sigma:g}"],
        col_labels=list(class_names),
        vmax=1.0,
        label_width=1.3,
    )

    n = min(stats_sample, len(images))
    sample = rng.choice(len(images), size=n, replace=False)
    grey = np.asarray(intensity(images[sample]), dtype=np.float64) / FULL_SCALE
    frac = np.array([canny(im, sigma=canny_sigma).mean() for im in grey])
    sob = np.array([sobel(im).mean() for im in grey])
    per_class = [
        {
            "n": int((labels[sample] == c).sum()),
            "canny_edge_fraction": round(float(frac[labels[sample] == c].mean()), 5),
            "sobel_mean": round(float(sob[labels[sample] == c].mean()), 5),
        }
        for c in range(k)
    ]
    examples = [
        {
            "index": int(i),
            "class": int(labels[i]),
            "sobel_mean": round(float(s.mean()), 5),
            "sobel_max": round(float(s.max()), 5),
            "canny_edge_pixels": int(c.sum()),
        }
        for i, s, c in zip(idx, sobels, cannys, strict=True)
    ]
    numbers = {
        "canny_sigma": canny_sigma,
        "sobel_input_scale": "0..1",
        "input": "luminance (ITU-R BT.601)" if colour else "grey",
        "examples": examples,
        "stats_sample": n,
        "canny_edge_fraction": round(float(frac.mean()), 5),
        "sobel_mean": round(float(sob.mean()), 5),
        "per_class": per_class,
    }
    fr = [p["canny_edge_fraction"] for p in per_class]
    hi, lo = int(np.argmax(fr)), int(np.argmin(fr))
    caption = (
        f"Top: one random training image per class; middle: Sobel gradient magnitude (scaled to the largest "
        "value in the row); bottom: Canny edges (σ = "
        f"{canny_sigma:g}). Over {n:,} random images, Canny marks "
        f"{numbers['canny_edge_fraction'] * 100:.1f}% of pixels as edges on average, from "
        f"{fr[lo] * 100:.1f}% for '{class_names[lo]}' to "
        f"{fr[hi] * 100:.1f}% for '{class_names[hi]}'; the mean "
        f"Sobel magnitude is {numbers['sobel_mean']:.4f} (images on 0..1)."
        + (" Sobel and Canny ran on the luminance of the colour images." if colour else "")
    )
    table = Table(
        ["class", "images", "Canny edge pixels %", "mean Sobel |∇|"],
        [
            [class_names[c], p["n"], f"{p['canny_edge_fraction'] * 100:.2f}", f"{p['sobel_mean']:.4f}"]
            for c, p in enumerate(per_class)
        ],
        title=f"Edge density by class ({n:,} random training images)",
    )
    source, note = luminance_input(colour)
    return AnalysisResult(key="edges", title="Edge detection", numbers=numbers, caption=caption, figures={"edges": fig},
                          tables=[table], input=source, note=note)


def hog_length(
    shape: tuple[int, int],
    orientations: int,
    pixels_per_cell: tuple[int, int],
    cells_per_block: tuple[int, int],
) -> int:
    """Expected HOG length: blocks × cells per block × orientations (skimage's layout)."""
    cells = (shape[0] // pixels_per_cell[0], shape[1] // pixels_per_cell[1])
    blocks = (cells[0] - cells_per_block[0] + 1, cells[1] - cells_per_block[1] + 1)
    return blocks[0] * blocks[1] * cells_per_block[0] * cells_per_block[1] * orientations


def hog_features(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    params: dict | None = None,
) -> AnalysisResult:
    """HOG descriptor length for stated parameters, a few alternatives, and a visualisation per class.

    Default parameters: `hog_params_for(image shape)`. Colour images: HOG on the colour image
    (skimage's `channel_axis=-1`).
    """
    colour = is_colour(images)
    channel_axis = {"channel_axis": -1} if colour else {}
    shape = images.shape[1:3]
    params = dict(hog_params_for(shape) if params is None else params)
    k = len(class_names)
    idx = pick_per_class(labels, k, 1, rng)[:, 0]
    originals = images[idx].astype(np.float64) / FULL_SCALE
    descs = [hog(im, feature_vector=True, **params, **channel_axis) for im in originals]
    # skimage draws each cell's histogram as short lines inside the cell; at 7 px per cell they are
    # barely visible. Draw it on the image upscaled VIS_SCALE× with cells VIS_SCALE× larger: the same
    # cell grid, so the same histograms up to interpolation of the gradients.
    scale = VIS_SCALE
    vis_ppc = (params["pixels_per_cell"][0] * scale, params["pixels_per_cell"][1] * scale)
    vis, big = [], []
    for im in originals:
        up = resize(im, (im.shape[0] * scale, im.shape[1] * scale), order=1, anti_aliasing=False)
        _, v = hog(up, visualize=True, **{**params, "pixels_per_cell": vis_ppc}, **channel_axis)
        vis.append(np.sqrt(v / max(v.max(), 1e-12)))  # square root: faint cells stay visible
        big.append(up)
    length = int(len(descs[0]))

    # Cell sizes relative to the image: 4×4 px, a quarter and half of the side (28×28: 7 and 14).
    quarter = hog_params_for(shape)["pixels_per_cell"]
    half = (quarter[0] * 2, quarter[1] * 2)
    alternatives = []
    for ppc, cpb in (((4, 4), (2, 2)), (quarter, (2, 2)), (quarter, (1, 1)), (half, (1, 1))):
        p = {**params, "pixels_per_cell": ppc, "cells_per_block": cpb}
        alternatives.append(
            {
                "pixels_per_cell": list(ppc),
                "cells_per_block": list(cpb),
                "length": int(len(hog(originals[0], **p, **channel_axis))),
            }
        )

    vis_rows = np.stack(vis)
    fig = image_grid(
        np.stack([np.stack(big), to_rgb(vis_rows) if colour else vis_rows]),
        row_labels=["original", "HOG"],
        col_labels=list(class_names),
        vmax=1.0,
        cell=1.0,
    )
    expected = hog_length(shape, params["orientations"], params["pixels_per_cell"], params["cells_per_block"])
    numbers = {
        "params": {
            **params,
            "pixels_per_cell": list(params["pixels_per_cell"]),
            "cells_per_block": list(params["cells_per_block"]),
        },
        "image_shape": list(images.shape[1:]),
        "input": "colour (per pixel, the channel with the largest gradient)" if colour else "grey",
        "descriptor_length": length,
        "expected_length": expected,
        "examples": [
            {
                "index": int(i),
                "class": int(labels[i]),
                "nonzero": int((d > 0).sum()),
                "l2_norm": round(float(np.linalg.norm(d)), 4),
            }
            for i, d in zip(idx, descs, strict=True)
        ],
        "alternatives": alternatives,
        "visualisation_scale": scale,
    }
    cells = [shape[0] // params["pixels_per_cell"][0], shape[1] // params["pixels_per_cell"][1]]
    caption = (
        f"HOG with {params['orientations']} orientations, {params['pixels_per_cell'][0]}×"
        f"{params['pixels_per_cell'][1]}-pixel cells ({cells[0]}×{cells[1]} cells on a "
        f"{shape[0]}×{shape[1]} image), {params['cells_per_block'][0]}×{params['cells_per_block'][1]}-cell "
        f"blocks and {params['block_norm']} block normalisation gives a descriptor of {length} values"
        f"{' (on the colour image)' if colour else ''} "
        f"(blocks × cells per block × orientations = {expected}). So that the lines are legible, the "
        f"figure is drawn on the image upscaled {scale}× (bilinear, top row) with {scale}× larger "
        f"cells — the same {cells[0]}×{cells[1]} grid; bottom row: skimage's drawing of each cell's "
        f"orientation histogram (square-root brightness)."
    )
    table = Table(
        ["pixels per cell", "cells per block", "descriptor length"],
        [
            [
                f"{a['pixels_per_cell'][0]}×{a['pixels_per_cell'][1]}",
                f"{a['cells_per_block'][0]}×{a['cells_per_block'][1]}",
                a["length"],
            ]
            for a in alternatives
        ],
        title=f"Descriptor length for other settings ({params['orientations']} orientations)",
    )
    source, note = colour_input(colour, HOG_COLOUR_NOTE)
    return AnalysisResult(
        key="hog", title="Histogram of oriented gradients (HOG)",
        numbers=numbers, caption=caption, figures={"hog": fig}, tables=[table], input=source, note=note
    )
