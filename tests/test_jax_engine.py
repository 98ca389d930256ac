"""The JAX engine (Keras 3 on the JAX backend) on small real MNIST subsets: single, dp over 2 virtual CPU
devices, multiworker with 2 processes; exact evaluation, the saved model, refusals.

JAX is never imported in the pytest process (torch and TensorFlow tests share it): every run goes
through `launch.run`, which trains in a child process, and the reload runs in a subprocess.
"""

from __future__ import annotations

import importlib.util
import io
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
from parallel_vision.data import load
from parallel_vision.engines.jax import cluster as jax_cluster
from parallel_vision.errors import ConfigError
from parallel_vision.launch import run
from parallel_vision.results import schema
from shared_runs import JAX_SMALL  # tests/ on sys.path

HAS_JAX = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("keras") is not None
jax_runs = [pytest.mark.jax, pytest.mark.slow, pytest.mark.skipif(not HAS_JAX, reason="JAX is not installed")]

SMALL = {"framework": "jax", "limit_train": 1024, "batch_size": 256, "epochs": 1, "tensorboard": True}


def _cfg(data_dir: Path, out: Path, **changes: Any) -> RunConfig:
    return RunConfig(**dict(SMALL, data_dir=str(data_dir), out_dir=str(out), **changes))


def _labels(data_dir: Path, n: int) -> np.ndarray:
    return load("mnist", "test", data_dir)[1][:n]


def _check(out: Path, data_dir: Path, n_test: int, n_train_images: int) -> dict[str, Any]:
    """Schema, every test image once, the reported accuracy recomputed from predictions.npy."""
    data = json.loads((out / "result.json").read_text())
    assert list(schema.TOP_LEVEL_KEYS) == [k for k in data if k in schema.TOP_LEVEL_KEYS]
    assert data["status"] == "complete"
    optional = set(schema.LEVER_SUMMARY_KEYS) | set(schema.PARALLELISM_SUMMARY_KEYS)
    assert set(schema.SUMMARY_KEYS) <= set(data["summary"]) <= set(schema.SUMMARY_KEYS) | optional
    assert set(data["timing"]) == set(schema.TIMING_KEYS) and data["timing"]["compile_s"] > 0
    for record in data["epochs"]:
        assert set(record) == set(schema.EPOCH_KEYS) | set(schema.OPTIONAL_EPOCH_KEYS)
        assert record["n_test_evaluated"] == n_test and record["n_train_images"] == n_train_images
        assert record["comm_time_s"] is None and record["epoch_time_s"] > 0 and record["eval_time_s"] > 0
    env = data["environment"]
    assert env["framework"] == "jax" and env["keras_backend"] == "jax" and env["jax_version"]
    assert env["other_frameworks_loaded"] == []  # TensorFlow and torch never loaded in the engine process
    assert "XLA program" in env["comm_time_note"]
    predictions = np.load(out / "predictions.npy")
    assert predictions.shape == (n_test,) and predictions.dtype == np.int64
    reported = data["summary"]["test_accuracy"]
    assert reported == float(np.mean(predictions == _labels(data_dir, n_test)))
    matrix = np.asarray(data["confusion_matrix"])
    assert matrix.sum() == n_test and reported == float(np.trace(matrix) / n_test)
    return data


