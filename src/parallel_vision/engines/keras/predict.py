"""A run's model.keras on preprocessed images, on the backend it was trained with (TensorFlow or JAX, from the
run's config): `pvision predict`'s Keras child
(`python -m parallel_vision.engines.keras.predict RUN INPUTS.npy LOGITS.npy`; engines/predicting.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.config import RunConfig
from parallel_vision.engines.predicting import child_main, could_not_load


def load_saved(run: Path, cfg: RunConfig) -> tuple[Any, Any]:
    """(keras, the run's model.keras) on the backend it was trained with; a file Keras refuses is one line."""
    # Keras reads its backend at import: set it first (this process is the child's own).
    os.environ["KERAS_BACKEND"] = "jax" if cfg.framework == "jax" else "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    try:
        return keras, keras.models.load_model(run / "model.keras")
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is one line
        raise could_not_load(run / "model.keras", exc) from None


def logits(run: Path, cfg: RunConfig, x: np.ndarray) -> np.ndarray:
    """float32 logits of NHWC `x`, in batches of the run's eval batch size."""
    _, model = load_saved(run, cfg)
    if not len(x):
        return np.zeros((0, int(model.output_shape[-1])), np.float32)
    return np.asarray(model.predict(x, batch_size=cfg.eval_batch_size, verbose=0))


if __name__ == "__main__":
    sys.exit(child_main(sys.argv, logits))
