"""The Keras engines' pieces that need no training and no framework: their modules import no framework
(TensorFlow or JAX is handed in), pinning takes the local rank, and the Keras layer (engines/keras/) they share
is tested once per engine: a stopped run finishes through write_run, the epoch check, the epoch-end back-up,
restore under --resume, and a backup that meets a full disk."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from parallel_vision.config import RunConfig
from parallel_vision.engines.jax import backup as jax_backup
from parallel_vision.engines.jax import resume as jax_resume
from parallel_vision.engines.jax.model import Model
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.engines.keras import resume
from parallel_vision.engines.keras.epochs import epoch_checked
from parallel_vision.engines.keras.outputs import Stopped, finish
from parallel_vision.engines.tensorflow import outputs as tf_outputs
from parallel_vision.engines.tensorflow import resume as tf_resume
from parallel_vision.engines.tensorflow import setup
from parallel_vision.engines.tensorflow.setup import Placement, TFRun
from parallel_vision.errors import DiskFullError, EngineError, RunInterrupted
from parallel_vision.results import schema

ENGINES = Path(__file__).resolve().parents[1] / "src" / "parallel_vision" / "engines"
KERAS_ENGINES = ["tensorflow", "jax"]


@pytest.mark.parametrize(("package", "required"), [
    ("tensorflow", {"engine", "setup", "data", "model", "evaluate", "clock", "outputs"}),
    ("jax", {"engine", "setup", "data", "model", "evaluate", "train", "outputs"}),
    ("keras", {"run", "model", "backup", "resume", "epochs", "outputs"}),
])
def test_every_module_of_the_engine_imports_without_loading_a_framework(package: str, required: set[str]) -> None:
    modules = sorted(p.stem for p in (ENGINES / package).glob("*.py") if p.stem != "__init__")
    assert required <= set(modules)
    code = (f"import importlib, sys\nfor m in {modules!r}:\n"
            f"    importlib.import_module('parallel_vision.engines.{package}.' + m)\n"
            "print(sorted(f for f in ('tensorflow', 'keras', 'jax', 'torch') if f in sys.modules))\n")
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


def _run(tmp_path: Path, records: list[dict[str, Any]], writer: bool = True, engine: str = "tensorflow",
         **config: Any) -> Any:
    """A TFRun (mirrored over 2 CPUs) or a JaxRun (dp over 2 CPU devices) with fake backends."""
    keras = SimpleNamespace(__version__="3.x", mixed_precision=SimpleNamespace(
        global_policy=lambda: SimpleNamespace(name="float32")))
    timing = {"startup_s": 1.0, "compile_s": None, "data_load_s": 0.5, "model_build_s": 0.2}
    kept = {"class_names": [str(i) for i in range(10)], "n_train": 1024, "n_test": 200, "records": records}
    if engine == "tensorflow":
        placement: Any = Placement(strategy=SimpleNamespace(num_replicas_in_sync=2), devices=["/cpu:0", "/cpu:1"],
                                   gpus=[], cross_device_ops="ReductionToOneDevice", world_size=2, is_writer=writer,
                                   intra_op_threads=1, inter_op_threads=2)
        cfg = RunConfig(**dict(dict(framework="tensorflow", strategy="mirrored", workers=2, epochs=3,
                                    out_dir=str(tmp_path)), **config))
        return TFRun(cfg, SimpleNamespace(__version__="2.x"), keras, placement, tmp_path, timing, **kept)
    placement = SimpleNamespace(world_size=2, is_writer=writer, cluster=None, processes=1)
    cfg = RunConfig(**dict(dict(framework="jax", strategy="dp", workers=2, device="cpu", epochs=3,
                                out_dir=str(tmp_path)), **config))
    return JaxRun(cfg, SimpleNamespace(__version__="0.x"), keras, placement, tmp_path, timing, **kept)


def _environment(engine: str) -> Any:
    """TensorFlow's own environment block; JAX's (which imports jaxlib) reduced to what the test reads."""
    if engine == "tensorflow":
        return tf_outputs.environment
    return lambda run: {"framework": "jax", "num_replicas_in_sync": run.placement.world_size}


def _record(epoch: int) -> dict[str, Any]:
    return {"epoch": epoch, "train_loss": 0.5, "train_accuracy": 0.8, "test_loss": 0.4, "test_accuracy": 0.85,
            "epoch_time_s": 2.0, "images_per_s": 512.0, "data_time_s": 0.1, "compute_time_s": 1.9,
            "comm_time_s": None, "eval_time_s": 0.25, "n_train_images": 1024, "n_test_evaluated": 200}


@pytest.mark.parametrize("engine", KERAS_ENGINES)
def test_a_stopped_run_writes_an_incomplete_result_and_raises(tmp_path: Path, engine: str) -> None:
    run = _run(tmp_path, [_record(1), _record(2)], engine=engine)
    with pytest.raises(RunInterrupted) as info:
        finish(run, Stopped(exit_code=143, signal_name="SIGTERM"), _environment(engine))
    assert info.value.exit_code == 143
    assert str(info.value) == "stopped by SIGTERM: 2 finished epoch(s) kept; continue with --resume"
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["status"] == "incomplete" and data["epochs"] == run.records
    assert list(schema.TOP_LEVEL_KEYS) == [k for k in data if k in schema.TOP_LEVEL_KEYS]
    assert "reliability" not in data
    assert data["artifacts"] == {"backup": f"{'tf' if engine == 'tensorflow' else 'jax'}_backup", "tensorboard": "tb"}
    assert data["timing"]["eval_total_s"] == 0.5 and data["timing"]["final_eval_s"] is None
    assert data["environment"]["num_replicas_in_sync"] == 2 and data["summary"]["world_size"] == 2
    assert data["confusion_matrix"] == [] and not (tmp_path / "predictions.npy").exists()


@pytest.mark.parametrize("engine", KERAS_ENGINES)
def test_a_run_stopped_before_any_epoch_or_on_another_worker_writes_nothing(tmp_path: Path, engine: str) -> None:
    for run, message in ((_run(tmp_path, [], engine=engine), "no epoch had finished"),
                         (_run(tmp_path, [_record(1)], writer=False, engine=engine), "no epoch had finished")):
        with pytest.raises(RunInterrupted, match=message) as info:
            finish(run, Stopped(exit_code=130), _environment(engine))
        assert info.value.exit_code == 130 and str(info.value).startswith("stopped by SIGINT: ")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the Keras layer, per engine
@pytest.mark.parametrize("engine", KERAS_ENGINES)
def test_the_epoch_check_refuses_miscounted_epochs_and_a_diverged_loss(tmp_path: Path, engine: str) -> None:
    run = _run(tmp_path, [], engine=engine, batch_size=128)

    def check(seen: int = 1024, seen_test: int = 200, loss: float = 0.5) -> dict[str, Any]:
        return epoch_checked(run, number=2, steps=8, train_loss=loss, train_accuracy=0.75, seen=seen,
                             test=(0.4, 0.8, seen_test), times=(2.0, 0.5, 0.25))

    record = check()
    assert set(record) == set(schema.EPOCH_KEYS) | set(schema.OPTIONAL_EPOCH_KEYS)
    assert (record["epoch"], record["images_per_s"], record["compute_time_s"]) == (2, 512.0, 1.5)
    assert record["comm_time_s"] is None and record["n_test_evaluated"] == 200
    for kwargs, message in (({"seen": 896}, "epoch 2 trained on 896 images, expected 1024 (8 steps × global batch "
                                            "128)"),
                            ({"seen_test": 199}, "epoch 2 evaluated 199 test images, expected 200"),
                            ({"loss": float("nan")}, "training diverged: loss is nan in epoch 2")):
        with pytest.raises(EngineError) as info:
            check(**kwargs)
        assert str(info.value) == message


class _KerasModel:
    """What the backup writer asks of a Keras model: save_weights into a named buffer (or a path)."""

    def __init__(self, payload: bytes = b"weights") -> None:
        self.payload = payload
        self.loaded: list[str] = []

    def save_weights(self, target: Any) -> None:
        if hasattr(target, "write"):
            target.write(self.payload)
        else:
            Path(target).write_bytes(self.payload)

    def load_weights(self, path: str) -> None:
        self.loaded.append(path)


class _Variable:
    def __init__(self) -> None:
        self.value: Any = None

    def assign(self, value: Any) -> None:
        self.value = value


def _jax_model() -> Model:
    """A JAX engine Model without JAX: a replicated state of host arrays, a host copy with one variable each."""
    host = _KerasModel()
    host.trainable_variables, host.non_trainable_variables = [_Variable()], [_Variable()]  # type: ignore[attr-defined]
    host.optimizer = SimpleNamespace(variables=[_Variable()])  # type: ignore[attr-defined]
    state = ([np.full(3, 1.0)], [np.full(2, 2.0)], [np.full(3, 3.0)], (0.0, 0, 0))
    return Model(net=None, optimizer=None, host=host, train_step=None, eval_step=None, state=state)


def _back_up(engine: str, run: Any, model: Any, finished: int) -> None:
    (tf_resume if engine == "tensorflow" else jax_resume).back_up(run, model, finished)


@pytest.mark.parametrize("engine", KERAS_ENGINES)
def test_epoch_end_back_up_keeps_the_last_epoch_and_counts_itself(tmp_path: Path, engine: str) -> None:
    run = _run(tmp_path, [_record(1)], engine=engine)
    model = _KerasModel() if engine == "tensorflow" else _jax_model()
    _back_up(engine, run, model, 1)
    run.records.append(_record(2))
    _back_up(engine, run, model, 2)
    folder = run.backups.backup_dir(tmp_path)
    assert folder.name == ("tf_backup" if engine == "tensorflow" else "jax_backup")
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0002.weights.h5", "state.json"]
    state = run.backups.info(tmp_path)
    assert state["epoch"] == 2 and state["records"] == run.records and state["world_size"] == 2
    assert state["kind"] == run.backups.kind and state["config_identity"] == run.cfg.identity()
    assert run.reliability["backups_written"] == 2 and run.reliability["backup_time_s"] > 0
    assert state["reliability"]["backups_written"] == 2  # each backup counts itself
    if engine == "jax":  # the replicated state was copied into the host copy, which was saved
        host = model.host
        assert np.array_equal(host.trainable_variables[0].value, np.full(3, 1.0))
        assert np.array_equal(host.non_trainable_variables[0].value, np.full(2, 2.0))
        assert np.array_equal(host.optimizer.variables[0].value, np.full(3, 3.0))


def test_only_the_writing_jax_process_backs_up(tmp_path: Path) -> None:
    run = _run(tmp_path, [_record(1)], writer=False, engine="jax")
    jax_resume.back_up(run, _jax_model(), 1)
    assert not jax_backup.present(tmp_path) and run.reliability["backups_written"] == 0


@pytest.mark.parametrize("engine", KERAS_ENGINES)
def test_resume_takes_over_the_backup_records_and_counters(tmp_path: Path, engine: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    first = _run(tmp_path, [_record(1), _record(2)], engine=engine)
    resume.back_up(first, 2, _KerasModel)
    resumed = _run(tmp_path, [], engine=engine, resume=True)
    loaded: list[Any] = []
    resume.restore(resumed, load=loaded.append, agree=lambda epoch: pytest.fail("no cluster: nothing to agree"))
    assert [b.epoch for b in loaded] == [2] and loaded[0].weights.name == "epoch-0002.weights.h5"
    assert resumed.start_epoch == 2 and resumed.records == first.records
    assert resumed.reliability["backups_written"] == 1 and resumed.reliability["resumed_from"] == [{"epoch": 2}]
    state = resumed.backups.backup_dir(tmp_path) / "state.json"
    assert f"pvision: resuming after epoch 2 of 3 ({state})" in capsys.readouterr().err


@pytest.mark.parametrize("engine", KERAS_ENGINES)
def test_resume_without_a_backup_starts_over_and_a_cluster_agrees_first(tmp_path: Path, engine: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, [], engine=engine, resume=True)
    run.placement.cluster = object()  # a multi-process run: every process must agree on where to start
    agreed: list[int] = []
    resume.restore(run, load=lambda backup: pytest.fail("nothing to load"), agree=agreed.append)
    assert agreed == [0] and run.start_epoch == 0 and run.records == []
    assert f"pvision: no backup in {tmp_path}; starting from the beginning" in capsys.readouterr().err


@pytest.mark.parametrize("engine", KERAS_ENGINES)
def test_a_backup_on_a_full_disk_keeps_the_last_one(tmp_path: Path, engine: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC at the fsync of epoch 2's weights: a one-line DiskFullError naming them, epoch 1's backup intact."""
    run = _run(tmp_path, [_record(1)], engine=engine)
    model = _KerasModel() if engine == "tensorflow" else _jax_model()
    _back_up(engine, run, model, 1)
    run.records.append(_record(2))

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    folder = run.backups.backup_dir(tmp_path)
    with pytest.raises(DiskFullError) as info:
        _back_up(engine, run, model, 2)
    assert str(info.value) == (f"no space left on device writing {folder / 'epoch-0002.weights.h5'} (~7 B); the last "
                               f"epoch-end backup (after epoch 1) is kept in {folder}; continue with --resume once "
                               "space is freed")
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0001.weights.h5", "state.json"]
    assert run.backups.info(tmp_path)["epoch"] == 1