#: The file's three real runs (4 steps of 256 each): single evaluates all 10,000 test images; dp 500 at eval batch
#: 2000, one padded batch split over the two devices, each image once; multiworker 300 at eval batch 128. single is
#: the session's JAX_SMALL (tests/shared_runs.py), which tests/test_predict.py predicts from too.
assert dict(SMALL, tensorboard=True) == JAX_SMALL
RUNS: dict[str, dict[str, Any]] = {
    "single": {},
    "dp": {"strategy": "dp", "workers": 2, "device": "cpu", "limit_test": 500, "eval_batch_size": 2000},
    "mw": {"strategy": "multiworker", "workers": 2, "device": "cpu", "limit_test": 300, "eval_batch_size": 128,
           "tensorboard": False},
}


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, trained: Any) -> dict[str, Any]:
    """name -> (OUT, result.json), or the exception its run raised: the three runs train at once, each started
    by launch.run in its own thread, single through the session's `trained` (their assertions read no timing; most
    of each run is starting Python, JAX and XLA's compiler, which then overlaps), and single's and dp's saved models
    are reloaded by plain Keras in one fresh process (tests/reload_predict.py): `reloaded` in the dict."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path_factory.mktemp("jax")
    done: dict[str, Any] = {}
    with ThreadPoolExecutor(len(RUNS)) as pool:
        futures = {name: pool.submit(run, _cfg(data_dir, root / name, **changes), progress=False)
                   for name, changes in RUNS.items() if name != "single"}
        futures["single"] = pool.submit(trained, **JAX_SMALL)  # the only mktemp in a thread: no race
        for name, future in futures.items():
            try:
                result = future.result()
                done[name] = (Path(result.out_dir), result.data)
            except Exception as exc:  # noqa: BLE001 - raised again by the test that reads this run
                done[name] = exc
    outs = [done[name][0] for name in ("single", "dp") if not isinstance(done[name], Exception)]
    if outs:
        proc = subprocess.run([sys.executable, str(Path(__file__).parent / "reload_predict.py"), *map(str, outs)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.strip().splitlines()[-len(outs):]
        done["reloaded"] = {out: np.asarray(json.loads(line)) for out, line in zip(outs, lines, strict=True)}
    return done


def _get(runs: dict[str, Any], name: str) -> tuple[Path, dict[str, Any]]:
    if isinstance(runs[name], Exception):
        raise runs[name]
    return runs[name]


def test_single_evaluates_all_10000_and_the_saved_model_reproduces_them(runs: dict[str, Any], data_dir: Path) -> None:
    out, _ = _get(runs, "single")
    data = _check(out, data_dir, n_test=10_000, n_train_images=4 * 256)
    assert data["summary"]["world_size"] == 1 and data["environment"]["devices"] == ["cpu:0"]
    assert data["artifacts"] == {"predictions": "predictions.npy", "model": "model.keras", "tensorboard": "tb"}
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert not (out / "jax_backup").exists()  # a complete run leaves no backup behind
    assert np.array_equal(runs["reloaded"][out], np.load(out / "predictions.npy"))


def test_dp_over_two_virtual_cpu_devices_trains_like_single(runs: dict[str, Any], data_dir: Path) -> None:
    # 500 test images at eval batch 2000: one padded batch split over the two devices, each image once.
    out, _ = _get(runs, "dp")
    single = _get(runs, "single")
    data = _check(out, data_dir, n_test=500, n_train_images=4 * 256)
    env = data["environment"]
    assert env["devices"] == ["cpu:0", "cpu:1"] and env["virtual_cpu_devices"] is True
    assert env["num_replicas_in_sync"] == 2 and env["processes"] == 1
    assert data["summary"]["world_size"] == 2 and data["summary"]["per_worker_batch"] == 128
    # One SPMD program over the global batch (BatchNorm moments included): the maths of single, up to
    # reduction order and dropout bits drawn under a different sharding.
    assert data["epochs"][0]["train_loss"] == pytest.approx(single[1]["epochs"][0]["train_loss"], rel=2e-2)
    assert np.array_equal(runs["reloaded"][out], np.load(out / "predictions.npy"))


def test_multiworker_two_processes_write_exactly_one_result(runs: dict[str, Any], data_dir: Path) -> None:
    out, _ = _get(runs, "mw")
    assert [p.relative_to(out) for p in out.rglob("result.json")] == [Path("result.json")]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "config.json", "model.keras", "predictions.npy", "result.json"]
    data = _check(out, data_dir, n_test=300, n_train_images=4 * 256)
    env = data["environment"]
    assert env["processes"] == 2 and len(env["devices"]) == 2 and len(env["cluster"]) == 2
    assert env["cross_device_ops"] == "XLA all-reduce across processes (gloo)"
    for log in (out / "logs").glob("worker-*.log"):
        assert "Traceback" not in log.read_text()


for _test in (test_single_evaluates_all_10000_and_the_saved_model_reproduces_them,
              test_dp_over_two_virtual_cpu_devices_trains_like_single,
              test_multiworker_two_processes_write_exactly_one_result):
    for _mark in jax_runs:
        _mark(_test)


# --------------------------------------------------------------------------- refusals (no JAX needed)
def test_multiworker_with_more_processes_than_cores_is_refused_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match=f"{cores + 1} CPU workers requested but this machine has {cores}"):
        run(_cfg(data_dir, tmp_path / "x", strategy="multiworker", workers=cores + 1, device="cpu",
                 batch_size=256 * (cores + 1), limit_train=256 * (cores + 1)), progress=False)
    assert not (tmp_path / "x").exists()


def test_config_rules_for_jax() -> None:
    assert RunConfig(framework="jax", strategy="dp", workers=2, device="cpu").workers == 2  # virtual devices
    from parallel_vision.models import init as model_init

    assert model_init.adam_epsilon("jax", "framework") == 1e-7  # Keras on JAX: Keras' own default
    with pytest.raises(ConfigError, match="needs >= 2 CUDA devices"):
        RunConfig(framework="torch", strategy="dp", workers=2, device="cpu")
    with pytest.raises(ConfigError, match="jit_compile applies to the TensorFlow engine only; .*JAX engine always"):
        RunConfig(framework="jax", jit_compile=True)
    with pytest.raises(ConfigError, match="strategy for jax"):
        RunConfig(framework="jax", strategy="mirrored")
    with pytest.raises(ConfigError, match="use dp or multiworker"):
        RunConfig(framework="jax", workers=2)


def test_cluster_variables_are_checked_before_jax_starts() -> None:
    ok = jax_cluster.parse("10.0.0.1:1234,10.0.0.2:1234", "2", "1", 2)
    assert ok.world_size == 2 and ok.rank == 1 and not ok.is_writer and ok.coordinator == "10.0.0.1:1234"
    assert ok.hosts == 2 and ok.local_rank == 0
    for args, fragment in (((None, None, "0", 2), "needs KERAS_DISTRIBUTION_JOB_ADDRESSES"),
                           (("a:1,b:x", None, "0", 2), "host:port"),
                           (("a:1,b:2", "3", "0", 2), "NUM_PROCESSES=3"),
                           (("a:1,b:2", None, "2", 2), "out of range"),
                           (("a:1,b:2", None, "0", 3), "--workers 3")):
        with pytest.raises(ConfigError, match=fragment):
            jax_cluster.parse(*args)
    env = jax_cluster.worker_environment(["127.0.0.1:1", "127.0.0.1:2"], 1)
    assert env == {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "127.0.0.1:1,127.0.0.1:2",
                   "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}


# --------------------------------------------------------------------------- stop and resume (no JAX needed)
class _Variable:
    def __init__(self, value: Any) -> None:
        self.value = np.asarray(value)

    def assign(self, value: Any) -> None:
        self.value = np.asarray(value)


class _HostCopy:
    """The single-device Keras copy of a JAX run's Model, as backups use it: variables, save/load weights."""

    def __init__(self) -> None:
        self.trainable_variables = [_Variable(np.zeros(3))]
        self.non_trainable_variables = [_Variable(np.zeros(2))]
        self.optimizer = SimpleNamespace(variables=[_Variable(np.zeros(3))])

    def _all(self) -> list[_Variable]:
        return [*self.trainable_variables, *self.non_trainable_variables, *self.optimizer.variables]

    def save_weights(self, target: Any) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, *[v.value for v in self._all()])
        target.write(buffer.getvalue())

    def load_weights(self, path: str) -> None:
        with np.load(path) as saved:
            for i, variable in enumerate(self._all()):
                variable.assign(saved[f"arr_{i}"])


