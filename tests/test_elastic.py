"""Elastic restarts: torchrun restarts the DDP group after a worker dies, and the run finishes from its checkpoint.

`torchrun --standalone --nproc-per-node 2 --max-restarts 1 -m parallel_vision train --strategy ddp
--workers 2 --checkpoint-every 3 ...`; once the checkpoint of a step in the middle of the second
epoch exists, worker rank 1 is SIGKILLed from outside (found by scanning /proc for this test's tag
in its environment). torchrun stops the survivor and starts both again (TORCHELASTIC_RESTART_COUNT
1); every worker continues from the checkpoint without --resume, rank 0 accepts its own folder,
and result.json records the restart. With --deterministic on the CPU the finished model is the
same, tensor for tensor, as an uninterrupted spawned DDP run of the same configuration.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import RUN as RESUME_RUN  # noqa: E402
from test_resume import (  # noqa: E402
    Job,
    assert_same_metrics,
    clean_env,
    differing_tensors,
    finish,
    job_list,
    mid_second_epoch,
    result,
    start,
    start_straight,
    straight_run,
    wait_for_checkpoint,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

DDP = ("--strategy", "ddp", "--workers", "2")
#: test_resume's run (512 images, global batch 64: 8 steps per epoch, 2 epochs, a checkpoint every 3 steps), so
#: its uninterrupted DDP run is made once per session for both files.
RUN = [*DDP, *RESUME_RUN]


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    yield from job_list()


def _worker_pid(tag: str, rank: int, timeout: float = 90.0) -> int:
    """The torchrun worker of `rank` in this test's tree: a parallel_vision process with our tag and RANK."""
    wanted = {f"PVISION_TEST_TAG={tag}".encode(), f"RANK={rank}".encode(), b"TORCHELASTIC_RESTART_COUNT=0"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = set((entry / "environ").read_bytes().split(b"\0"))
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if wanted <= env and b"parallel_vision" in cmdline and b"torch.distributed.run" not in cmdline:
                return int(entry.name)
        time.sleep(0.1)
    pytest.fail(f"no worker with RANK={rank} found")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_restarts_after_a_worker_dies_and_the_run_completes(data_dir: Path, tmp_path: Path,
                                                                    tmp_path_factory: pytest.TempPathFactory,
                                                                    jobs: list[Job], strategy: str) -> None:
    """fsdp too: its restarted workers load the full state dicts back into their shards."""
    out, tag = tmp_path / "elastic", uuid.uuid4().hex
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "--max-restarts", "1", "--monitor-interval", "0.2",
            # No --workers: under torchrun the world size it set up is the default.
            "-m", "parallel_vision", "train", "--data-dir", str(data_dir), "--out", str(out),
            "--strategy", strategy, *RESUME_RUN]
    job = start(jobs, argv, tmp_path / "torchrun.log", clean_env(PVISION_TEST_TAG=tag))
    # this strategy's uninterrupted run trains meanwhile (compared below)
    start_straight(data_dir, tmp_path_factory, jobs, "--strategy", strategy, "--workers", "2")
    victim = _worker_pid(tag, 1)  # found first, so the kill follows the checkpoint at once
    wait_for_checkpoint(job, out, mid_second_epoch)
    os.kill(victim, signal.SIGKILL)
    code = job.wait()
    text = job.text()
    assert code == 0, text[-3000:]
    assert re.search(r"pvision: resuming after torchrun restart 1 from epoch 2 step [1-7] of 8", text), text[-3000:]

    data = result(out)
    assert data["config"]["workers"] == 2 and data["summary"]["world_size"] == 2
    assert data["status"] == "complete" and len(data["epochs"]) == 2
    assert data["summary"]["restarts"] == 1
    assert data["elastic"]["restart_count"] == 1 and data["elastic"]["max_restarts"] == 1
    assert [r["elastic_restart"] for r in data["reliability"]["resumed_from"]] == [1]
    assert data["summary"]["test_accuracy"] > 0.3  # 16 steps of 64 images: well above chance (0.1)
    assert not (out / "checkpoint.pt").exists()

    # The same configuration spawned in one go: the restarted run lost nothing, bit for bit.
    spawned = straight_run(data_dir, tmp_path_factory, jobs, "--strategy", strategy, "--workers", "2")
    assert differing_tensors(spawned, out) == []
    assert_same_metrics(result(spawned), data)


