"""Compare two JAX runs' saved models in a fresh process: `python compare_saved.py OUT_A OUT_B`.

Loads each model.keras with plain `keras.models.load_model` (Keras on JAX, no distribution set: what a user
gets), predicts the first run's test subset with both, and prints one JSON line: the largest absolute difference
of each weight (by variable path) and of the logits, the largest weight magnitude, and whether each model's
argmax reproduces its own run's predictions.npy.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from parallel_vision.config import RunConfig
from reload_predict import test_inputs  # tests/ is this script's folder: on sys.path


def main(a: Path, b: Path) -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    assert keras.distribution.distribution() is None  # nothing set: a plain single-device load
    cfg = RunConfig.from_json((a / "config.json").read_text())
    x = test_inputs(cfg)
    models = [keras.models.load_model(out / "model.keras") for out in (a, b)]
    logits = [np.asarray(m.predict(x, batch_size=cfg.eval_batch_size, verbose=0)) for m in models]
    weights = {w.path: (np.asarray(w.value), np.asarray(v.value))
               for w, v in zip(models[0].weights, models[1].weights, strict=True)}
    print(json.dumps({
        "weight_diff": {path: float(np.max(np.abs(p - q))) for path, (p, q) in weights.items()},
        "weight_scale": max(float(np.max(np.abs(p))) for p, _ in weights.values()),
        "logit_diff": float(np.max(np.abs(logits[0] - logits[1]))),
        "logit_scale": float(np.max(np.abs(logits[0]))),
        "reproduces": [bool(np.array_equal(np.argmax(lg, axis=1), np.load(out / "predictions.npy")))
                       for lg, out in zip(logits, (a, b), strict=True)],
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
