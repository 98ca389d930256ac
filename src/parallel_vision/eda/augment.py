"""Sections 9-10: rotations, random affine transforms and elastic distortions.

Grey (H, W) or colour (H, W, 3) images alike: a geometric transform moves every channel the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates
from skimage.transform import AffineTransform, rotate, warp

from parallel_vision.eda.base import FULL_SCALE, AnalysisResult, Table, colour_input, image_grid, is_colour

ROTATION_ANGLES = (-45, -30, -15, 0, 15, 30, 45, 90)
AFFINE_RANGES = {"rotation_deg": 15.0, "shift_px": 3.0, "zoom": (0.9, 1.1)}
ELASTIC = {"alpha": 34.0, "sigma": 4.0}


def random_affine(
    image: np.ndarray,
    rng: np.random.Generator,
    rotation_deg: float = 15.0,
    shift_px: float = 3.0,
    zoom: tuple[float, float] = (0.9, 1.1),
) -> tuple[np.ndarray, dict]:
    """Rotate/zoom about the centre and shift; returns the float image (0..1) and the drawn parameters."""
    angle = float(rng.uniform(-rotation_deg, rotation_deg))
    scale = float(rng.uniform(*zoom))
    tx, ty = (float(v) for v in rng.uniform(-shift_px, shift_px, size=2))
    centre = np.array(image.shape[1::-1], dtype=float) / 2 - 0.5  # (x, y) = (W, H) / 2 - 0.5
    tform = (
        AffineTransform(translation=-centre)
        + AffineTransform(scale=scale, rotation=np.deg2rad(angle))
        + AffineTransform(translation=centre + (tx, ty))
    )
    out = warp(image.astype(np.float64) / FULL_SCALE, tform.inverse, order=1, mode="constant", cval=0.0)
    return out, {
        "rotation_deg": round(angle, 3),
        "zoom": round(scale, 4),
        "shift_x": round(tx, 3),
        "shift_y": round(ty, 3),
    }


def elastic_distort(
    image: np.ndarray, rng: np.random.Generator, alpha: float = 34.0, sigma: float = 4.0
) -> tuple[np.ndarray, dict]:
    """Simard et al. (2003): uniform random displacements, Gaussian-smoothed (σ) and scaled (α).

    A colour image (H, W, C) gets one displacement field, applied to every channel.
    """
    h, w = image.shape[:2]
    dx = gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="constant") * alpha
    dy = gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="constant") * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    src = image.astype(np.float64) / FULL_SCALE
    if src.ndim == 2:
        out = map_coordinates(src, [yy + dy, xx + dx], order=1, mode="constant")
    else:
        out = np.stack(
            [map_coordinates(src[..., c], [yy + dy, xx + dx], order=1, mode="constant") for c in range(src.shape[-1])],
            axis=-1,
        )
    disp = np.hypot(dx, dy)
    return out, {
        "mean_displacement_px": round(float(disp.mean()), 4),
        "max_displacement_px": round(float(disp.max()), 4),
    }


def rotation_examples(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    angles: Sequence[float] = ROTATION_ANGLES,
    n_examples: int = 4,
    stats_sample: int = 500,
) -> AnalysisResult:
    """A few images rotated by fixed angles; summed intensity ("ink") kept and pixels changed per angle on a sample."""
    idx = rng.choice(len(images), size=n_examples, replace=False)
    grid = np.stack([[rotate(images[i] / FULL_SCALE, a, order=1, mode="constant") for a in angles] for i in idx])
    fig = image_grid(
        grid,
        row_labels=[f"'{class_names[labels[i]]}' #{i}" for i in idx],
        col_labels=[f"{a:g}°" for a in angles],
        vmax=1.0,
        label_width=1.5,
    )

    colour = is_colour(images)
    n = min(stats_sample, len(images))
    sample = images[rng.choice(len(images), size=n, replace=False)].astype(np.float64) / FULL_SCALE
    axes = tuple(range(1, sample.ndim))  # every pixel (and channel) of an image
    ink = sample.sum(axis=axes)
    lit = ink > 0  # an all-black image keeps 0 of 0: left out of the ratio
    per_angle = []
    for a in angles:
        rot = np.stack([rotate(im, a, order=1, mode="constant") for im in sample])
        per_angle.append(
            {
                "angle": float(a),
                "ink_retained": round(float((rot.sum(axis=axes)[lit] / ink[lit]).mean()), 4),
                "mean_abs_change": round(float(np.abs(rot - sample).mean() * FULL_SCALE), 4),
            }
        )
    numbers = {
        "angles": [float(a) for a in angles],
        "example_indices": [int(i) for i in idx],
        "interpolation": "bilinear (order 1), zero fill",
        "stats_sample": n,
        "ratio_images": int(lit.sum()),
        "per_angle": per_angle,
    }
    nonzero = [p for p in per_angle if p["angle"] != 0]
    worst = min(nonzero, key=lambda p: p["ink_retained"]) if nonzero else per_angle[0]
    lo_ink = min(p["ink_retained"] for p in per_angle)
    hi_ink = max(p["ink_retained"] for p in per_angle)
    caption = (
        "skimage.transform.rotate about the image centre "
        f"(bilinear, zero fill) at {len(angles)} angles. Over "
        f"{n:,} random images, the summed intensity after rotation is "
        f"{lo_ink * 100:.2f}–{hi_ink * 100:.2f}% "
        f"of the original (lowest at {worst['angle']:g}°), while the mean absolute pixel change reaches "
        f"{max(p['mean_abs_change'] for p in per_angle):.1f} (0..255) — a rotated image is a different array."
    )
    table = Table(
        ["angle", "intensity kept %", "mean |Δ pixel| (0..255)"],
        [[f"{p['angle']:g}°", f"{p['ink_retained'] * 100:.2f}", f"{p['mean_abs_change']:.2f}"] for p in per_angle],
    )
    source, note = colour_input(
        colour,
        "Colour images: all three channels are rotated alike, and the summed intensity is over all channels.",
    )
    return AnalysisResult(key="rotation", title="Rotation", numbers=numbers, caption=caption, figures={"rotation": fig},
                          tables=[table], input=source, note=note)


def augmentation_examples(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    rng: np.random.Generator,
    n_examples: int = 4,
    n_variants: int = 4,
    stats_sample: int = 500,
) -> AnalysisResult:
    """Random affine (rotation, shift, zoom) and elastic variants of a few images."""
    idx = rng.choice(len(images), size=n_examples, replace=False)
    rows, drawn = [], []
    for i in idx:
        row = [images[i] / FULL_SCALE]
        params = {"index": int(i), "affine": [], "elastic": []}
        for _ in range(n_variants):
            out, p = random_affine(images[i], rng, **AFFINE_RANGES)
            row.append(out)
            params["affine"].append(p)
        for _ in range(n_variants):
            out, p = elastic_distort(images[i], rng, **ELASTIC)
            row.append(out)
            params["elastic"].append(p)
        rows.append(row)
        drawn.append(params)
    cols = (
        ["original"] + [f"affine {j + 1}" for j in range(n_variants)] + [f"elastic {j + 1}" for j in range(n_variants)]
    )
    fig = image_grid(
        np.array(rows),
        row_labels=[f"'{class_names[labels[i]]}' #{i}" for i in idx],
        col_labels=cols,
        vmax=1.0,
        label_width=1.5,
    )

    n = min(stats_sample, len(images))
    sample = images[rng.choice(len(images), size=n, replace=False)]
    change = {"affine": [], "elastic": []}
    disp = []
    for im in sample:
        base = im / FULL_SCALE
        a, _ = random_affine(im, rng, **AFFINE_RANGES)
        e, p = elastic_distort(im, rng, **ELASTIC)
        change["affine"].append(np.abs(a - base).mean() * FULL_SCALE)
        change["elastic"].append(np.abs(e - base).mean() * FULL_SCALE)
        disp.append(p["mean_displacement_px"])
    numbers = {
        "affine_ranges": {
            "rotation_deg": [-AFFINE_RANGES["rotation_deg"], AFFINE_RANGES["rotation_deg"]],
            "shift_px": [-AFFINE_RANGES["shift_px"], AFFINE_RANGES["shift_px"]],
            "zoom": list(AFFINE_RANGES["zoom"]),
        },
        "elastic": dict(ELASTIC),
        "examples": drawn,
        "stats_sample": n,
        "affine_mean_abs_change": round(float(np.mean(change["affine"])), 4),
        "elastic_mean_abs_change": round(float(np.mean(change["elastic"])), 4),
        "elastic_mean_displacement_px": round(float(np.mean(disp)), 4),
    }
    caption = (
        f"Columns 2–{n_variants + 1}: random affine transforms "
        f"(rotation uniform in ±{AFFINE_RANGES['rotation_deg']:g}°, "
        f"shift uniform in ±{AFFINE_RANGES['shift_px']:g} px per axis, zoom uniform in "
        f"{AFFINE_RANGES['zoom'][0]:g}–{AFFINE_RANGES['zoom'][1]:g}; skimage AffineTransform + warp). Last "
        f"{n_variants}: elastic distortion (uniform random displacement fields smoothed by a Gaussian of "
        f"σ = {ELASTIC['sigma']:g} px and scaled by α = {ELASTIC['alpha']:g}, resampled with "
        f"scipy.ndimage.map_coordinates). Over {n:,} random images one draw moves pixels by "
        f"{numbers['elastic_mean_displacement_px']:.2f} px on average and changes them by "
        f"{numbers['elastic_mean_abs_change']:.1f} (elastic) vs {numbers['affine_mean_abs_change']:.1f} "
        f"(affine) in mean absolute value (0..255). Drawn parameters are in eda.json."
    )
    source, note = colour_input(
        is_colour(images),
        "Colour images: each transform and each elastic displacement field moves all three channels alike.",
    )
    return AnalysisResult(
        "augmentation", "Data augmentation", numbers, caption, {"augmentation": fig}, input=source, note=note
    )
