"""What the TensorFlow tests run in a fresh interpreter: `python tests/tf_probe.py NAME [ARGS...]`.

TensorFlow is never imported in the pytest process (the torch tests share it), so anything that needs
Keras runs here, in a subprocess (see `run_probe`). Each probe prints its answer as the last line of
stdout, JSON unless said otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np


def run_probe(name: str, *args: str, **env: str) -> str:
    """Run probe `name` in a fresh interpreter (TensorFlow allowed there); return its stdout."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env)
    proc = subprocess.run([sys.executable, __file__, name, *args], capture_output=True, text=True, env=full_env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def model_summary() -> None:
    """The Keras CNN's parameter count (and the paper's), layer types and output shape."""
    from parallel_vision.models.keras_cnn import PAPER_TOTAL_PARAMETERS, build_keras_cnn

    model = build_keras_cnn()
    print(json.dumps({"params": model.count_params(), "paper": PAPER_TOTAL_PARAMETERS,
                      "layers": [type(layer).__name__ for layer in model.layers],
                      "output": list(model.output_shape)}))


def predict(out: str, data_dir: str, n_test: str) -> None:
    """The classes OUT/model.keras predicts for the first N_TEST test images, normalised by hand."""
    import keras

    from parallel_vision.data import DATASETS, load

    x, _ = load("mnist", "test", data_dir)
    spec = DATASETS["mnist"]
    x = ((x[: int(n_test)].astype("float32") / 255.0 - spec.mean) / spec.std)[..., None]
    model = keras.models.load_model(Path(out) / "model.keras")
    print(np.argmax(model.predict(x, batch_size=2000, verbose=0), axis=1).tolist())


def run_under_tf_config(data_dir: str, out: str) -> None:
    """A multiworker run under the caller's TF_CONFIG (the engine would run in this very process):
    prints `ErrorType|message`, then whether TensorFlow got imported (not JSON)."""
    from parallel_vision.config import RunConfig
    from parallel_vision.errors import PVisionError
    from parallel_vision.launch import run

    cfg = RunConfig(framework="tensorflow", strategy="multiworker", workers=2, limit_train=512, batch_size=128,
                    data_dir=data_dir, out_dir=out)
    try:
        run(cfg, progress=False)
    except PVisionError as exc:
        print(type(exc).__name__ + "|" + str(exc))
    print("tensorflow imported:", "tensorflow" in sys.modules)


def lr_sequence(config_json: str, n_train: str) -> None:
    """The learning rate Keras applies at each optimiser step of CONFIG under the TF engine's schedule: the
    schedule read at the micro-step of each update (s·K + K − 1), as the optimiser reads it."""
    import keras

    from parallel_vision.config import RunConfig
    from parallel_vision.engines.common import steps_per_epoch
    from parallel_vision.engines.tensorflow.model import make_optimizer

    cfg = RunConfig.from_json(config_json)
    optimizer = make_optimizer(keras, cfg, int(n_train))
    steps = steps_per_epoch(int(n_train), cfg.batch_size) * cfg.epochs
    k = cfg.grad_accum
    rate = optimizer._learning_rate
    print(json.dumps([float(rate(s * k + k - 1)) for s in range(steps)] if callable(rate) else [float(rate)] * steps))


PROBES: dict[str, Callable[..., None]] = {
    "lr-sequence": lr_sequence,
    "model-summary": model_summary,
    "predict": predict,
    "run-under-tf-config": run_under_tf_config,
}


if __name__ == "__main__":
    PROBES[sys.argv[1]](*sys.argv[2:])
