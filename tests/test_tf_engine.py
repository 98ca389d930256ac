"""The TensorFlow engine on small real MNIST subsets: schema, exact evaluation, strategies, errors.

TensorFlow is never imported in the pytest process (torch tests share it): every run goes
through `launch.run`, which trains in a child process, and anything else that needs Keras
runs in a subprocess (tests/tf_probe.py).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from parallel_vision.config import RunConfig  # noqa: E402
from parallel_vision.launch import run  # noqa: E402
from parallel_vision.results import schema  # noqa: E402
from shared_runs import TF_MIRRORED, TF_MULTIWORKER, TF_SMALL  # noqa: E402
from tf_probe import run_probe  # noqa: E402

pytestmark = [
    pytest.mark.tensorflow,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed"),
]

SMALL = TF_SMALL  # 2000 images in 7 steps of 256, 500 test images (tests/shared_runs.py)


def _cfg(data_dir: Path, out: Path, **changes: Any) -> RunConfig:
    base = dict(SMALL, data_dir=str(data_dir), out_dir=str(out))
    base.update(changes)
    return RunConfig(**base)


def _check_full_schema(out: Path, n_test: int, n_train_images: int) -> dict[str, Any]:
    data = json.loads((out / "result.json").read_text())
    assert list(schema.TOP_LEVEL_KEYS) == [k for k in data if k in schema.TOP_LEVEL_KEYS]
    assert data["schema_version"] == schema.SCHEMA_VERSION and data["status"] == "complete"
    optional = set(schema.LEVER_SUMMARY_KEYS) | set(schema.PARALLELISM_SUMMARY_KEYS)
    assert set(schema.SUMMARY_KEYS) <= set(data["summary"]) <= set(schema.SUMMARY_KEYS) | optional
    assert set(data["timing"]) == set(schema.TIMING_KEYS)
    for record in data["epochs"]:
        assert set(record) == set(schema.EPOCH_KEYS) | set(schema.OPTIONAL_EPOCH_KEYS)
        assert record["epoch_time_s"] > 0 and record["images_per_s"] > 0 and record["eval_time_s"] > 0
        assert record["n_test_evaluated"] == n_test
        assert record["n_train_images"] == n_train_images
        assert record["comm_time_s"] is None
        assert 0 <= record["data_time_s"] < record["epoch_time_s"]
        assert 0.0 <= record["test_accuracy"] <= 1.0 and np.isfinite(record["test_loss"])
    assert data["summary"]["n_test_evaluated"] == n_test
    env = data["environment"]
    assert env["framework"] == "tensorflow" and env["tf_version"] and env["keras_version"]
    assert isinstance(env["devices"], list) and isinstance(env["gpus"], list)
    assert sum(data["classification_report"][c]["support"] for c in map(str, range(10))) == n_test
    assert np.asarray(data["confusion_matrix"]).sum() == n_test
    assert data["artifacts"] == {
        "predictions": "predictions.npy", "model": "model.keras", "tensorboard": "tb"
    }
    preds = np.load(out / "predictions.npy")
    assert preds.shape == (n_test,) and preds.dtype == np.int64
    assert list((out / "tb").glob("events.out.tfevents.*")), "TensorBoard events missing"
    assert not list(out.glob(".model-*")), "temporary model file left behind"
    return data


def _test_labels(data_dir: Path, n: int) -> np.ndarray:
    from parallel_vision.data import load

    return load("mnist", "test", data_dir)[1][:n]


def _check_predictions(data: dict[str, Any], out: Path, data_dir: Path, n_test: int) -> None:
    """predictions.npy agrees with the labels at the recorded accuracy, and with model.keras."""
    preds = np.load(out / "predictions.npy")
    accuracy = float((preds == _test_labels(data_dir, n_test)).mean())
    assert accuracy == data["summary"]["test_accuracy"]  # exactly: the reported model is the saved one
    reloaded = run_probe("predict", str(out), str(data_dir), str(n_test))
    assert np.array_equal(np.asarray(json.loads(reloaded.strip().splitlines()[-1])), preds)


# --------------------------------------------------------------------------- the model
def test_keras_model_is_fig2_with_906186_parameters() -> None:
    out = run_probe("model-summary")
    info = json.loads(out.strip().splitlines()[-1])
    assert info["params"] == info["paper"] == 906_186
    conv = ["Conv2D", "BatchNormalization", "ReLU"]
    dense = ["Dense", "BatchNormalization", "ReLU", "Dropout"]
    assert info["layers"] == (
        conv + conv + ["MaxPooling2D"] + conv + ["MaxPooling2D", "Flatten", "Dropout"]
        + dense + dense + ["Dense"]
    )
    assert info["output"] == [None, 10]


# --------------------------------------------------------------------------- single
@pytest.fixture(scope="module")
def single_run(trained: Any) -> tuple[Path, dict[str, Any]]:
    result = trained(**SMALL)  # trained once per session (test_accuracy_contract.py checks it too)
    return result.out_dir, result.data


def test_single_one_epoch_full_schema_and_loadable_model(
    single_run: tuple[Path, dict[str, Any]], data_dir: Path
) -> None:
    out, _ = single_run
    data = _check_full_schema(out, n_test=500, n_train_images=7 * 256)
    assert data["summary"]["world_size"] == 1 and data["summary"]["steps_per_epoch"] == 7
    assert data["environment"]["devices"] == ["/cpu:0"]
    assert data["environment"]["num_replicas_in_sync"] == 1
    _check_predictions(data, out, data_dir, 500)


def test_single_same_seed_twice_gives_the_same_numbers(
    single_run: tuple[Path, dict[str, Any]], data_dir: Path, tmp_path: Path
) -> None:
    _, first = single_run
    again = run(_cfg(data_dir, tmp_path / "again"), progress=False).data
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert again["epochs"][0][key] == first["epochs"][0][key], key
    assert np.array_equal(np.load(tmp_path / "again" / "predictions.npy"),
                          np.load(Path(single_run[0]) / "predictions.npy"))


# --------------------------------------------------------------------------- mirrored
def test_mirrored_over_two_logical_cpus(data_dir: Path, trained: Any) -> None:
    # 500 test images at eval batch 2000 split 500/0 over the two replicas: the empty part
    # must neither crash nor count, and every image is still evaluated exactly once.
    assert TF_MIRRORED["eval_batch_size"] == 2000 and TF_MIRRORED["limit_test"] == 500
    out = trained(**TF_MIRRORED).out_dir  # trained once per session (test_accuracy_contract.py checks it too)
    data = _check_full_schema(out, n_test=500, n_train_images=7 * 256)
    env = data["environment"]
    assert env["devices"] == ["/cpu:0", "/cpu:1"] and env["num_replicas_in_sync"] == 2
    assert env["cross_device_ops"] == "ReductionToOneDevice"
    assert data["summary"]["world_size"] == 2 and data["summary"]["per_worker_batch"] == 128
    _check_predictions(data, out, data_dir, 500)


# --------------------------------------------------------------------------- multiworker
def test_multiworker_two_local_workers_write_exactly_one_result(trained: Any) -> None:
    # 1000 test images in eval batches of 300: the last batch is partial (tests/shared_runs.py)
    assert (TF_MULTIWORKER["limit_test"], TF_MULTIWORKER["eval_batch_size"]) == (1000, 300)
    out = trained(**TF_MULTIWORKER).out_dir  # trained once per session (test_accuracy_contract.py checks it too)
    assert [p.relative_to(out) for p in out.rglob("result.json")] == [Path("result.json")]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "config.json", "model.keras", "predictions.npy", "result.json"
    ]
    data = json.loads((out / "result.json").read_text())
    assert data["status"] == "complete"
    assert data["summary"]["world_size"] == 2 and data["summary"]["n_test_evaluated"] == 1000
    assert data["epochs"][0]["n_train_images"] == 8 * 512
    assert data["environment"]["num_replicas_in_sync"] == 2
    assert len(data["environment"]["cluster"]["worker"]) == 2
    assert np.load(out / "predictions.npy").shape == (1000,)
    for log in (out / "logs").glob("worker-*.log"):  # the other worker stays quiet
        assert "Traceback" not in log.read_text()


def test_bad_tf_config_is_a_one_line_config_error(data_dir: Path, tmp_path: Path) -> None:
    # Under a user-provided TF_CONFIG the engine runs in the calling process, so this runs in
    # a subprocess (a valid TF_CONFIG would import TensorFlow there).
    bad = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]},
                      "task": {"type": "worker", "index": 0}})
    for tf_config, fragment in (("{oops", "not valid JSON"), (bad, "--workers 2")):
        lines = run_probe("run-under-tf-config", str(data_dir), str(tmp_path / "bad"),
                          TF_CONFIG=tf_config).strip().splitlines()
        kind, message = lines[0].split("|", 1)
        assert kind == "ConfigError" and fragment in message and "TF_CONFIG" in message
        assert lines[1] == "tensorflow imported: False"
