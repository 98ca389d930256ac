"""SIGTERM/SIGINT to `pvision train`: the step ends, a checkpoint and a partial result are written,
the command exits 143/130 with one line, and `--resume` finishes the run (bit-identical to the
uninterrupted run: single whenever test_resume.py has made that run in the same session, DDP with
PowerSGD always, against a straight run made here).

Only the `pvision train` process is signalled (not its process group), so passing the signal on is
tested too: launcher → engine process → (DDP) spawned workers, which agree on the step to stop at.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import _STRAIGHT as STRAIGHT  # noqa: E402
from test_resume import (  # noqa: E402
    Job,
    assert_same_metrics,
    differing_tensors,
    finish,
    job_list,
    result,
    start,
    start_straight,
    straight_run,
    train_argv,
    wait_for_checkpoint,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    yield from job_list()


def _stop_and_resume(data_dir: Path, tmp_path: Path, jobs: list[Job], signum: int, *strategy: str,
                     straight: Callable[[], Path] | None = None) -> None:
    """Stop a run with `signum`, check what it kept, resume it; compare it with the uninterrupted run of the same
    strategy: `straight()` (it waits for one started in the background), else the one test_resume.py made."""
    from parallel_vision.results.schema import read_result

    name = signal.Signals(signum).name
    stopped = tmp_path / "stopped"

    job = start(jobs, train_argv(data_dir, stopped, *strategy), tmp_path / "stopped.log")
    wait_for_checkpoint(job, stopped, lambda info: info["epoch"] == 0 and info["step"] >= 3)
    job.proc.send_signal(signum)  # the launcher only: it passes the signal on
    code = job.wait(60)
    text = job.text()
    lines = text.strip().splitlines()
    assert code == 128 + signum, text
    assert len(lines) == 1 and re.match(rf"pvision: error: stopped by {name} (at epoch \d step \d|after epoch 1 of 2);"
                                        r" checkpoint and partial result\.json kept in .*; continue with --resume$",
                                        lines[0]), text

    partial = read_result(stopped)  # a valid result file, marked incomplete
    assert partial["status"] == "incomplete" and partial["artifacts"]["checkpoint"] == "checkpoint.pt"
    assert not (stopped / "model.pt").exists()
    ckpt = torch.load(stopped / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) >= (0, 3) and len(partial["epochs"]) == len(ckpt["records"])
    hooks = [r.get("comm_hook") for r in ckpt["ranks"]]
    if "--grad-compression" in strategy:  # PowerSGD's state, each rank's own, its compressed steps begun
        assert all(h is not None and h["iter"] >= 3 and h["error_dict"] and h["q_memory_dict"] for h in hooks), hooks
        assert not torch.equal(*(next(iter(h["error_dict"].values())) for h in hooks))  # the ranks' residuals differ
    else:
        assert hooks == [None] * len(hooks)

    code, text = finish(jobs, train_argv(data_dir, stopped, *strategy, "--resume"), tmp_path / "resumed.log")
    assert code == 0, text
    assert "pvision: resuming from epoch" in text
    data = result(stopped)
    assert data["status"] == "complete" and len(data["epochs"]) == 2
    assert [(r["epoch"], r["step"]) for r in data["reliability"]["resumed_from"]] == [(ckpt["epoch"], ckpt["step"])]
    # Bit-identical to the uninterrupted run, checked when test_resume.py made it in this session
    # (the SIGKILL tests there prove exact resume; a signal's checkpoint is the same kind of file).
    reference = straight() if straight is not None else STRAIGHT.get(strategy)
    if reference is not None:
        assert differing_tensors(reference, stopped) == []
        assert_same_metrics(result(reference), data)


@pytest.mark.timeout(200)
def test_sigterm_single_exits_143_and_resumes(data_dir: Path, tmp_path: Path, jobs: list[Job]) -> None:
    _stop_and_resume(data_dir, tmp_path, jobs, signal.SIGTERM)


@pytest.mark.timeout(300)
def test_sigint_ddp_powersgd_exits_130_and_resumes_bit_identical(data_dir: Path, tmp_path: Path,
                                                                 tmp_path_factory: pytest.TempPathFactory,
                                                                 jobs: list[Job]) -> None:
    """DDP x 2 with PowerSGD, stopped after its compressed steps began: its step counter, each rank's error
    feedback and the warm-started Q travel in the checkpoint, so the resumed run equals an uninterrupted one
    (made here; plain DDP's exact resume is test_resume.py's SIGKILL test)."""
    strategy = ("--strategy", "ddp", "--workers", "2", "--grad-compression", "powersgd:1")
    start_straight(data_dir, tmp_path_factory, jobs, *strategy)  # trains meanwhile; waited for before comparing
    _stop_and_resume(data_dir, tmp_path, jobs, signal.SIGINT, *strategy,
                     straight=lambda: straight_run(data_dir, tmp_path_factory, jobs, *strategy))
