"""Exact resume: a run SIGKILLed mid-epoch and resumed ends bit-identical to an uninterrupted run.

Each test runs the real command (`python -m parallel_vision train`) three times on a
small MNIST subset with `--deterministic` on the CPU: once straight through, once
killed from outside (SIGKILL to its whole process group: launcher, engine and DDP
workers) as soon as the checkpoint of a step in the middle of the second epoch
exists, and once more with `--resume`. The resumed model.pt must equal the
uninterrupted one tensor for tensor (torch.equal), and so must the epoch metrics. The strategies'
scenarios are played at once (tests/together.py), each with its own folders and processes.

The helpers here (bounded subprocesses, polling the checkpoint summary) are shared
with test_signals.py and test_elastic.py.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from together import outcome, play_together  # tests/ on sys.path

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

#: No single command of these tests may take longer (2 shared cores, torch imports included).
DEADLINE_S = 150.0
#: Variables of an enclosing launcher that must not leak into the runs we start.
FOREIGN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
               "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TF_CONFIG", "PVISION_LAUNCH_TIME",
               "PVISION_PROGRESS", "PVISION_ERROR_FILE")
#: 512 images in global batches of 64: 8 steps per epoch, a checkpoint every 3 steps (3, 6, 9, 12, 15)
#: besides the epoch ends, so the second epoch has mid-epoch checkpoints at its steps 1, 4 and 7. Tiny on
#: purpose: what is tested is the step count and the bits, and most of each run is starting Python and torch.
RUN = ["--limit-train", "512", "--limit-test", "200", "--batch-size", "64", "--epochs", "2",
       "--threads", "1", "--device", "cpu", "--seed", "0", "--deterministic", "--checkpoint-every", "3",
       "--quiet", "--no-tensorboard"]
FLOAT_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


# --------------------------------------------------------------------------- plumbing (shared)
def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(PYTHONUNBUFFERED="1", PVISION_DIST_TIMEOUT_S="60", **extra)
    return env


def train_argv(data_dir: Path, out: Path, *extra: str, run: list[str] = RUN) -> list[str]:
    return [sys.executable, "-m", "parallel_vision", "train", "--data-dir", str(data_dir), "--out", str(out),
            *run, *extra]


class Job:
    """A command in its own session (so its whole tree can be signalled), with captured output."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._handle = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, env=env or clean_env(), stdout=self._handle, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self) -> str:
        self._handle.flush()
        return self.log.read_text(errors="replace")

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            pytest.fail(f"{self.log.name}: still running after {timeout:.0f} s:\n{self.text()[-2000:]}")

    def close(self) -> None:
        self.signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self._handle.close()


def job_list() -> Iterator[list[Job]]:
    """Every Job a test starts; whatever is left of each process group is killed at the end, pass or fail."""
    started: list[Job] = []
    try:
        yield started
    finally:
        for job in started:
            job.close()


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    yield from job_list()


def start(jobs: list[Job], argv: list[str], log: Path, env: dict[str, str] | None = None) -> Job:
    job = Job(argv, log, env)
    jobs.append(job)
    return job


