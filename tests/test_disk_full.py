"""A full disk is a one-line error naming the file, its size and what is kept; nothing half-written is left.

Two ways to run out of space:

- a real one: a small tmpfs mounted for the test (`mount -t tmpfs -o size=…`), filled up
  or just too small for the next write; the end-to-end cases run the real CLI on it, then
  grow it (`mount -o remount,size=…`, "space is freed") and `--resume`. Mounting needs
  root; elsewhere these tests skip, saying so.
- an injected one: `OSError(ENOSPC)` / `OSError(EDQUOT)` raised at the rename or fsync of a
  write (monkeypatch), for what a tmpfs cannot reach cheaply; these run everywhere.

The sizes below are of the paper's CNN: a checkpoint (weights and Adam's two moments) is
~11 MB, model.pt / model.keras ~3.6 MB, a TensorFlow backup ~11 MB.
"""

from __future__ import annotations

import errno
import functools
import http.server
import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parallel_vision.atomic import atomic_write_bytes, human_size
from parallel_vision.errors import DiskFullError
from test_bad_input import _SCRUBBED, assert_one_line_error
from test_store import make_result
from together import outcome, play_together

SIZE = r"\(~\d+(\.\d)? (B|kB|MB|GB)\)"
#: Tiny training settings: 2 steps per epoch, 500 test images.
TINY = ["--batch-size", "512", "--limit-train", "1024", "--limit-test", "500", "--device", "cpu", "--quiet"]
#: Room for one checkpoint (~11 MB) and the small files, not for the temp file of a second one.
ONE_CHECKPOINT = "16m"
#: Room for the epoch-1 checkpoint (or TF backup), not for model.pt / model.keras (~3.6 MB) beside it.
CHECKPOINT_ONLY = "13m"
ROOMY = "64m"
HAS_TF = importlib.util.find_spec("tensorflow") is not None


# --------------------------------------------------------------------------- a small filesystem
class SmallFs:
    """SmallFs(folder)("16m") -> a fresh tmpfs of that size under `folder` (skips where mounting is not allowed);
    `unmount()` removes every one it made."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mounted: list[Path] = []

    def __call__(self, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root; the injected-error tests cover the code paths")
        where = self.folder / f"fs{len(self.mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")
        self.mounted.append(where)
        return where

    def unmount(self) -> None:
        for where in reversed(self.mounted):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """small_fs("16m") -> a fresh tmpfs of that size (skips where mounting is not allowed)."""
    mounts = SmallFs(tmp_path)
    yield mounts
    mounts.unmount()


def grow(where: Path, size: str = ROOMY) -> None:
    """Free space: the same filesystem, bigger (files stay)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True, capture_output=True)


