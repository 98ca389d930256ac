"""The launcher reads every engine's external job (torchrun, TF_CONFIG, KERAS_DISTRIBUTION_*) through the
engine's own `EngineSpec.cluster`, without importing a framework: world size, the --workers mismatch
line, the writer, the node layout, a worker's name, and the variables set for local multiworker runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from parallel_vision import strategies
from parallel_vision.config import RunConfig
from parallel_vision.engines import registry
from parallel_vision.errors import ConfigError
from parallel_vision.launch.cluster import external_cluster, is_writer, node_layout, worker_name, workers_under_launcher

FOREIGN = ("TF_CONFIG", "TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
           "GROUP_WORLD_SIZE", "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
           "KERAS_DISTRIBUTION_PROCESS_ID")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in FOREIGN:
        monkeypatch.delenv(var, raising=False)


def test_every_multi_process_strategy_declares_its_cluster() -> None:
    hooks = {name: (spec.cluster.strategies if spec.cluster else None) for name, spec in registry.engines().items()}
    assert hooks == {"jax": ("multiworker",), "tensorflow": ("multiworker",), "torch": ("ddp", "zero1", "fsdp", "pipeline", "tensor")}
    per_worker = {(s.framework, s.name) for s in strategies.STRATEGY_TABLE if s.processes == "per-worker"}
    assert per_worker == {(f, name) for f, hook in hooks.items() for name in hook or ()}


def test_no_job_described_means_a_plain_run() -> None:
    for framework, strategy in (("torch", "ddp"), ("tensorflow", "multiworker"), ("jax", "multiworker")):
        cfg = RunConfig(framework=framework, strategy=strategy, workers=2)
        assert not external_cluster(cfg)
        assert (is_writer(cfg), node_layout(cfg), worker_name(cfg)) == (True, {}, "this worker")
        assert workers_under_launcher(framework, strategy, None) == 1
        assert workers_under_launcher(framework, strategy, 3) == 3


def test_a_user_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    tf_config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "a:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    cfg = RunConfig(framework="tensorflow", strategy="multiworker", workers=3, batch_size=768)
    assert external_cluster(cfg)
    assert workers_under_launcher("tensorflow", "multiworker", None) == 3
    with pytest.raises(ConfigError, match=r"^--workers 2 but TF_CONFIG describes 3 training process\(es\) "
                                          r"\(leave --workers out to use it\)$"):
        workers_under_launcher("tensorflow", "multiworker", 2)
    assert is_writer(cfg) is False
    assert node_layout(cfg) == {"nodes": 2, "processes_per_node": 2}
    assert worker_name(cfg) == "TF_CONFIG task worker 1"
    # Another framework, or TensorFlow's single strategy, ignores it.
    assert not external_cluster(RunConfig(framework="tensorflow", strategy="single"))
    assert not external_cluster(RunConfig(framework="torch", strategy="ddp", workers=2))


def test_an_empty_tf_config_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CONFIG", "")
    with pytest.raises(ConfigError, match="strategy 'multiworker' needs TF_CONFIG"):
        workers_under_launcher("tensorflow", "multiworker", None)


def test_a_torchrun_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    for var, value in (("RANK", "3"), ("WORLD_SIZE", "4"), ("GROUP_WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "2")):
        monkeypatch.setenv(var, value)
    cfg = RunConfig(framework="torch", strategy="ddp", workers=4)
    assert external_cluster(cfg) and not external_cluster(RunConfig(framework="torch", strategy="single"))
    assert workers_under_launcher("torch", "ddp", None) == 4
    with pytest.raises(ConfigError, match=r"^--workers 2 but torchrun started WORLD_SIZE=4 processes "):
        workers_under_launcher("torch", "ddp", 2)
    assert is_writer(cfg) is False
    assert node_layout(cfg) == {"nodes": 2, "processes_per_node": 2}
    assert worker_name(cfg) == "torchrun rank 3 of 4"
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ConfigError, match="torchrun's WORLD_SIZE is not a number: 'four'"):
        workers_under_launcher("torch", "ddp", None)


def test_a_keras_distribution_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "h1:1,h2:1")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    cfg = RunConfig(framework="jax", strategy="multiworker", workers=2)
    assert external_cluster(cfg) and is_writer(cfg)
    with pytest.raises(ConfigError, match=r"^--workers 3 but KERAS_DISTRIBUTION_JOB_ADDRESSES describes 2 "
                                          r"process\(es\)"):
        workers_under_launcher("jax", "multiworker", 3)
    assert node_layout(cfg) == {"nodes": 2, "processes_per_node": 1}


def test_local_multiworker_variables_are_the_engines() -> None:
    addresses = ["127.0.0.1:1", "127.0.0.1:2"]
    tf = registry.get("tensorflow").cluster
    assert tf is not None and tf.worker_environment is not None
    assert tf.worker_environment(addresses, 1) == {"TF_CONFIG": json.dumps(
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": 1}})}
    torch = registry.get("torch").cluster
    assert torch is not None and torch.worker_environment is None  # ddp spawns its ranks in its engine process


def test_reading_a_cluster_imports_no_framework() -> None:
    code = ("import json, os, sys\n"
            "os.environ['TF_CONFIG'] = json.dumps({'cluster': {'worker': ['a:1']}, 'task': {'type': 'worker', "
            "'index': 0}})\n"
            "from parallel_vision.launch.cluster import workers_under_launcher\n"
            "assert workers_under_launcher('tensorflow', 'multiworker', None) == 1\n"
            "print(sorted({'torch', 'tensorflow', 'jax', 'keras'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
