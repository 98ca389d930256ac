"""The body of an explain child that computes its maps with `explain.attribution` (the Keras engines': one for
TensorFlow and JAX), framework-free: it reads FOLDER (explain/run.py wrote it), explains the images with the
trained and the randomised model's callables, and writes maps.npz and timings.json, exactly the files the torch
child (engines/torch/explain.py, Captum) writes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from parallel_vision.explain import attribution, faithfulness

#: Images attributed per call of a method (IG and SmoothGrad multiply it by their samples, in batches).
CHUNK = 100
#: Images whose deletion (or insertion) frames go through the model in one forward pass.
CURVE_IMAGES = 32


def maps_of(method: str, model: attribution.Model, settings: attribution.Settings, x: np.ndarray,
            y: np.ndarray) -> np.ndarray:
    """(N, H, W) float32 maps of NHWC `x` for classes `y`, in chunks (the same maps for the same seed)."""
    parts = [attribution.attribute(method, model, settings, x[i:i + CHUNK], y[i:i + CHUNK])
             for i in range(0, len(x), CHUNK)]
    return np.concatenate(parts).astype(np.float32)


def probabilities(model: attribution.Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) softmax probability of class y[i] for NHWC x[i], in float64."""
    logits = model.logits(x).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True))[np.arange(len(y)), y]


def curves(model: attribution.Model, x: np.ndarray, y: np.ndarray, orders: np.ndarray, black: np.ndarray, *,
           steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves (N, steps + 1) of the true class for each image's pixel order."""
    deletion, insertion = [], []
    for i in range(0, len(x), CURVE_IMAGES):
        part = slice(i, i + CURVE_IMAGES)
        labels = np.repeat(y[part], steps + 1)
        pairs = list(zip(x[part], orders[part], strict=True))
        removed = [faithfulness.deletion_frames(image, black, o, steps) for image, o in pairs]
        added = [faithfulness.insertion_frames(image, o, steps) for image, o in pairs]
        deletion.append(probabilities(model, np.concatenate(removed), labels).reshape(-1, steps + 1))
        insertion.append(probabilities(model, np.concatenate(added), labels).reshape(-1, steps + 1))
    return np.concatenate(deletion), np.concatenate(insertion)


def settings_of(folder: Path) -> attribution.Settings:
    request = json.loads((folder / "request.json").read_text())
    return attribution.Settings(black=np.asarray(request["black"], np.float32),
                                input_range=float(request["input_range"]), seed=int(request["seed"]))


def explain(folder: Path, trained: attribution.Model, untrained: attribution.Model) -> None:
    """maps.npz (logits; per method its maps, curves and the randomised model's maps; the random order's
    curves) and timings.json in FOLDER."""
    request = json.loads((folder / "request.json").read_text())
    x, y = np.load(folder / "inputs.npy"), np.load(folder / "labels.npy").astype(np.int64)
    steps, k = int(request["steps"]), int(request["sanity_images"])
    settings = settings_of(folder)
    out: dict[str, np.ndarray] = {"logits": trained.logits(x)}
    timings: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(settings.seed)
    orders = {"random": np.stack([faithfulness.random_order(x.shape[1:3], rng) for _ in range(len(x))])}
    for method in request["methods"]:
        started = time.perf_counter()
        out[f"map_{method}"] = maps_of(method, trained, settings, x, y)
        mapped = time.perf_counter()
        orders[method] = np.stack([faithfulness.order(m) for m in out[f"map_{method}"]])
        deletion, insertion = curves(trained, x, y, orders[method], settings.black, steps=steps)
        out[f"deletion_{method}"], out[f"insertion_{method}"] = deletion, insertion
        curved = time.perf_counter()
        out[f"randomised_{method}"] = maps_of(method, untrained, settings, x[:k], y[:k])
        timings[method] = {"maps_s": mapped - started, "curves_s": curved - mapped,
                           "sanity_s": time.perf_counter() - curved}
        print(f"{method}: maps {mapped - started:.1f} s, curves {curved - mapped:.1f} s", file=sys.stderr)
    started = time.perf_counter()
    out["deletion_random"], out["insertion_random"] = curves(trained, x, y, orders["random"], settings.black,
                                                             steps=steps)
    timings["random"] = {"curves_s": time.perf_counter() - started}
    np.savez(folder / "maps.npz", **out)
    (folder / "timings.json").write_text(json.dumps(timings))