@pytest.mark.timeout(120)
def test_an_explicit_workers_that_differs_from_torchrun_is_refused(data_dir: Path, tmp_path: Path,
                                                                  jobs: list[Job]) -> None:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "parallel_vision", "train", "--data-dir", str(data_dir), "--out", str(tmp_path / "out"),
            "--strategy", "ddp", "--workers", "4", *RESUME_RUN]
    job = start(jobs, argv, tmp_path / "torchrun.log", clean_env())
    assert job.wait() != 0
    assert "pvision: error: --workers 4 but torchrun started WORLD_SIZE=2 processes" in job.text()
    assert not (tmp_path / "out" / "result.json").exists()


def _spawned_workers(tag: str, count: int, timeout: float = 90.0) -> list[int]:
    """The spawned DDP workers of this test's run, by start time (rank order: spawn starts rank 0 first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
                cmdline = (entry / "cmdline").read_bytes()
                started = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19])
            except (OSError, ValueError, IndexError):
                continue
            if f"PVISION_TEST_TAG={tag}".encode() in env and b"spawn_main" in cmdline:
                found.append((started, int(entry.name)))
        if len(found) == count:
            return [pid for _, pid in sorted(found)]
        time.sleep(0.1)
    pytest.fail(f"not {count} spawned workers found")


@pytest.mark.timeout(240)
def test_a_partitioned_peer_ends_the_run_within_the_collective_timeout(data_dir: Path, tmp_path: Path,
                                                                      jobs: list[Job]) -> None:
    """SIGSTOP emulates a peer that vanishes without resetting its connections (a partition): the survivor
    must give up within --collective-timeout (5 s; the environment's 60 s must lose to the option), name the
    lost rank and host in one line, exit 75, take every process down, and the run must resume."""
    import socket

    out, tag = tmp_path / "lost", uuid.uuid4().hex
    argv = [sys.executable, "-m", "parallel_vision", "train", "--data-dir", str(data_dir), "--out", str(out),
            *RUN, "--collective-timeout", "5"]
    job = start(jobs, argv, tmp_path / "lost.log", clean_env(PVISION_TEST_TAG=tag))
    workers = _spawned_workers(tag, 2)
    wait_for_checkpoint(job, out, lambda info: True)
    os.kill(workers[1], signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        code = job.wait(timeout=60)
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    elapsed = time.monotonic() - stopped_at
    text = job.text()
    assert code == 75, text[-3000:]
    # 5 s without progress, a few heartbeats to see who is missing, the launcher: well under the 60 s of
    # PVISION_DIST_TIMEOUT_S (which would mean the option was not honoured).
    assert 3.0 < elapsed < 30.0, (elapsed, text[-3000:])
    errors = [line for line in text.splitlines() if line.startswith("pvision: error:")]
    assert len(errors) == 1 and "Traceback" not in text, text[-3000:]
    assert f"rank 1 (host {socket.gethostname()}, 127.0.0.1) stopped answering" in errors[0], errors[0]
    assert "waited in the all-reduce of step" in errors[0] or "waited in the checkpoint" in errors[0], errors[0]
    assert f"the last checkpoint kept: {out / 'checkpoint.pt'} (" in errors[0], errors[0]
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a DDP worker was left behind"

    code, text = finish(jobs, [*argv, "--resume"], tmp_path / "resume.log")
    assert code == 0, text[-3000:]
    data = result(out)
    assert data["status"] == "complete" and len(data["epochs"]) == 2 and data["reliability"]["resumed_from"]
