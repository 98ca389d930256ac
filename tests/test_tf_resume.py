"""TensorFlow runs killed or stopped mid-run resume from their epoch-end backup and complete.

Each test runs the real command (`python -m parallel_vision train --framework
tensorflow`) on a small MNIST subset, interrupts it from outside once a backup
of at least one finished epoch exists, and runs it again with `--resume`:
`single` is SIGKILLed (launcher and engine), `mirrored` over two logical CPUs gets
SIGTERM (a clean stop: exit 143 and an `incomplete` result.json), and
`multiworker` with two local workers is SIGKILLed as a whole. The resumed run must
finish every epoch, keep the records of the epochs finished before the
interruption unchanged, say where it resumed, and remove its backup.

Unlike the PyTorch engine's resume this is not bit-exact (tf_backup's docstring
says why), so the tests check completion, the kept records and a sane accuracy.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from parallel_vision.engines.jax import backup as jax_backup  # noqa: E402
from parallel_vision.engines.tensorflow import backup as tf_backup  # noqa: E402
from parallel_vision.errors import ConfigError, EngineError  # noqa: E402
from test_resume import DEADLINE_S, Job, finish, job_list, result, start, train_argv  # noqa: E402
from together import outcome, play_together  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed"),
]

EPOCHS = 5  # the TF CNN reaches 0.95-0.98 on the 200 test images by epoch 5 (0.82-0.88 at epoch 4)
#: 1024 images in global batches of 128: 8 short steps per epoch, so a kill lands mid-run.
RUN = ["--framework", "tensorflow", "--limit-train", "1024", "--limit-test", "200", "--batch-size", "128",
       "--epochs", str(EPOCHS), "--device", "cpu", "--seed", "0", "--quiet", "--no-tensorboard"]


def wait_for_backup(job: Job, out: Path, min_epoch: int, timeout: float = DEADLINE_S) -> dict[str, Any]:
    """Poll OUT/tf_backup/state.json until it records `min_epoch` finished epochs; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = tf_backup.info(out)
        if state is not None and state.get("epoch", 0) >= min_epoch:
            return state
        if job.proc.poll() is not None:
            pytest.fail(f"the run ended (exit {job.proc.returncode}) before a backup of epoch {min_epoch}:\n"
                        f"{job.text()[-2000:]}")
        time.sleep(0.01)
    pytest.fail(f"no backup of epoch {min_epoch} within {timeout:.0f} s; last: {tf_backup.info(out)}")


def interrupt_then_resume(data_dir: Path, tmp_path: Path, jobs: list[Job], signum: int, *strategy: str,
                          min_epoch: int = 2) -> tuple[int, list[dict[str, Any]], dict[str, Any], str]:
    """Start a run, signal its whole process group after `min_epoch` backed-up epochs, resume it.

    Returns the exit code of the interrupted run, the epoch records the backup held
    then, the resumed run's result and its log.
    """
    out = tmp_path / "out"
    job = start(jobs, train_argv(data_dir, out, *strategy, run=RUN), tmp_path / "first.log")
    wait_for_backup(job, out, min_epoch)
    job.signal_group(signum)
    first_code = job.wait(60)
    state = tf_backup.info(out)
    assert state is not None and min_epoch <= state["epoch"] < EPOCHS, (state, job.text()[-1500:])
    assert (out / tf_backup.BACKUP_DIR / state["weights"]).exists()
    kept = state["records"]
    assert [r["epoch"] for r in kept] == list(range(1, state["epoch"] + 1))

    code, text = finish(jobs, train_argv(data_dir, out, *strategy, "--resume", run=RUN), tmp_path / "resume.log")
    assert code == 0, text
    assert f"resuming after epoch {state['epoch']} of {EPOCHS}" in text
    data = result(out)
    assert data["status"] == "complete"
    assert [r["epoch"] for r in data["epochs"]] == list(range(1, EPOCHS + 1))
    assert data["epochs"][: len(kept)] == kept, "the epochs finished before the interruption must be kept as they were"
    assert data["reliability"]["resumed_from"] == [{"epoch": state["epoch"]}]
    assert data["reliability"]["backups_written"] == EPOCHS
    assert data["summary"]["test_accuracy"] > 0.8, data["summary"]
    assert data["summary"]["n_test_evaluated"] == 200
    assert not (out / tf_backup.BACKUP_DIR).exists(), "a complete run leaves no backup behind"
    return first_code, kept, data, text


def _mirrored_sigterm_stops_cleanly_and_resumes(data_dir: Path, tmp_path: Path, jobs: list[Job]) -> None:
    out = tmp_path / "out"
    job = start(jobs, train_argv(data_dir, out, "--strategy", "mirrored", "--workers", "2", run=RUN),
                tmp_path / "first.log")
    wait_for_backup(job, out, 1)
    job.signal_group(signal.SIGTERM)
    assert job.wait(60) == 143, job.text()[-1500:]
    last_line = job.text().strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last_line and "continue with --resume" in last_line, last_line
    partial = result(out)
    state = tf_backup.info(out)
    assert partial["status"] == "incomplete" and state is not None
    assert partial["epochs"] == state["records"], "the partial result holds exactly the backed-up epochs"

    # The launcher names the unfinished run and will not start over it by accident.
    code, text = finish(jobs, train_argv(data_dir, out, "--strategy", "mirrored", "--workers", "2", run=RUN),
                        tmp_path / "again.log")
    assert code == 2 and f"backup after epoch {state['epoch']}" in text and "--resume" in text, text

    code, text = finish(jobs, train_argv(data_dir, out, "--strategy", "mirrored", "--workers", "2", "--resume",
                                         run=RUN), tmp_path / "resume.log")
    assert code == 0, text
    data = result(out)
    assert data["status"] == "complete" and len(data["epochs"]) == EPOCHS
    assert data["epochs"][: state["epoch"]] == state["records"]
    assert data["environment"]["num_replicas_in_sync"] == 2