class _Shard:
    def __init__(self, value: Any) -> None:
        self.addressable_shards = [SimpleNamespace(data=np.asarray(value))]


def _fake_jax_run(tmp_path: Path, **config: Any) -> tuple[Any, Any, Any, Any, list[int]]:
    """A JAX run of 2 epochs × 4 steps at global batch 2 on 8 + 4 images, with JAX replaced by host arrays: the
    train step adds 1 to every weight and counts its images, the feeder hands arrays through."""
    from parallel_vision.engines.jax.data import Data
    from parallel_vision.engines.jax.model import Model
    from parallel_vision.engines.jax.setup import JaxRun

    cfg = RunConfig(framework="jax", epochs=2, batch_size=2, tensorboard=False, out_dir=str(tmp_path), **config)
    placement = SimpleNamespace(world_size=1, is_writer=True, cluster=None, processes=1)
    run = JaxRun(cfg, SimpleNamespace(block_until_ready=lambda tree: tree), None, placement, tmp_path,
                 {"startup_s": 1.0, "compile_s": 0.5}, class_names=[str(i) for i in range(10)], n_train=8, n_test=4)
    rng = np.random.default_rng(0)
    data = Data(x_train=rng.random((8, 2, 2, 1), np.float32), y_train=np.arange(8, dtype=np.int32) % 10,
                x_test=rng.random((4, 2, 2, 1), np.float32), y_test=np.arange(4, dtype=np.int64), input_shape=(2, 2, 1),
                steps=4, eval_batch=4)
    feeder = SimpleNamespace(put=lambda *arrays: arrays, replicate=lambda tree: tree, place=lambda tree, _: tree)
    steps: list[int] = []

    def train_step(state: Any, x: Any, y: Any) -> Any:
        trainable, non_trainable, slots, sums = state
        steps.append(len(steps) + 1)
        return ([t + 1 for t in trainable], non_trainable, [s + 1 for s in slots],
                (sums[0] + np.float32(0.5 * len(y)), sums[1] + np.int32(1), sums[2] + np.int32(len(y))))

    def eval_step(trainable: Any, non_trainable: Any, x: Any, y: Any) -> Any:
        return _Shard(0.25 * len(y)), _Shard(len(y) // 2), _Shard(len(y))

    host = _HostCopy()
    state = ([np.zeros(3)], [np.full(2, 7.0)], [np.zeros(3)], (np.float32(0), np.int32(0), np.int32(0)))
    model = Model(net=None, optimizer=None, host=host, train_step=train_step, eval_step=eval_step, state=state)
    return run, model, data, feeder, steps


def test_a_signal_stops_jax_training_after_its_step_and_resume_continues_from_the_backup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JAX-only paths of stop and resume (jax/train.py, jax/resume.py) around the Keras layer's
    bookkeeping: SIGTERM in epoch 2 ends the step, the run stops `incomplete` with epoch 1 kept (143); --resume
    loads epoch 1's backup into the replicated state and trains epoch 2 only."""
    import signal

    from parallel_vision.engines.jax import backup as jax_backup
    from parallel_vision.engines.jax.resume import restore
    from parallel_vision.engines.jax.train import fit
    from parallel_vision.engines.keras.outputs import Stopped, finish
    from parallel_vision.errors import RunInterrupted

    monkeypatch.setenv("PVISION_PROGRESS", "0")
    run, model, data, feeder, steps = _fake_jax_run(tmp_path)
    inner = model.train_step

    def signalled_step(state: Any, x: Any, y: Any) -> Any:
        if len(steps) == 5:  # epoch 2, step 2
            os.kill(os.getpid(), signal.SIGTERM)
        return inner(state, x, y)

    model.train_step = signalled_step
    outcome = fit(run, model, data, feeder)
    assert outcome == Stopped(exit_code=143, signal_name="SIGTERM") and len(steps) == 6
    assert [r["epoch"] for r in run.records] == [1] and run.records[0]["n_train_images"] == 8
    assert run.records[0]["train_loss"] == 0.5 and run.records[0]["test_accuracy"] == 0.5
    assert jax_backup.info(tmp_path)["epoch"] == 1 and run.reliability["backups_written"] == 1
    with pytest.raises(RunInterrupted, match="stopped by SIGTERM: 1 finished epoch") as info:
        finish(run, outcome, lambda run: {"framework": "jax"})
    assert info.value.exit_code == 143
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "incomplete"

    resumed, fresh, data, feeder, steps = _fake_jax_run(tmp_path, resume=True)
    restore(resumed, fresh, feeder)
    assert resumed.start_epoch == 1 and resumed.records == run.records
    assert np.array_equal(fresh.state[0][0], np.full(3, 4.0))  # epoch 1's four steps, loaded from the backup
    assert np.array_equal(fresh.state[1][0], np.full(2, 7.0)) and np.array_equal(fresh.state[2][0], np.full(3, 4.0))
    assert fit(resumed, fresh, data, feeder) is None and len(steps) == 4  # epoch 2 only
    assert [r["epoch"] for r in resumed.records] == [1, 2] and resumed.records[0] == run.records[0]
    assert jax_backup.info(tmp_path)["epoch"] == 2 and resumed.reliability["backups_written"] == 2
    assert resumed.reliability["resumed_from"] == [{"epoch": 1}]