def fill(where: Path, leave: int = 0) -> Path:
    """Fill the filesystem up, then give back about `leave` bytes (tmpfs counts whole 4 kB pages)."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while os.write(fd, b"\0" * (1 << 20)):  # partial writes up to the last page, then ENOSPC
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


def cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.setdefault("PVISION_CACHE_DIR", str(cwd / ".cache" / "arrays"))  # the array cache stays off the tmpfs
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- the atomic writer
def test_a_write_too_big_for_the_filesystem_keeps_the_previous_file(small_fs: Callable[[str], Path]) -> None:
    fs = small_fs("256k")
    dest = fs / "out" / "result.json"
    atomic_write_bytes(dest, b"old" * 1000)
    assert dest.stat().st_mode & 0o777 == 0o644
    with pytest.raises(DiskFullError) as info:
        atomic_write_bytes(dest, b"new" * 100_000)
    assert str(info.value) == (f"no space left on device writing {dest} (~300 kB); "
                               "the previous result.json is unchanged")
    assert info.value.path == str(dest) and info.value.size == 300_000
    assert dest.read_bytes() == b"old" * 1000
    assert not temp_files(fs)
    with pytest.raises(DiskFullError, match="no partial file was left"):
        atomic_write_bytes(fs / "out" / "fresh.bin", b"x" * 300_000)
    assert sorted(p.name for p in (fs / "out").iterdir()) == ["result.json"]


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "no space left on device"),
                                             (errno.EDQUOT, "disk quota exceeded")], ids=["ENOSPC", "EDQUOT"])
def test_enospc_and_edquot_injected_at_the_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 code: int, words: str) -> None:
    dest = tmp_path / "predictions.npy"
    atomic_write_bytes(dest, b"previous")

    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DiskFullError) as info:
        atomic_write_bytes(dest, b"x" * 4128)
    assert str(info.value) == f"{words} writing {dest} (~4.1 kB); the previous predictions.npy is unchanged"
    assert info.value.quota == (code == errno.EDQUOT)
    assert dest.read_bytes() == b"previous"
    assert not temp_files(tmp_path)


def test_other_write_errors_stay_what_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "a", b"x")
    assert not isinstance(info.value, DiskFullError) and info.value.errno == errno.EIO
    assert not temp_files(tmp_path)


def test_sizes_read_like_a_person_would_write_them() -> None:
    assert [human_size(n) for n in (0, 999, 4128, 165_458, 3_635_508, 10_916_523, 47_040_016)] == [
        "0 B", "999 B", "4.1 kB", "165 kB", "3.6 MB", "11 MB", "47 MB"]


def test_disk_full_error_reaches_the_launcher_as_itself() -> None:
    """An engine process reports errors by class name; the launcher and the DDP spawn parent look it up."""
    from parallel_vision.errors import ConfigError, EngineError, error_type, known_error
    from parallel_vision.failure import report_error

    assert error_type("DiskFullError") is DiskFullError
    # One lookup for every boundary: bare or qualified (a DDP worker's traceback) names, None/EngineError else.
    assert known_error("parallel_vision.errors.DiskFullError") is DiskFullError
    assert known_error("ConfigError") is ConfigError
    assert known_error("OSError") is None and error_type("OSError") is EngineError
    assert report_error(DiskFullError("no space left on device writing x (~1 B); kept")) == 2


# --------------------------------------------------------------------------- checkpoints and TensorBoard
def test_a_checkpoint_that_does_not_fit_leaves_the_last_good_one(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from parallel_vision.engines.torch import checkpoint

    def state(epoch: int, step: int, marker: float) -> dict:
        return {"format": checkpoint.FORMAT, "kind": checkpoint.KIND, "config_identity": "{}", "code_version": "x",
                "epoch": epoch, "step": step, "steps_per_epoch": 8, "world_size": 1,
                "model": {"w": torch.full((1000,), marker)}, "optimizer": {}, "scheduler": None, "scaler": None,
                "records": [], "ranks": [], "elastic_run_id": None}

    checkpoint.save(tmp_path, state(1, 0, 1.0))
    summary_before = (tmp_path / checkpoint.INFO_FILE).read_bytes()
    real_replace = os.replace

    def no_space_for_the_checkpoint(src: str, dst: str) -> None:
        if str(dst).endswith(checkpoint.CHECKPOINT_FILE):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", no_space_for_the_checkpoint)
    with pytest.raises(DiskFullError) as info:
        checkpoint.save(tmp_path, state(1, 5, 2.0))
    message = str(info.value)
    assert message.startswith(f"no space left on device writing {tmp_path / checkpoint.CHECKPOINT_FILE} (~")
    assert message.endswith("; the last good checkpoint (after epoch 1) is kept; continue with --resume once "
                            "space is freed")
    monkeypatch.setattr(os, "replace", real_replace)
    kept = checkpoint.load(tmp_path / checkpoint.CHECKPOINT_FILE)
    assert (kept["epoch"], kept["step"]) == (1, 0) and torch.equal(kept["model"]["w"], torch.full((1000,), 1.0))
    assert (tmp_path / checkpoint.INFO_FILE).read_bytes() == summary_before  # the summary names it again
    assert not temp_files(tmp_path)


@pytest.mark.parametrize(("engine", "kept"), [("torch", "no checkpoint had been written yet"),
                                              ("keras", "no epoch-end backup had been written yet")])
def test_tensorboard_on_a_full_disk_is_one_error_without_a_thread_traceback(
        small_fs: Callable[[str], Path], capfd: pytest.CaptureFixture[str], engine: str, kept: str) -> None:
    """The one TensorBoard writer of every engine (engines.tbevents), with each engine's note of what is kept."""
    pytest.importorskip("tensorboard")
    from parallel_vision.engines.tbevents import TB_SCALARS, TensorBoard

    if engine == "torch":
        pytest.importorskip("torch")
        from parallel_vision.engines.torch.checkpoint import kept_note
    else:
        from parallel_vision.engines.tensorflow.backup import kept_note

    fs = small_fs("1m")
    out = fs / "run"
    out.mkdir()
    fill(fs, leave=12 * 1024)  # the event file starts, then runs out within a few epochs' scalars
    board = TensorBoard(out, enabled=True, kept_note=kept_note)
    record = dict.fromkeys(TB_SCALARS, 0.5)
    with pytest.raises(DiskFullError) as info:
        for epoch in range(1, 5000):
            board.log(dict(record, epoch=epoch))
    board.close(quiet=True)
    assert re.fullmatch(rf"no space left on device writing {re.escape(str(out / 'tb'))}/events\.out\.tfevents\.\S+ "
                        rf"{SIZE}; {kept}", str(info.value)), str(info.value)
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Exception in thread" not in captured.err, captured.err


