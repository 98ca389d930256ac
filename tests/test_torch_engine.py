"""The PyTorch engine on small real MNIST subsets: schema, exact evaluation, DDP parity, ports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from parallel_vision.config import RunConfig  # noqa: E402
from parallel_vision.errors import ConfigError  # noqa: E402
from parallel_vision.launch import run  # noqa: E402
from parallel_vision.results import schema  # noqa: E402
from shared_runs import TORCH_DDP, TORCH_SMALL  # noqa: E402

pytestmark = pytest.mark.slow

SMALL = TORCH_SMALL  # CPU even where a GPU is present: the ddp tests need 2 workers (tests/shared_runs.py)


def _cfg(data_dir: Path, out: Path, **changes: object) -> RunConfig:
    base = dict(SMALL, data_dir=str(data_dir), out_dir=str(out))
    base.update(changes)
    return RunConfig(**base)  # type: ignore[arg-type]


def _check_full_schema(out: Path, n_test: int) -> dict:
    data = json.loads((out / "result.json").read_text())
    assert set(schema.TOP_LEVEL_KEYS) <= set(data)
    assert data["schema_version"] == schema.SCHEMA_VERSION and data["status"] == "complete"
    assert set(schema.SUMMARY_KEYS) <= set(data["summary"])
    assert set(schema.TIMING_KEYS) <= set(data["timing"])
    for record in data["epochs"]:
        assert set(schema.EPOCH_KEYS) <= set(record)
        assert record["epoch_time_s"] > 0 and record["images_per_s"] > 0
    assert data["summary"]["n_test_evaluated"] == n_test
    assert data["environment"]["framework"] == "torch"
    assert sum(data["classification_report"][c]["support"] for c in map(str, range(10))) == n_test
    assert np.asarray(data["confusion_matrix"]).sum() == n_test
    preds = np.load(out / "predictions.npy")
    assert preds.shape == (n_test,)
    assert list((out / "tb").glob("events.out.tfevents.*")), "TensorBoard events missing"
    return data


def _test_labels(data_dir: Path, n: int) -> np.ndarray:
    from parallel_vision.data import load

    return load("mnist", "test", data_dir)[1][:n]


def test_single_one_epoch_full_schema_and_loadable_model(data_dir: Path, trained: Any) -> None:
    import torch

    from parallel_vision.models.torch_cnn import PaperCNN

    result = trained(**SMALL)  # trained once per session (test_accuracy_contract.py checks it too)
    out = result.out_dir
    data = _check_full_schema(out, 500)
    assert result.summary == data["summary"]
    # The predictions are in test-set order: accuracy recomputed from them equals the reported one.
    preds = np.load(out / "predictions.npy")
    assert np.mean(preds == _test_labels(data_dir, 500)) == pytest.approx(data["summary"]["test_accuracy"])
    assert data["summary"]["test_accuracy"] > 0.25  # well above chance (0.1) after 8 steps
    assert data["environment"]["fused_bn_blocks"] == 2  # the CPU default: both pooled blocks fused
    state = torch.load(out / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    model = PaperCNN()
    model.load_state_dict(state)


def test_ddp_two_workers_evaluates_each_test_image_exactly_once(data_dir: Path, trained: Any) -> None:
    # 499 test images: not divisible by 2, so padding or dropping would show.
    assert TORCH_DDP["limit_test"] == 499
    out = trained(**TORCH_DDP).out_dir  # trained once per session (test_accuracy_contract.py checks it too)
    data = _check_full_schema(out, 499)
    assert data["summary"]["world_size"] == 2 and data["summary"]["per_worker_batch"] == 128
    preds = np.load(out / "predictions.npy")
    assert np.mean(preds == _test_labels(data_dir, 499)) == pytest.approx(data["summary"]["test_accuracy"])
    assert data["epochs"][0]["comm_time_s"] is not None and data["epochs"][0]["comm_time_s"] > 0
    assert data["environment"]["backend"] == "gloo"
    # every rank's step times, gathered once at the end (tests/test_stragglers.py slows one on purpose)
    per_rank = data["summary"]["per_rank"]
    assert [e["rank"] for e in per_rank] == [0, 1] and [e["steps"] for e in per_rank] == [8, 8]
    assert all(e["step_time_s"]["median"] > 0 and e["comm_wait_s"]["max"] > 0 for e in per_rank)


def _max_weight_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())


def test_ddp_with_syncbn_matches_single_device_weights(data_dir: Path, tmp_path: Path) -> None:
    """Lightning-style parity: the same global batch over 1 or 2 workers gives the same model.

    SGD (Adam's step normalisation turns float noise in near-zero gradients into
    full-size steps) and contiguous tensors (PyTorch's channels_last BatchNorm on
    CPU computes its statistics with ~1e-4 relative error: see docs/performance.md).
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    common = dict(limit_train=768, batch_size=256, dropout=0.0, tensorboard=False, threads_per_worker=1,
                  optimizer="sgd", lr=0.05, memory_format="contiguous")
    # The three runs train at once, each started by launch.run in its own thread: one thread per worker, so
    # their numbers do not depend on what else runs, and most of each run is starting Python and torch.
    configs = [_cfg(data_dir, tmp_path / "s", **common),
               _cfg(data_dir, tmp_path / "d", strategy="ddp", workers=2, sync_batchnorm=True, **common),
               _cfg(data_dir, tmp_path / "n", strategy="ddp", workers=2, **common)]
    with ThreadPoolExecutor(len(configs)) as pool:
        for future in [pool.submit(run, cfg, progress=False) for cfg in configs]:
            future.result()
    single = torch.load(tmp_path / "s" / "model.pt", weights_only=True)
    ddp = torch.load(tmp_path / "d" / "model.pt", weights_only=True)
    assert single.keys() == ddp.keys()
    for key, value in single.items():
        if value.is_floating_point():
            torch.testing.assert_close(ddp[key], value, rtol=1e-3, atol=1e-4)
    # Without synchronised statistics each replica normalises its own shard: a different computation.
    plain = torch.load(tmp_path / "n" / "model.pt", weights_only=True)
    assert _max_weight_diff(plain, single) > 10 * _max_weight_diff(ddp, single)


