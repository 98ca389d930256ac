"""The body of every explain child, framework-free: it reads FOLDER (explain/run.py wrote it), explains the images
with the trained and the randomised model (an `Explainer` each: Captum in engines/torch/explain.py, the numpy methods
of `explain.attribution` over a Keras backend's callables in engines/keras/explain.py), and writes maps.npz,
timings.json and, as it goes, progress.json (explain/progress.py).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from parallel_vision.explain import attribution, faithfulness, progress

#: Images attributed per call of a method (IG and SmoothGrad multiply it by their samples, in batches).
CHUNK = 100
#: Images whose deletion (or insertion) frames go through the model in one forward pass.
CURVE_IMAGES = 32


class Explainer(Protocol):
    """What a framework gives the shared orchestration: logits and one method's maps for a chunk of images."""

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, classes) logits of normalised NHWC `x`."""
        ...

    def attribute(self, method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(N, H, W) maps of NHWC `x` for classes `y` (N ≤ CHUNK)."""
        ...

    def begin(self) -> None:
        """Before each pass over the images (torch: reseed SmoothGrad's noise, the same maps for the same seed)."""
        ...


@dataclass(frozen=True)
class NumpyExplainer:
    """`explain.attribution`'s numpy methods over a backend's callables (the Keras engines')."""

    model: attribution.Model
    settings: attribution.Settings

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.logits(x))

    def attribute(self, method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return attribution.attribute(method, self.model, self.settings, x, y)

    def begin(self) -> None:
        """Nothing to reset: the numpy methods draw their noise from the seed at each call."""


def maps_of(method: str, explainer: Explainer, x: np.ndarray, y: np.ndarray,
            tick: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """(N, H, W) float32 maps of NHWC `x` for classes `y`, in chunks (the same maps for the same seed)."""
    explainer.begin()
    parts = []
    for i in range(0, len(x), CHUNK):
        parts.append(explainer.attribute(method, x[i:i + CHUNK], y[i:i + CHUNK]))
        tick(len(parts[-1]))
    return np.concatenate(parts).astype(np.float32)


def probabilities(explainer: Explainer, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) softmax probability of class y[i] for NHWC x[i], in float64."""
    logits = explainer.logits(x).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True))[np.arange(len(y)), y]


def curves(explainer: Explainer, x: np.ndarray, y: np.ndarray, orders: np.ndarray, black: np.ndarray, *,
           steps: int, tick: Callable[[int], None] = lambda n: None) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves (N, steps + 1) of the true class for each image's pixel order, the frames
    of CURVE_IMAGES images in one forward pass."""
    deletion, insertion = [], []
    for i in range(0, len(x), CURVE_IMAGES):
        part = slice(i, i + CURVE_IMAGES)
        labels = np.repeat(y[part], steps + 1)
        pairs = list(zip(x[part], orders[part], strict=True))
        removed = [faithfulness.deletion_frames(image, black, o, steps) for image, o in pairs]
        added = [faithfulness.insertion_frames(image, o, steps) for image, o in pairs]
        deletion.append(probabilities(explainer, np.concatenate(removed), labels).reshape(-1, steps + 1))
        insertion.append(probabilities(explainer, np.concatenate(added), labels).reshape(-1, steps + 1))
        tick(len(pairs))
    return np.concatenate(deletion), np.concatenate(insertion)


def settings_of(folder: Path) -> attribution.Settings:
    request = json.loads((folder / "request.json").read_text())
    return attribution.Settings(black=np.asarray(request["black"], np.float32),
                                input_range=float(request["input_range"]), seed=int(request["seed"]))


def explain(folder: Path, trained: Explainer, untrained: Explainer) -> None:
    """maps.npz (logits; per method its maps, curves and the randomised model's maps; the random order's
    curves) and timings.json in FOLDER, the progress in FOLDER/progress.json as it goes. Every engine's child
    ends here: torch through Captum, the Keras engines through explain.attribution."""
    request = json.loads((folder / "request.json").read_text())
    x, y = np.load(folder / "inputs.npy"), np.load(folder / "labels.npy").astype(np.int64)
    steps, k = int(request["steps"]), min(int(request["sanity_images"]), len(x))
    black, seed = np.asarray(request["black"], np.float32), int(request["seed"])
    plan = {}
    for method in request["methods"]:
        plan |= {f"{method}: maps": len(x), f"{method}: curves": len(x), f"{method}: randomised model": k}
    report = progress.Reporter(folder, plan | {"random order: curves": len(x)})
    out: dict[str, np.ndarray] = {"logits": trained.logits(x)}
    timings: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(seed)
    orders = {"random": np.stack([faithfulness.random_order(x.shape[1:3], rng) for _ in range(len(x))])}
    for method in request["methods"]:
        started = time.perf_counter()
        out[f"map_{method}"] = maps_of(method, trained, x, y, lambda n, m=method: report.advance(f"{m}: maps", n))
        mapped = time.perf_counter()
        orders[method] = np.stack([faithfulness.order(m) for m in out[f"map_{method}"]])
        deletion, insertion = curves(trained, x, y, orders[method], black, steps=steps,
                                     tick=lambda n, m=method: report.advance(f"{m}: curves", n))
        out[f"deletion_{method}"], out[f"insertion_{method}"] = deletion, insertion
        curved = time.perf_counter()
        out[f"randomised_{method}"] = maps_of(method, untrained, x[:k], y[:k],
                                              lambda n, m=method: report.advance(f"{m}: randomised model", n))
        timings[method] = {"maps_s": mapped - started, "curves_s": curved - mapped,
                           "sanity_s": time.perf_counter() - curved}
        print(f"{method}: maps {mapped - started:.1f} s, curves {curved - mapped:.1f} s", file=sys.stderr)
    started = time.perf_counter()
    out["deletion_random"], out["insertion_random"] = curves(
        trained, x, y, orders["random"], black, steps=steps, tick=lambda n: report.advance("random order: curves", n))
    timings["random"] = {"curves_s": time.perf_counter() - started}
    np.savez(folder / "maps.npz", **out)
    (folder / "timings.json").write_text(json.dumps(timings))