def test_a_tensorflow_summary_error_about_space_names_the_event_file(tmp_path: Path) -> None:
    from parallel_vision.engines.outputs import tensorboard_disk_full

    tb = tmp_path / "tb"
    tb.mkdir()
    (tb / "events.out.tfevents.1.host.1.0.v2").write_bytes(b"")
    # What tf.summary's flush raises (tf.errors.ResourceExhaustedError), reduced to its text.
    exc = RuntimeError(f"{tb}/events.out.tfevents.1.host.1.0.v2; No space left on device\n\tFailed to flush 6 events")
    error = tensorboard_disk_full(exc, tb, 6, "the last epoch-end backup (after epoch 1) is kept")
    assert isinstance(error, DiskFullError)
    assert str(error) == (f"no space left on device writing {tb}/events.out.tfevents.1.host.1.0.v2 (~384 B); "
                          "the last epoch-end backup (after epoch 1) is kept")
    other = RuntimeError("something else")
    assert tensorboard_disk_full(other, tb, 6, "kept") is other


# --------------------------------------------------------------------------- results store and report
def test_sqlite_database_or_disk_is_full_names_the_database(small_fs: Callable[[str], Path]) -> None:
    from parallel_vision.results.store import DB_FILE, open_store

    fs = small_fs("1m")
    root = fs / "bench"
    make_result(root / "a")
    fill(fs)
    with pytest.raises(DiskFullError) as info:
        open_store(root)
    assert re.fullmatch(rf"no space left on device writing {re.escape(str(root / DB_FILE))} {SIZE}; the database "
                        r"is left as it was \(every result.json is kept; `pvision runs rebuild` recreates it\)",
                        str(info.value)), str(info.value)
    assert json.loads((root / "a" / "result.json").read_text())["status"] == "complete"


