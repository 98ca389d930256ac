"""The TensorFlow engine's pieces that need no training and no TensorFlow: its modules import no framework
(TensorFlow is handed in), pinning takes the local rank, and a stopped run finishes through write_run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from parallel_vision.config import RunConfig
from parallel_vision.engines.tensorflow import setup
from parallel_vision.engines.tensorflow.outputs import Stopped, finish
from parallel_vision.engines.tensorflow.setup import Placement, TFRun
from parallel_vision.errors import RunInterrupted
from parallel_vision.results import schema

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "parallel_vision" / "engines" / "tensorflow"


def test_every_module_of_the_engine_imports_without_loading_a_framework() -> None:
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert {"engine", "setup", "data", "model", "evaluate", "clock", "outputs"} <= set(modules)
    code = (f"import importlib, sys\nfor m in {modules!r}:\n"
            "    importlib.import_module('parallel_vision.engines.tensorflow.' + m)\n"
            "print(sorted(f for f in ('tensorflow', 'keras', 'torch') if f in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


class _Pinned(Exception):
    pass


def test_pin_threads_takes_the_local_rank_of_a_multi_host_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker 1 of a two-host TF_CONFIG is the first task on its host: core slice 0, as torch's local rank."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(setup, "pin_to_cores", lambda threads, local_rank: calls.append((threads, local_rank)))

    def no_tensorflow() -> tuple[Any, Any]:
        raise _Pinned

    monkeypatch.setattr(setup, "import_tensorflow", no_tensorflow)
    cfg = RunConfig(framework="tensorflow", strategy="multiworker", workers=2, pin_threads=True, threads_per_worker=1)
    for workers, index, local in ((["h1:2222", "h2:2222"], 1, 0), (["h1:2222", "h1:2223"], 1, 1)):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
        with pytest.raises(_Pinned):
            setup.start_run(cfg)
        assert calls.pop() == (1, local)


def _run(tmp_path: Path, records: list[dict[str, Any]], writer: bool = True) -> TFRun:
    keras = SimpleNamespace(__version__="3.x", mixed_precision=SimpleNamespace(
        global_policy=lambda: SimpleNamespace(name="float32")))
    placement = Placement(strategy=SimpleNamespace(num_replicas_in_sync=2), devices=["/cpu:0", "/cpu:1"], gpus=[],
                          cross_device_ops="ReductionToOneDevice", world_size=2, is_writer=writer,
                          intra_op_threads=1, inter_op_threads=2)
    cfg = RunConfig(framework="tensorflow", strategy="mirrored", workers=2, epochs=3, out_dir=str(tmp_path))
    return TFRun(cfg, SimpleNamespace(__version__="2.x"), keras, placement, tmp_path,
                 {"startup_s": 1.0, "compile_s": None, "data_load_s": 0.5, "model_build_s": 0.2},
                 class_names=[str(i) for i in range(10)], n_train=1024, records=records)


def _record(epoch: int) -> dict[str, Any]:
    return {"epoch": epoch, "train_loss": 0.5, "train_accuracy": 0.8, "test_loss": 0.4, "test_accuracy": 0.85,
            "epoch_time_s": 2.0, "images_per_s": 512.0, "data_time_s": 0.1, "compute_time_s": 1.9,
            "comm_time_s": None, "eval_time_s": 0.25, "n_train_images": 1024, "n_test_evaluated": 200}


def test_a_stopped_run_writes_an_incomplete_result_and_raises(tmp_path: Path) -> None:
    run = _run(tmp_path, [_record(1), _record(2)])
    with pytest.raises(RunInterrupted) as info:
        finish(run, Stopped(exit_code=143, signal_name="SIGTERM"))
    assert info.value.exit_code == 143
    assert str(info.value) == "stopped by SIGTERM: 2 finished epoch(s) kept; continue with --resume"
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["status"] == "incomplete" and data["epochs"] == run.records
    assert list(schema.TOP_LEVEL_KEYS) == [k for k in data if k in schema.TOP_LEVEL_KEYS]
    assert "reliability" not in data
    assert data["artifacts"] == {"backup": "tf_backup", "tensorboard": "tb"}
    assert data["timing"]["eval_total_s"] == 0.5 and data["timing"]["final_eval_s"] is None
    assert data["environment"]["num_replicas_in_sync"] == 2 and data["summary"]["world_size"] == 2
    assert data["confusion_matrix"] == [] and not (tmp_path / "predictions.npy").exists()


def test_a_run_stopped_before_any_epoch_or_on_another_worker_writes_nothing(tmp_path: Path) -> None:
    for run, message in ((_run(tmp_path, []), "no epoch had finished"),
                         (_run(tmp_path, [_record(1)], writer=False), "no epoch had finished")):
        with pytest.raises(RunInterrupted, match=message) as info:
            finish(run, Stopped(exit_code=130))
        assert info.value.exit_code == 130 and str(info.value).startswith("stopped by SIGINT: ")
    assert list(tmp_path.iterdir()) == []