def finish(jobs: list[Job], argv: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    job = start(jobs, argv, log, env)
    code = job.wait()
    return code, job.text()


def checkpoint_info(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return None


def wait_for_checkpoint(job: Job, out: Path, wanted: Callable[[dict[str, Any]], bool],
                        timeout: float = DEADLINE_S) -> dict[str, Any]:
    """Poll OUT/checkpoint.json until `wanted(info)`, then until checkpoint.pt has caught up with it (the
    summary is written just before the checkpoint); fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = checkpoint_info(out)
        if info is not None and wanted(info):
            try:
                if (out / "checkpoint.pt").stat().st_mtime_ns >= (out / "checkpoint.json").stat().st_mtime_ns:
                    return info
            except OSError:
                pass
        if job.proc.poll() is not None:
            pytest.fail(f"the run ended (exit {job.proc.returncode}) before the checkpoint wanted:\n"
                        f"{job.text()[-2000:]}")
        time.sleep(0.01)
    pytest.fail(f"no wanted checkpoint within {timeout:.0f} s; last: {checkpoint_info(out)}")


def mid_second_epoch(info: dict[str, Any]) -> bool:
    return info["epoch"] == 1 and 0 < info["step"] < info["steps_per_epoch"]


def differing_tensors(a_dir: Path, b_dir: Path) -> list[str]:
    a = torch.load(a_dir / "model.pt", weights_only=True)
    b = torch.load(b_dir / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def result(out: Path) -> dict[str, Any]:
    return json.loads((out / "result.json").read_text())


def assert_same_metrics(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert len(a["epochs"]) == len(b["epochs"])
    for ea, eb in zip(a["epochs"], b["epochs"], strict=True):
        assert [ea[k] for k in FLOAT_METRICS] == [eb[k] for k in FLOAT_METRICS], (ea, eb)
    assert a["confusion_matrix"] == b["confusion_matrix"]


#: Uninterrupted runs of RUN per strategy, made once per session (test_signals.py compares with them too).
_STRAIGHT: dict[tuple[str, ...], Path] = {}
#: Uninterrupted runs started by `start_straight` and not yet waited for: (the job, its --out).
_PENDING: dict[tuple[str, ...], tuple[Job, Path]] = {}


def start_straight(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, jobs: list[Job], *strategy: str) -> None:
    """Start the uninterrupted run of `strategy` in the background unless it exists: it trains while the test
    interrupts and resumes its own run (--deterministic with one thread per worker: the bits do not depend on what
    else runs), and `straight_run` waits for it. Most of each run is starting Python and torch, which then overlaps."""
    pending = _PENDING.get(strategy)
    if pending is not None and pending[0] not in jobs:  # an earlier test's, killed when that test ended
        del _PENDING[strategy]
    if strategy in _STRAIGHT or strategy in _PENDING:
        return
    folder = tmp_path_factory.mktemp("straight")
    _PENDING[strategy] = (start(jobs, train_argv(data_dir, folder / "out", *strategy), folder / "straight.log"),
                          folder / "out")


def straight_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, jobs: list[Job], *strategy: str) -> Path:
    if strategy not in _STRAIGHT:
        start_straight(data_dir, tmp_path_factory, jobs, *strategy)
        job, out = _PENDING.pop(strategy)
        code = job.wait()
        assert code == 0, job.text()
        _STRAIGHT[strategy] = out
    return _STRAIGHT[strategy]


# --------------------------------------------------------------------------- the tests
def _kill_and_resume(data_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, jobs: list[Job],
                     *strategy: str) -> None:
    start_straight(data_dir, tmp_path_factory, jobs, *strategy)
    killed = tmp_path / "killed"

    job = start(jobs, train_argv(data_dir, killed, *strategy), tmp_path / "killed.log")
    wait_for_checkpoint(job, killed, mid_second_epoch)
    job.signal_group(signal.SIGKILL)
    job.wait(30)
    assert not (killed / "result.json").exists(), "the run was not killed mid-run"

    # The checkpoint is plain tensors and containers: weights_only loads it, the model has no `module.`.
    ckpt = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["world_size"]) == (1, 2 if strategy else 1)
    assert 0 < ckpt["step"] < 8 and len(ckpt["records"]) == 1 and len(ckpt["ranks"]) == ckpt["world_size"]
    assert not any(k.startswith("module.") for k in ckpt["model"])

    if not strategy:  # (the launcher's check, the same for every strategy: once is enough)
        code, text = finish(jobs, train_argv(data_dir, killed), tmp_path / "refused.log")
        assert code == 2 and "holds an unfinished run" in text and "--resume" in text, text

    code, text = finish(jobs, train_argv(data_dir, killed, *strategy, "--resume"), tmp_path / "resumed.log")
    assert code == 0, text
    assert re.search(r"pvision: resuming from epoch 2 step [1-7] of 8", text), text

    straight = straight_run(data_dir, tmp_path_factory, jobs, *strategy)
    assert differing_tensors(straight, killed) == []
    a, b = result(straight), result(killed)
    assert b["status"] == "complete"
    assert_same_metrics(a, b)
    assert b["reliability"]["resumed_from"][0]["epoch"] == 1
    assert not (killed / "checkpoint.pt").exists(), "a finished run keeps no checkpoint"
    assert np_equal(straight / "predictions.npy", killed / "predictions.npy")


def np_equal(a: Path, b: Path) -> bool:
    import numpy as np

    return bool(np.array_equal(np.load(a), np.load(b)))


#: The strategies killed and resumed on two workers: a new strategy's case is one more name here.
TWO_WORKER_STRATEGIES = ["ddp", "zero1", "fsdp", "pipeline"]


def _strategy_args(name: str) -> tuple[str, ...]:
    return () if name == "single" else ("--strategy", name, "--workers", "2")


@pytest.fixture(scope="module")
def killed_and_resumed(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    """Every strategy's scenario (`_kill_and_resume`) played at once, each in its own thread with its own folders
    and jobs (tests/together.py): the checks read bits and step counts, no timing, and --deterministic with one
    thread per worker gives the same bits whatever else runs; most of each run is starting Python and torch, which
    then overlaps. Each test re-raises its own scenario's outcome."""
    names = ["single", *TWO_WORKER_STRATEGIES]
    with contextlib.ExitStack() as stack:
        jobs = {name: stack.enter_context(contextlib.contextmanager(job_list)()) for name in names}
        folders = {name: tmp_path_factory.mktemp(f"resume-{name}") for name in names}  # made here, not in threads
        for name in names:
            start_straight(data_dir, tmp_path_factory, jobs[name], *_strategy_args(name))
        return play_together({name: functools.partial(_kill_and_resume, data_dir, folders[name], tmp_path_factory,
                                                      jobs[name], *_strategy_args(name)) for name in names})


@pytest.mark.timeout(600)  # the module's scenarios, all at once, are set up within the first test's time
def test_single_killed_mid_epoch_resumes_bit_identical(killed_and_resumed: dict[str, BaseException | None]) -> None:
    outcome(killed_and_resumed, "single")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", TWO_WORKER_STRATEGIES)
def test_two_workers_killed_mid_epoch_resume_bit_identical(killed_and_resumed: dict[str, BaseException | None],
                                                           strategy: str) -> None:
    """The sharded strategies too: zero1's checkpoint holds the consolidated optimizer state, fsdp's the full
    (gathered) model and optimizer state dicts, loaded back shard by shard; pipeline's the stages' merged model and
    each stage's optimizer state, every rank taking its stage's part."""
    outcome(killed_and_resumed, strategy)


@pytest.mark.timeout(120)
def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(data_dir: Path, tmp_path: Path,
                                                                           jobs: list[Job]) -> None:
    """SGD at lr 1e6 really diverges (non-finite by the 5th step): no test hook needed."""
    out = tmp_path / "nan"
    run = ["--limit-train", "1024", "--limit-test", "100", "--batch-size", "128", "--epochs", "2", "--threads", "1",
           "--device", "cpu", "--seed", "0", "--optimizer", "sgd", "--lr", "1e6", "--checkpoint-every", "2",
           "--quiet", "--no-tensorboard"]
    code, text = finish(jobs, train_argv(data_dir, out, run=run), tmp_path / "nan.log")
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1, text
    assert lines[0].startswith("pvision: error: training diverged: the ") and "non-finite at epoch 1 step" in text
    assert "the last good checkpoint (epoch 1 step 2) is kept in" in text or "(epoch 1 step 4)" in text, text
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["step"] in (2, 4)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(r["loss_sum"]) for r in ckpt["ranks"])
    assert not (out / "result.json").exists()
