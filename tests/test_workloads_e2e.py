"""The model zoo trains end to end in both frameworks, on CIFAR-10 (a fixture archive in the canonical
format, pinned by sitecustomize in every engine process) and on synthetic data, and the report explains
the models' different scaling from the runs it is given.

Each run is checked as the accuracy contract demands: every test image evaluated once, the reported
accuracy recomputed from predictions.npy, and the saved model reloaded in a fresh process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_format import install_for_subprocesses, make_cifar  # tests/ is on sys.path

pytestmark = pytest.mark.slow

HAS_TF = importlib.util.find_spec("tensorflow") is not None
TF = pytest.mark.skipif(not HAS_TF, reason="no TensorFlow")
HERE = Path(__file__).parent
PER_BATCH, TEST_COUNT = 16, 24  # 80 training images in five batches, 24 test images


def pvision(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], capture_output=True, text=True,
                          env=dict(os.environ, PVISION_PROGRESS="0", **(env or {})), cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], object]:
    fx = make_cifar(per_batch=PER_BATCH, test_count=TEST_COUNT, seed=11)
    env = install_for_subprocesses(fx, tmp_path_factory.mktemp("cifar"))
    return env, fx


#: (framework, strategy, workers, model, augment): each model in each framework, one of them distributed.
CIFAR_RUNS = [
    ("torch", "single", 1, "resnet18", True),
    ("torch", "ddp", 2, "wide_mlp", False),
    ("tensorflow", "single", 1, "wide_mlp", False),
    ("tensorflow", "mirrored", 2, "resnet18", True),
]


@pytest.fixture(scope="module")
def cifar_runs(cifar: tuple[dict[str, str], object], tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, dict]:
    """Every CIFAR-10 run this machine can make, one after another (they are compute-bound: started at once they
    only slowed each other here), then each saved model reloaded in a fresh process: one per
    framework (tests/reload_predict.py takes several runs of one framework), both at once (mostly imports).
    case -> {"out", "returncode", "stderr", "reloaded" (predictions, or the reload's stderr)}."""
    env, _ = cifar
    root = tmp_path_factory.mktemp("cifar-runs")
    cases = [c for c in CIFAR_RUNS if HAS_TF or c[0] == "torch"]
    runs: dict[tuple, dict] = {}
    for i, (framework, strategy, workers, model, augment) in enumerate(cases):
        out = root / f"run{i}"
        args = ["train", "-f", framework, "-s", strategy, "-n", str(workers), "-m", model, "--dataset", "cifar10",
                "-b", "16", "-e", "1", "--no-tensorboard", "-q", "-o", str(out), *(["--augment"] if augment else [])]
        proc = pvision(*args, env=env)
        runs[cases[i]] = {"out": out, "returncode": proc.returncode, "stderr": proc.stderr}
    reloads: dict[str, tuple[subprocess.Popen, list[tuple]]] = {}
    try:
        for framework in ("torch", "tensorflow"):
            done = [c for c, r in runs.items() if c[0] == framework and r["returncode"] == 0]
            if done:
                reloads[framework] = (subprocess.Popen(
                    [sys.executable, str(HERE / "reload_predict.py"), *(str(runs[c]["out"]) for c in done)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **env)), done)
        for proc, done in reloads.values():
            stdout, stderr = proc.communicate(timeout=300)
            lines = stdout.strip().splitlines()[-len(done):] if proc.returncode == 0 else []
            for i, case in enumerate(done):
                runs[case]["reloaded"] = np.asarray(json.loads(lines[i])) if len(lines) == len(done) else stderr
    finally:
        for proc, _ in reloads.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return runs


@pytest.mark.parametrize(("framework", "strategy", "workers", "model", "augment"), [
    pytest.param(*case, marks=TF) if case[0] == "tensorflow" else case for case in CIFAR_RUNS])
def test_zoo_models_train_on_cifar10(cifar: tuple[dict[str, str], object], cifar_runs: dict[tuple, dict],
                                     framework: str, strategy: str, workers: int, model: str, augment: bool) -> None:
    _, fx = cifar
    run = cifar_runs[(framework, strategy, workers, model, augment)]
    out = run["out"]
    assert run["returncode"] == 0, run["stderr"][-3000:]

    data = json.loads((out / "result.json").read_text())
    w = data["workload"]
    assert (w["model"], w["dataset"], w["input_shape"], w["augment"]) == (model, "cifar10", [3, 32, 32], augment)
    assert w["accuracy_meaningful"] is True and w["gradient_bytes"] == 4 * w["parameters"]
    assert data["summary"]["n_test_evaluated"] == TEST_COUNT and data["summary"]["n_train"] == 5 * PER_BATCH
    predictions = np.load(out / "predictions.npy")
    assert data["summary"]["test_accuracy"] == float(np.mean(predictions == fx.labels["test"]))  # type: ignore[attr-defined]

    reloaded = run.get("reloaded")  # the saved model, reloaded in a fresh process
    assert isinstance(reloaded, np.ndarray), f"reload failed: {str(reloaded)[-2000:]}"
    assert np.array_equal(reloaded, predictions)


def test_the_report_explains_why_the_models_scale_differently(tmp_path: Path) -> None:
    """1 vs 2 workers of wide_mlp and the paper's CNN on synthetic images, then the report's models section.

    The four runs train at once (one thread per worker): the assertions below read which model sends more
    gradient per FLOP and that the all-reduce was timed, never how long a run took, and most of each run is
    starting Python and torch, which then overlaps instead of leaving a core idle."""
    root = tmp_path / "bench"
    env = dict(os.environ, PVISION_PROGRESS="0")
    jobs = {}
    for model in ("wide_mlp", "paper_cnn"):
        for strategy, workers in (("single", 1), ("ddp", 2)):
            out = root / "runs" / f"{model}-{strategy}"
            jobs[out.name] = subprocess.Popen(
                [sys.executable, "-m", "parallel_vision", "train", "-s", strategy, "-n", str(workers), "-m", model,
                 "--dataset", "synthetic", "-b", "32", "--limit-train", "64", "--limit-test", "32", "-e", "2",
                 "--threads", "1", "--device", "cpu", "--no-tensorboard", "-q", "-o", str(out)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        errors = {name: proc.communicate(timeout=600)[1] for name, proc in jobs.items()}
    finally:
        for proc in jobs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, proc in jobs.items():
        assert proc.returncode == 0, f"{name}: {errors[name][-3000:]}"
    data = json.loads((root / "runs" / "wide_mlp-ddp" / "result.json").read_text())
    assert data["workload"]["accuracy_meaningful"] is False
    assert data["epochs"][-1]["comm_time_s"] > 0  # DDP's all-reduce was timed

    proc = pvision("report", str(root), "--format", "md", "--peak-gflops", "100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (root / "report.md").read_text()
    section = report[report.index("Models: why they scale differently"):]
    section = section[: section.index("\n## ", 1)]
    assert "| wide_mlp | synthetic |" in section and "| paper_cnn | synthetic |" in section
    assert "MFU (%)" in section and "All-reduce share (%)" in section
    verdict = next(line for line in section.splitlines() if line.startswith("- Efficiency:"))
    assert "wide_mlp" in verdict and "paper_cnn" in verdict
    assert "all-reduce" in verdict and "GFLOP" in verdict or "bytes of gradient per kFLOP" in verdict
    assert "n/a (synthetic)" in report  # accuracy of random labels is not reported as a number