def test_same_seed_gives_same_metrics(data_dir: Path, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # The four runs train at once, each started by launch.run in its own thread: the same number of threads per
    # run whatever else runs, so the same bits (most of each run is starting Python and torch, which overlaps).
    configs = {name: _cfg(data_dir, tmp_path / name, limit_train=512, tensorboard=False, **changes)
               for name, changes in (("a", {}), ("b", {}), ("c", {"seed": 1}), ("d", {"fused_bn": False}),
                                     ("e", {"inplace_bn_backward": False}))}
    with ThreadPoolExecutor(len(configs)) as pool:
        futures = {name: pool.submit(run, cfg, progress=False) for name, cfg in configs.items()}
        a, b, c, d, e = (futures[name].result() for name in "abcde")
    keys = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    assert [a.epochs[0][k] for k in keys] == [b.epochs[0][k] for k in keys]
    assert c.epochs[0]["train_loss"] != a.epochs[0]["train_loss"]
    # The reference BatchNorm/ReLU/pool modules train to the same numbers as the fused step with ATen's BatchNorm
    # backward, bit for bit; the default's in-place backward differs from both by fp32 rounding only.
    assert [d.epochs[0][k] for k in keys] == [e.epochs[0][k] for k in keys]
    assert json.loads((tmp_path / "d" / "result.json").read_text())["environment"]["fused_bn_blocks"] == 0
    assert a.epochs[0]["train_loss"] == pytest.approx(e.epochs[0]["train_loss"], rel=1e-3)
    assert a.epochs[0]["test_accuracy"] == pytest.approx(e.epochs[0]["test_accuracy"], abs=0.01)


def test_dp_without_gpus_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA devices")
    with pytest.raises(ConfigError, match="needs >= 2 CUDA devices"):
        run(_cfg(data_dir, tmp_path / "dp", strategy="dp", workers=2, device="auto"), progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "parallel_vision", "train", "--strategy", "dp", "--workers", "2",
         "--data-dir", str(data_dir), "--out", str(tmp_path / "dp2"), "--limit-train", "512",
         "--batch-size", "256", "--device", "auto"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "needs >= 2 CUDA devices" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_more_cpu_workers_than_cores_is_refused(data_dir: Path, tmp_path: Path) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match="usable cores"):
        run(_cfg(data_dir, tmp_path / "x", strategy="ddp", workers=2 * cores, batch_size=256 * cores),
            progress=False)


def test_two_concurrent_ddp_runs_do_not_collide_on_ports(data_dir: Path, tmp_path: Path) -> None:
    def start(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "parallel_vision", "train", "--strategy", "ddp", "--workers", "2",
             "--epochs", "1", "--batch-size", "256", "--limit-train", "512", "--limit-test", "200",
             "--threads", "1", "--device", "cpu", "--data-dir", str(data_dir), "--out", str(tmp_path / name), "--quiet",
             "--no-tensorboard"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    procs = [start("first"), start("second")]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for name in ("first", "second"):
        assert json.loads((tmp_path / name / "result.json").read_text())["status"] == "complete"


def test_out_dir_holding_a_different_run_is_refused(data_dir: Path, tmp_path: Path, trained: Any) -> None:
    import shutil

    out = tmp_path / "o"  # a finished run's folder: a copy of the session's shared one (--out is not its identity)
    shutil.copytree(trained(**SMALL).out_dir, out)
    with pytest.raises(ConfigError, match="already holds a finished run"):
        run(_cfg(data_dir, out), progress=False)
    with pytest.raises(ConfigError, match="holds a different run"):
        run(_cfg(data_dir, out, seed=3), progress=False)
    assert json.loads((out / "result.json").read_text()) == trained(**SMALL).data  # refused: nothing written