def test_a_full_transaction_rolls_back_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLITE_FULL at COMMIT (where a WAL database writes): one line, and the store is usable afterwards."""
    from parallel_vision.results import store as store_mod

    root = tmp_path / "bench"
    data = make_result(root / "a")
    store = store_mod.open_store(root)
    full = sqlite3.OperationalError("database or disk is full")

    class FullAtCommit:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: object) -> object:
            if sql == "COMMIT":
                raise full
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

    real = store.conn
    store.conn = FullAtCommit(real)  # type: ignore[assignment]
    with pytest.raises(DiskFullError, match=re.escape(f"writing {root / store_mod.DB_FILE} (~")):
        store.delete_run(data["run_id"])
    store.conn = real
    assert not real.in_transaction
    assert store.count() == 1  # rolled back: the run is still there
    store.close()


def test_the_report_on_a_full_disk_names_the_file(small_fs: Callable[[str], Path]) -> None:
    pytest.importorskip("matplotlib")
    from parallel_vision.report import write_report
    from parallel_vision.report.data import build_report_data

    fs = small_fs("2m")
    root = fs / "bench"
    make_result(root / "one", workers=1)
    make_result(root / "two", strategy="ddp", workers=2, times=(2.0, 1.2))
    data = build_report_data(root)
    fill(fs, leave=64 * 1024)
    with pytest.raises(DiskFullError) as info:
        write_report(root, formats=("html", "md"), data=data)
    assert re.fullmatch(rf"no space left on device writing {re.escape(str(root / 'report.html'))} {SIZE}; "
                        "no partial file was left", str(info.value)), str(info.value)
    assert not (root / "report.html").exists() and not temp_files(root)


# --------------------------------------------------------------------------- data: downloads and the array cache
@pytest.fixture
def mirror(data_dir: Path) -> Iterator[str]:
    """http://127.0.0.1:<port>/ serving the real MNIST files."""
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    # The client hangs up mid-file (its disk is full): no "Exception occurred during processing" noise.
    server = type("QuietServer", (http.server.ThreadingHTTPServer,), {"handle_error": lambda *a: None})
    httpd = server(("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(data_dir / "mnist" / "raw"), **k))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_a_download_that_does_not_fit_names_the_file(small_fs: Callable[[str], Path], mirror: str) -> None:
    from parallel_vision.data import DATASETS, fetch

    fs = small_fs("1m")
    with pytest.raises(DiskFullError) as info:
        fetch("mnist", fs, mirrors=[mirror], progress=False)
    first = DATASETS["mnist"].splits[0].images  # the first file fetched, 9.9 MB: more than the filesystem
    assert str(info.value) == (f"no space left on device writing {fs / 'mnist' / 'raw' / first.name} "
                               f"(~{human_size(first.size)}); no partial file was left")
    assert not temp_files(fs) and not list((fs / "mnist" / "raw").iterdir())


def test_a_full_array_cache_only_costs_speed(small_fs: Callable[[str], Path], data_dir: Path) -> None:
    from parallel_vision.data import DATASETS
    from parallel_vision.data.cache import read_verified

    spec = next(f for f in DATASETS["mnist"].files if f.name.startswith("t10k-labels"))
    fs = small_fs("1m")
    fill(fs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = read_verified(data_dir / "mnist" / "raw" / spec.name, spec, fs / "cache")
    assert labels.shape == (10000,)
    assert any("no space left on device" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert not temp_files(fs)


# --------------------------------------------------------------------------- the real CLI, end to end
def _torch_checkpoint_on_a_full_disk_then_resume(small_fs: Callable[[str], Path], data_dir: Path,
                                                  tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from parallel_vision.engines.torch import checkpoint

    fs = small_fs(ONE_CHECKPOINT)
    out = fs / "run"
    args = ["train", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "2", *TINY]
    proc = cli(*args, cwd=tmp_path)
    line = assert_one_line_error(proc, f"writing {out / 'checkpoint.pt'} (~",
                                 "; the last good checkpoint (after epoch 1) is kept; continue with --resume")
    assert re.search(SIZE, line) and "MB)" in line, line
    kept = checkpoint.load(out / checkpoint.CHECKPOINT_FILE)  # intact: a weights-only load succeeds
    assert (kept["epoch"], kept["step"]) == (1, 0) and len(kept["records"]) == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert checkpoint.info(out)["epoch"] == 1
    assert not temp_files(out) and not (out / "result.json").exists()

    grow(fs)
    proc = cli(*args, "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from epoch 2 step 0" in proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "complete" and [e["epoch"] for e in result["epochs"]] == [1, 2]
    assert result["epochs"][0] == kept["records"][0]
    assert [r["epoch"] for r in result["reliability"]["resumed_from"]] == [1]
    assert (out / "model.pt").exists() and not checkpoint.present(out)


def _torch_model_file_on_a_full_disk_then_resume(small_fs: Callable[[str], Path], data_dir: Path,
                                                  tmp_path: Path) -> None:
    pytest.importorskip("torch")
    fs = small_fs(CHECKPOINT_ONLY)
    out = fs / "run"
    args = ["train", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "1", "--no-tensorboard", *TINY]
    line = assert_one_line_error(cli(*args, cwd=tmp_path), f"writing {out / 'model.pt'} (~",
                                 "the last good checkpoint (after epoch 1) is kept")
    assert re.search(SIZE, line), line
    assert (out / "checkpoint.pt").exists() and not (out / "model.pt").exists() and not temp_files(out)
    grow(fs)
    proc = cli(*args, "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "result.json").read_text())["status"] == "complete"
    assert (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()


def _tensorflow_backup_on_a_full_disk_then_resume(small_fs: Callable[[str], Path], data_dir: Path,
                                                   tmp_path: Path) -> None:
    """Keras' savers write into memory first: h5py meeting ENOSPC would crash the process (SIGSEGV)."""
    fs = small_fs(ONE_CHECKPOINT)
    out = fs / "run"
    args = ["train", "-f", "tensorflow", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "2", *TINY]
    line = assert_one_line_error(
        cli(*args, cwd=tmp_path), f"writing {out / 'tf_backup' / 'epoch-0002.weights.h5'} (~",
        f"; the last epoch-end backup (after epoch 1) is kept in {out / 'tf_backup'}; continue with --resume")
    assert re.search(SIZE, line), line
    state = json.loads((out / "tf_backup" / "state.json").read_text())
    assert state["epoch"] == 1 and (out / "tf_backup" / state["weights"]).stat().st_size > 1 << 20
    assert sorted(p.name for p in (out / "tf_backup").iterdir()) == ["epoch-0001.weights.h5", "state.json"]
    grow(fs)
    proc = cli(*args, "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "complete" and len(result["epochs"]) == 2
    assert result["epochs"][0] == state["records"][0]
    assert (out / "model.keras").stat().st_size > 1 << 20 and not (out / "tf_backup").exists()


#: The end-to-end scenarios, each a test below.
E2E = {"torch-checkpoint": _torch_checkpoint_on_a_full_disk_then_resume,
       "torch-model": _torch_model_file_on_a_full_disk_then_resume,
       "tensorflow-backup": _tensorflow_backup_on_a_full_disk_then_resume}


@pytest.fixture(scope="module")
def e2e(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BaseException | None]]:
    """The end-to-end scenarios played at once (tests/together.py), each on its own tmpfs and in its own folder:
    most of each is starting Python and a framework; what they check is messages and files, never a time."""
    names = [name for name in E2E if HAS_TF or not name.startswith("tensorflow")]
    folders = {name: tmp_path_factory.mktemp(name) for name in names}
    mounts = {name: SmallFs(folder) for name, folder in folders.items()}
    try:
        yield play_together({name: functools.partial(E2E[name], mounts[name], data_dir, folders[name])
                             for name in names})
    finally:
        for fs in mounts.values():
            fs.unmount()


@pytest.mark.slow
def test_torch_checkpoint_on_a_full_disk_then_resume(e2e: dict[str, BaseException | None]) -> None:
    outcome(e2e, "torch-checkpoint")


@pytest.mark.slow
def test_torch_model_file_on_a_full_disk_then_resume(e2e: dict[str, BaseException | None]) -> None:
    outcome(e2e, "torch-model")


@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed")
def test_tensorflow_backup_on_a_full_disk_then_resume(e2e: dict[str, BaseException | None]) -> None:
    """Keras' savers write into memory first: h5py meeting ENOSPC would crash the process (SIGSEGV)."""
    outcome(e2e, "tensorflow-backup")


@pytest.mark.slow
def test_runs_list_on_a_full_disk_names_the_database(small_fs: Callable[[str], Path], tmp_path: Path) -> None:
    fs = small_fs("1m")
    root = fs / "bench"
    make_result(root / "a")
    fill(fs)
    line = assert_one_line_error(cli("runs", "list", str(root), cwd=tmp_path),
                                 f"no space left on device writing {root / 'results.sqlite'} (~",
                                 "the database is left as it was")
    assert re.search(SIZE, line), line
