"""The accuracy a run reports is the accuracy of the model it hands over, in every engine and strategy.

For one short run of each strategy: `summary.test_accuracy` must equal, exactly, the accuracy
recomputed from `predictions.npy`, from the confusion matrix, and from the saved model reloaded
in a fresh process. (TensorFlow's Mirrored and MultiWorkerMirrored once reported replica-local
BatchNorm statistics that differed from the saved model's: 23.16 % reported vs 23.83 % saved.)

The runs are the engine files' own (tests/shared_runs.py: 7-8 steps each; 500, 499 and, for multiworker,
1000 test images), trained once per session and checked here too: all at once, before the first case, and
reloaded in one fresh process per framework (the assertions read no timing; most of each run, and of each
reload, is starting Python and its framework).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parallel_vision.data import load
from shared_runs import (
    TF_MIRRORED,
    TF_MULTIWORKER,
    TF_SMALL,
    TORCH_DDP,
    TORCH_FSDP,
    TORCH_PIPELINE,
    TORCH_SMALL,
    TORCH_TENSOR,
    TORCH_ZERO1,  # tests/ on sys.path
)

pytestmark = pytest.mark.slow

HAS_TF = importlib.util.find_spec("tensorflow") is not None
NO_TF = pytest.mark.skipif(not HAS_TF, reason="no TensorFlow")
CASES = [
    pytest.param(TORCH_SMALL, id="torch-single-1"),
    pytest.param(TORCH_DDP, id="torch-ddp-2"),
    pytest.param(TORCH_ZERO1, id="torch-zero1-2"),
    pytest.param(TORCH_FSDP, id="torch-fsdp-2"),
    pytest.param(TORCH_PIPELINE, id="torch-pipeline-2"),  # test_pipeline.py's run: 100 test images from the last stage
    pytest.param(TORCH_TENSOR, id="torch-tensor-2"),  # the run test_tensor_parallel.py checks: only a reload more
    pytest.param(TF_SMALL, id="tensorflow-single-1", marks=NO_TF),
    pytest.param(TF_MIRRORED, id="tensorflow-mirrored-2", marks=NO_TF),
    pytest.param(TF_MULTIWORKER, id="tensorflow-multiworker-2", marks=NO_TF),
]


def _configs() -> list[dict[str, Any]]:
    """The cases' configurations this machine can run."""
    return [p.values[0] for p in CASES if HAS_TF or p.values[0].get("framework", "torch") == "torch"]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def reloaded(trained: Any) -> dict[Path, np.ndarray]:
    """Every case trained (together, once per session), then each saved model's predictions from a fresh process:
    one per framework (reload_predict.py takes several runs of one framework), both at once."""
    results = trained.together(*_configs())
    by_framework: dict[str, list[Path]] = {}
    for result in results:
        by_framework.setdefault(result.data["config"]["framework"], []).append(result.out_dir)
    procs = {fw: subprocess.Popen([sys.executable, str(Path(__file__).parent / "reload_predict.py"), *map(str, outs)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for fw, outs in by_framework.items()}
    predictions: dict[Path, np.ndarray] = {}
    try:
        for fw, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            lines = out.strip().splitlines()[-len(by_framework[fw]):]
            for folder, line in zip(by_framework[fw], lines, strict=True):
                predictions[folder] = np.asarray(json.loads(line))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return predictions


@pytest.mark.parametrize("config", CASES)
def test_reported_accuracy_is_the_saved_models(data_dir: Path, trained: Any, reloaded: dict[Path, np.ndarray],
                                               config: dict[str, Any]) -> None:
    result = trained(**config)
    out, data = result.out_dir, result.data
    assert (data["config"]["framework"], data["config"]["strategy"]) == (
        config.get("framework", "torch"), config.get("strategy", "single"))
    n_test = config["limit_test"]
    reported = data["summary"]["test_accuracy"]
    labels = load("mnist", "test", data_dir)[1][:n_test]

    predictions = np.load(out / "predictions.npy")
    assert predictions.shape == (n_test,)
    assert reported == float(np.mean(predictions == labels))
    matrix = np.asarray(data["confusion_matrix"])
    assert reported == float(np.trace(matrix) / matrix.sum())
    assert data["epochs"][-1]["test_accuracy"] == reported

    assert np.array_equal(reloaded[out], predictions)  # the saved model, reloaded in a fresh process