def _multiworker_killed_resumes_on_every_worker(data_dir: Path, tmp_path: Path, jobs: list[Job]) -> None:
    """SIGKILL to the launcher and both workers; the single-process kill is the same backup and resume code with
    one writer, and mirrored's SIGTERM test resumes a one-process run."""
    first_code, _, data, _ = interrupt_then_resume(data_dir, tmp_path, jobs, signal.SIGKILL,
                                                   "--strategy", "multiworker", "--workers", "2", min_epoch=1)
    assert first_code == -signal.SIGKILL
    assert data["summary"]["world_size"] == 2


#: The two interrupt-and-resume scenarios, each a test below.
SCENARIOS = {"mirrored": _mirrored_sigterm_stops_cleanly_and_resumes,
             "multiworker": _multiworker_killed_resumes_on_every_worker}


@pytest.fixture(scope="module")
def scenarios(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    """Both scenarios played at once (tests/together.py), each with its own folder and processes (killed at its
    end, pass or fail): most of each is starting Python and TensorFlow; nothing they check is a time."""
    def scenario(name: str, folder: Path) -> Callable[[], None]:
        def play() -> None:
            started = job_list()
            try:
                SCENARIOS[name](data_dir, folder, next(started))
            finally:
                started.close()  # kills whatever is left of its processes
        return play

    return play_together({name: scenario(name, tmp_path_factory.mktemp(name)) for name in SCENARIOS})


def test_mirrored_sigterm_stops_cleanly_and_resumes(scenarios: dict[str, BaseException | None]) -> None:
    outcome(scenarios, "mirrored")


def test_multiworker_killed_resumes_on_every_worker(scenarios: dict[str, BaseException | None]) -> None:
    outcome(scenarios, "multiworker")


# --------------------------------------------------------------------------- the backup file itself
#: The Keras layer's backup format, bound to each Keras engine's folder: the same checks for both.
BACKUPS = [pytest.param(tf_backup, "TensorFlow", id="tensorflow"), pytest.param(jax_backup, "JAX", id="jax")]


def _identity() -> dict[str, Any]:
    from parallel_vision.config import RunConfig

    return RunConfig(framework="tensorflow", epochs=3).identity()


def _state(out: Path, engine: Any = tf_backup, **changes: Any) -> None:
    folder = out / engine.BACKUP_DIR
    folder.mkdir(parents=True)
    (folder / "epoch-0001.weights.h5").write_bytes(b"weights")
    state = {"kind": engine.KIND, "format": engine.FORMAT, "config_identity": _identity(), "world_size": 1,
             "epoch": 1, "weights": "epoch-0001.weights.h5", "records": [], "timing": {}, "reliability": {}}
    state.update(changes)
    (folder / engine.STATE_FILE).write_text(json.dumps(state))


@pytest.mark.parametrize(("engine", "label"), BACKUPS)
def test_backup_of_another_configuration_is_refused(tmp_path: Path, engine: Any, label: str) -> None:
    other = dict(_identity(), lr=0.5)
    _state(tmp_path, engine, config_identity=other)
    with pytest.raises(ConfigError, match=r"different configuration \(lr\)"):
        engine.read(tmp_path, _identity(), 1)
    assert engine.read(tmp_path / "elsewhere", _identity(), 1) is None


@pytest.mark.parametrize(("engine", "label"), BACKUPS)
@pytest.mark.parametrize(("changes", "phrase"), [
    ({"kind": "something else"}, "not a parallel_vision {label} backup"),
    ({"format": 99}, "format 99"),
    ({"epoch": "two"}, "not a readable backup"),
    ({"weights": "epoch-0002.weights.h5"}, "epoch-0002.weights.h5, which is missing"),
    ({"world_size": 2}, "written by 2 replicas, this run has 1"),
])
def test_damaged_backup_is_a_one_line_error(tmp_path: Path, engine: Any, label: str, changes: dict[str, Any],
                                            phrase: str) -> None:
    _state(tmp_path, engine, **changes)
    with pytest.raises((EngineError, ConfigError)) as info:
        engine.read(tmp_path, _identity(), 1)
    assert phrase.format(label=label) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("engine", "label"), BACKUPS)
def test_truncated_state_file_is_a_one_line_error(tmp_path: Path, engine: Any, label: str) -> None:
    _state(tmp_path, engine)
    path = tmp_path / engine.BACKUP_DIR / engine.STATE_FILE
    path.write_text(path.read_text()[:40])
    with pytest.raises(EngineError, match="not a readable backup"):
        engine.read(tmp_path, _identity(), 1)


def test_a_backup_of_the_other_keras_engine_is_not_taken(tmp_path: Path) -> None:
    """Both engines write the same format, each with its own kind: a JAX backup copied to tf_backup/ is refused."""
    _state(tmp_path, jax_backup)
    (tmp_path / jax_backup.BACKUP_DIR).rename(tmp_path / tf_backup.BACKUP_DIR)
    with pytest.raises(EngineError, match="not a parallel_vision TensorFlow backup"):
        tf_backup.read(tmp_path, _identity(), 1)
