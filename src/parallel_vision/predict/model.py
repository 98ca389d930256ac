"""A run folder as `pvision predict` uses it, and its saved model's logits computed in a child process.

The child is the run's engine's predict module (`EngineSpec.predict`), started through the launcher's own
`run_children` (its error protocol: an expected failure is one line of the same type), so this process never
imports a framework and torch and TensorFlow never share one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parallel_vision.config import RunConfig
from parallel_vision.data import normalize
from parallel_vision.engines import registry
from parallel_vision.engines.workload import Workload, workload
from parallel_vision.errors import ConfigError, EngineError, PVisionError
from parallel_vision.launch.processes import run_children
from parallel_vision.predict.images import Target


@dataclass(frozen=True)
class SavedRun:
    """What predicting with a run needs to know: where its model is, what it takes and what it answers."""

    path: Path
    run_id: str
    cfg: RunConfig
    shape: Workload
    model_file: Path
    child: str

    @property
    def target(self) -> Target:
        return Target(dataset=self.cfg.dataset, side=self.shape.image_size, channels=self.shape.channels)

    @property
    def normalisation(self) -> str:
        mean, std = list(self.shape.mean), list(self.shape.std)
        return f"x / 255, then (x - mean) / std per channel with mean {mean}, std {std}"


def open_run(path: Path) -> SavedRun:
    """The run in `path`; a one-line ConfigError (exit 2) if it is no run folder or holds no saved model."""
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: not a run folder (no config.json); give the --out folder of `pvision train`")
    try:
        cfg = RunConfig.from_json((path / "config.json").read_text())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path / 'config.json'}: unreadable run configuration ({exc})") from None
    spec = registry.get(cfg.framework)
    model_file = path / spec.model_file
    if not spec.predict or not model_file.is_file():
        raise ConfigError(f"{path}: no {spec.model_file or 'saved model'} (the run did not finish, or saved no model)")
    return SavedRun(path=path, run_id=_run_id(path), cfg=cfg, shape=workload(cfg), model_file=model_file,
                    child=spec.predict)


def _run_id(path: Path) -> str:
    try:
        return str(json.loads((path / "result.json").read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return path.name


def normalised(run: SavedRun, pixels: list[np.ndarray]) -> np.ndarray:
    """NHWC float32 with the run's training normalisation (`data.normalize`, the dataset's mean and std)."""
    side, channels = run.shape.image_size, run.shape.channels
    batch = np.stack(pixels) if pixels else np.zeros((0, side, side, channels), np.uint8)
    return normalize(batch, run.shape.mean, run.shape.std).astype(np.float32)


def logits(run: SavedRun, x: np.ndarray) -> np.ndarray:
    """(N, classes) float32 logits of the run's saved model, computed in a child process of its framework."""
    with tempfile.TemporaryDirectory(prefix="pvision-predict-") as tmp:
        folder = Path(tmp)
        np.save(folder / "inputs.npy", x)
        command = [sys.executable, "-m", run.child, str(run.path), str(folder / "inputs.npy"),
                   str(folder / "logits.npy")]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        log = folder / "child.log"  # the child's own output must not mix into a table or JSON on stdout
        try:
            run_children([(command, env)], folder, log)
        except PVisionError as exc:
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
            if isinstance(exc, EngineError) and "exit code" in str(exc) and tail:
                raise EngineError(f"predicting with {run.model_file}: {tail[0]}") from None
            raise
        return np.load(folder / "logits.npy")


def softmax(values: np.ndarray) -> np.ndarray:
    """Row-wise probabilities, in float64."""
    shifted = values.astype(np.float64) - values.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
