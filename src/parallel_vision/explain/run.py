"""`pvision explain RUN`, the parent side (framework-free): the run folder, the sample, the engine's explain child
(`EngineSpec.explain`, started through the launcher's `run_children`), and RUN/explain/explanations.npz and
explain.json, written atomically."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.data import normalize
from parallel_vision.engines import registry
from parallel_vision.engines.common import load_split, to_nhwc
from parallel_vision.errors import ConfigError, EngineError, PVisionError
from parallel_vision.explain import faithfulness, page, progress
from parallel_vision.explain.sample import stratified_sample
from parallel_vision.launch.processes import run_children
from parallel_vision.predict.model import SavedRun, open_run, softmax

METHODS = ("saliency", "gradcam", "ig", "smoothgrad", "occlusion")
DEFAULT_METHODS = "saliency,gradcam"
DEFAULT_IMAGES = 500
#: The randomised-model check runs on the first images of the sample (it doubles each method's cost there).
SANITY_IMAGES = 100
#: A method passes the randomised-model check when the mean Spearman correlation between the trained and the
#: re-initialised model's maps is below this (measured on paper_cnn/MNIST: docs/explain.md).
SANITY_THRESHOLD = 0.5


def parse_methods(text: str) -> tuple[str, ...]:
    """The comma-separated methods, in the order given, once each; an unknown one is a one-line ConfigError."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ConfigError(f"unknown method {', '.join(unknown) or repr(text)}; choose from {', '.join(METHODS)}")
    return tuple(dict.fromkeys(names))


def check(run: SavedRun, methods: tuple[str, ...]) -> str:
    """The explain child of the run's engine; a one-line ConfigError for what cannot be explained yet."""
    spec = registry.get(run.cfg.framework)
    if not spec.explain:
        raise ConfigError(f"explain does not support {run.cfg.framework} runs")
    if "gradcam" in methods and run.cfg.model == "wide_mlp":
        raise ConfigError("gradcam needs a convolutional layer and wide_mlp has none; "
                          "use saliency, ig, smoothgrad or occlusion")
    return spec.explain


def explain(path: Path, methods: tuple[str, ...], images: int = DEFAULT_IMAGES, seed: int = 0) -> dict[str, Any]:
    """Explain `images` test images of the run in `path` with `methods`; write RUN/explain/ and return explain.json."""
    run = open_run(path)
    child = check(run, methods)
    pixels, labels, _names = load_split(run.cfg, "test")
    indices = stratified_sample(labels, images, seed)
    x, y, request = prepare(run, pixels[indices], labels[indices], methods=methods, seed=seed)
    started = time.perf_counter()
    out, timings = _run_child(run, child, x, y, request)
    doc = _document(run, out, timings, request, indices=indices, y=y)
    doc["seconds_total"] = round(time.perf_counter() - started, 2)
    arrays = {m: out[f"map_{m}"].astype(np.float32) for m in methods}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, indices=indices, labels=y)
    atomic_write_bytes(path / "explain" / "explanations.npz", buffer.getvalue())
    atomic_write_bytes(path / "explain" / "explain.json", (json.dumps(doc, indent=2) + "\n").encode())
    mean_curves = {name: {kind: out[f"{kind}_{name}"].mean(axis=0).tolist() for kind in ("deletion", "insertion")}
                   for name in (*methods, "random")}
    text = page.page(doc, page.overlays(to_nhwc(pixels[indices]), y, arrays), page.curves(mean_curves))
    atomic_write_bytes(path / "explain" / "explain.html", text.encode())
    return doc


def prepare(run: SavedRun, pixels: np.ndarray, labels: np.ndarray, *, methods: tuple[str, ...],
            seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The child's inputs (normalised NHWC float32, as in training), classes and request.json for these images."""
    x = normalize(to_nhwc(pixels), run.shape.mean, run.shape.std).astype(np.float32)
    black = normalize(np.zeros((1, 1, 1, run.shape.channels), np.uint8), run.shape.mean, run.shape.std).ravel()
    request = {"methods": list(methods), "seed": seed, "steps": faithfulness.STEPS,
               "sanity_images": min(SANITY_IMAGES, len(x)), "black": black.tolist(),
               "input_range": float(1 / max(run.shape.std))}
    return x, labels.astype(np.int64), request


def _run_child(run: SavedRun, child: str, x: np.ndarray, y: np.ndarray,
               request: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="pvision-explain-") as tmp:
        folder = Path(tmp)
        np.save(folder / "inputs.npy", x)
        np.save(folder / "labels.npy", y)
        (folder / "request.json").write_text(json.dumps(request))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        log = folder / "child.log"
        try:
            with progress.watching(folder):  # IG and occlusion take minutes: a bar per task with the time left
                run_children([([sys.executable, "-m", child, str(run.path), str(folder)], env)], folder, log)
        except PVisionError as exc:
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
            if isinstance(exc, EngineError) and "exit code" in str(exc) and tail:
                raise EngineError(f"explaining with {run.model_file}: {tail[0]}") from None
            raise
        with np.load(folder / "maps.npz") as maps:
            out = {name: maps[name] for name in maps.files}
        return out, json.loads((folder / "timings.json").read_text())


def _document(run: SavedRun, out: dict[str, np.ndarray], timings: dict[str, Any], request: dict[str, Any], *,
              indices: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    predicted = out["logits"].argmax(axis=1)
    probability = softmax(out["logits"])[np.arange(len(y)), y]
    k = request["sanity_images"]
    methods = {}
    for m in request["methods"]:
        rho = faithfulness.rank_correlations(out[f"map_{m}"][:k], out[f"randomised_{m}"])
        methods[m] = {
            "deletion_auc": _mean(faithfulness.auc(out[f"deletion_{m}"])),
            # a constant map ranks no pixel above another: its curves follow the pixel index (docs/explain.md)
            "constant_maps": int((np.ptp(out[f"map_{m}"].reshape(len(y), -1), axis=1) == 0).sum()),
            "insertion_auc": _mean(faithfulness.auc(out[f"insertion_{m}"])),
            "seconds": round(sum(timings[m].values()), 2),
            "seconds_maps": round(timings[m]["maps_s"], 2),
            "seconds_curves": round(timings[m]["curves_s"], 2),
            "seconds_sanity": round(timings[m]["sanity_s"], 2),
            "randomised_model": {"spearman_mean": _mean(rho), "spearman_median": float(np.median(rho)),
                                 "threshold": SANITY_THRESHOLD, "passed": bool(rho.mean() < SANITY_THRESHOLD)},
        }
    return {
        "run_id": run.run_id, "run": str(run.path), "framework": run.cfg.framework, "model": run.cfg.model,
        "dataset": run.cfg.dataset, "seed": request["seed"], "images": len(indices),
        "explained_class": "true label",
        "indices": indices.tolist(), "labels": y.tolist(), "predicted": predicted.tolist(),
        "agreement": _mean(predicted == y), "true_class_probability": _mean(probability),
        "faithfulness": {"steps": request["steps"], "deletion_substrate": "black (pixel value 0, normalised)",
                         "insertion_substrate": f"Gaussian blur, sigma {faithfulness.BLUR_SIGMA} px",
                         "random_order": {"deletion_auc": _mean(faithfulness.auc(out["deletion_random"])),
                                          "insertion_auc": _mean(faithfulness.auc(out["insertion_random"])),
                                          "seconds": round(timings["random"]["curves_s"], 2)}},
        "randomised_model_images": k,
        "methods": methods,
    }


def _mean(values: np.ndarray) -> float:
    return round(float(np.mean(values)), 4)
