"""SIGTERM/SIGINT to `pvision train`: the step ends, a checkpoint and a partial result are written,
the command exits 143/130 with one line, and `--resume` finishes the run (bit-identical to the
uninterrupted run whenever test_resume.py has made that run in the same session).

Only the `pvision train` process is signalled (not its process group), so passing the signal on is
tested too: launcher → engine process → (DDP) spawned workers, which agree on the step to stop at.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Iterator
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
    train_argv,
    wait_for_checkpoint,
)

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    yield from job_list()


def _stop_and_resume(data_dir: Path, tmp_path: Path, jobs: list[Job], signum: int, *strategy: str) -> None:
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

    code, text = finish(jobs, train_argv(data_dir, stopped, *strategy, "--resume"), tmp_path / "resumed.log")
    assert code == 0, text
    assert "pvision: resuming from epoch" in text
    data = result(stopped)
    assert data["status"] == "complete" and len(data["epochs"]) == 2
    assert [(r["epoch"], r["step"]) for r in data["reliability"]["resumed_from"]] == [(ckpt["epoch"], ckpt["step"])]
    # Bit-identical to the uninterrupted run, checked when test_resume.py made it in this session
    # (the SIGKILL tests there prove exact resume; a signal's checkpoint is the same kind of file).
    straight = STRAIGHT.get(strategy)
    if straight is not None:
        assert differing_tensors(straight, stopped) == []
        assert_same_metrics(result(straight), data)


@pytest.mark.timeout(200)
def test_sigterm_single_exits_143_and_resumes(data_dir: Path, tmp_path: Path, jobs: list[Job]) -> None:
    _stop_and_resume(data_dir, tmp_path, jobs, signal.SIGTERM)


@pytest.mark.timeout(300)
def test_sigint_ddp_exits_130_and_resumes(data_dir: Path, tmp_path: Path, jobs: list[Job]) -> None:
    _stop_and_resume(data_dir, tmp_path, jobs, signal.SIGINT, "--strategy", "ddp", "--workers", "2")
