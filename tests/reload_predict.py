"""Predict the test subset with a run's saved model, in a fresh process: `python reload_predict.py OUT [OUT ...]`.

Prints the predicted classes as one JSON list per OUT, one line each, in order (several runs of one framework
share the start-up). Imports only the framework that saved the models (torch, TensorFlow and JAX never share a
process: runs of different frameworks are refused), and builds inputs from each run's own config.json, the way
a user reloading `model.pt` or `model.keras` would.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from parallel_vision.config import RunConfig
from parallel_vision.data import DATASETS, load, normalize


def test_inputs(cfg: RunConfig) -> np.ndarray:
    """Normalised NHWC float32 test images, as a user would prepare them from the dataset's own files."""
    images, _ = load(cfg.dataset, "test", cfg.data_dir)
    spec = DATASETS[cfg.dataset]
    x = normalize(images[: cfg.limit_test], spec.mean, spec.std)
    return x[..., None] if x.ndim == 3 else x


def predict_torch(out: Path, x: np.ndarray, batch: int) -> np.ndarray:
    import torch

    from parallel_vision.models.torch_zoo import build_torch_model

    cfg = RunConfig.from_json((out / "config.json").read_text())
    model = build_torch_model(cfg.model, x.shape[-1], x.shape[1], len(DATASETS[cfg.dataset].class_names), 0.0)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    model.eval()
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        parts = [model(torch.from_numpy(nchw[i:i + batch])).argmax(1).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def predict_keras(out: Path, x: np.ndarray, batch: int, backend: str = "tensorflow") -> np.ndarray:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = backend  # a JAX run's model.keras is reloaded on the JAX backend
    import keras

    model = keras.models.load_model(out / "model.keras")
    return np.argmax(model.predict(x, batch_size=batch, verbose=0), axis=1)


def main(outs: list[Path]) -> None:
    configs = [RunConfig.from_json((out / "config.json").read_text()) for out in outs]
    if len({cfg.framework for cfg in configs}) > 1:
        sys.exit(f"runs of several frameworks ({sorted({c.framework for c in configs})}): one process per framework")
    for out, cfg in zip(outs, configs, strict=True):
        x = test_inputs(cfg)
        if cfg.framework == "torch":
            predicted = predict_torch(out, x, cfg.eval_batch_size)
        else:
            predicted = predict_keras(out, x, cfg.eval_batch_size, "jax" if cfg.framework == "jax" else "tensorflow")
        print(json.dumps(predicted.astype(int).tolist()), flush=True)


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
