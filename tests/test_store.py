"""The SQLite results store: idempotent inserts, sync with the files, rebuild, and its one-line errors.

Results here are schema-valid records written with the schema's own writer (the
store is tested, not an engine); tests/test_bench_e2e.py checks the store against
real runs.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from parallel_vision.config import RunConfig
from parallel_vision.errors import ResultsError
from parallel_vision.results.schema import summarise_epochs, write_result
from parallel_vision.results.store import (
    DB_FILE,
    identity_hash,
    open_store,
    rebuild,
    require_runs,
    threads_per_replica,
)


def make_result(folder: Path, *, strategy: str = "single", workers: int = 1,
                times: tuple[float, ...] = (3.0, 2.0), accuracy: float = 0.9, repeat: int = 1,
                framework: str = "torch") -> dict[str, Any]:
    cfg = RunConfig(framework=framework, strategy=strategy, workers=workers, epochs=len(times),  # type: ignore[arg-type]
                    batch_size=256, limit_train=1024, limit_test=100, threads_per_worker=1,
                    extra={"repeat": repeat, "preset": "test"})
    epochs = [
        {"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_accuracy": 0.5, "test_loss": 0.5,
         "test_accuracy": accuracy, "epoch_time_s": t, "images_per_s": 1024 / t, "data_time_s": 0.1,
         "compute_time_s": t - 0.1, "comm_time_s": None if workers == 1 else 0.2, "eval_time_s": 0.3,
         "n_train_images": 1024, "n_test_evaluated": 100}
        for i, t in enumerate(times)
    ]
    summary = summarise_epochs(epochs, total_time_s=sum(times) + 5.0)
    summary.update({"world_size": workers, "global_batch": 256, "per_worker_batch": 256 // workers,
                    "steps_per_epoch": 4, "n_train": 1024})
    data = {
        "schema_version": 1, "run_id": uuid.uuid4().hex, "status": "complete",
        "created_at": "2026-01-01T00:00:00+00:00", "config": cfg.to_dict(),
        "environment": {"host": "h", "code_version": "abc123", "torch_threads": 1, "framework": framework},
        "epochs": epochs, "summary": summary,
        "timing": {"startup_s": None, "data_load_s": 0.1, "model_build_s": 0.1, "compile_s": None,
                   "eval_total_s": 0.6, "final_eval_s": 0.3},
        "classification_report": {"0": {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 100}},
        "confusion_matrix": [[100]], "artifacts": {},
    }
    write_result(data, folder)
    return data


def test_insert_is_idempotent_and_rows_match_the_file(tmp_path: Path) -> None:
    data = make_result(tmp_path / "runs" / "a-r1")
    with open_store(tmp_path) as store:
        assert store.count() == 1  # the missing database was built from the file
        store.insert_result(data, tmp_path / "runs" / "a-r1")
        store.insert_result(data, tmp_path / "runs" / "a-r1")
        assert store.count() == 1
        (row,) = store.runs()
        assert row["run_id"] == data["run_id"] and row["path"] == "runs/a-r1"
        assert row["mean_epoch_time_excl_warmup_s"] == data["summary"]["mean_epoch_time_excl_warmup_s"]
        assert row["identity_hash"] == identity_hash(data["config"])
        assert row["threads_per_replica"] == 1 and row["repeat"] == 1
        epochs = store.epochs(data["run_id"])
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert epochs == data["epochs"]
        assert store.done(row["identity_hash"], "abc123", 1)["run_id"] == data["run_id"]
        assert store.done(row["identity_hash"], "other-code", 1) is None
        assert store.done(row["identity_hash"], "abc123", 2) is None
    assert sqlite3.connect(tmp_path / DB_FILE).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sync_adds_new_and_drops_vanished_runs(tmp_path: Path) -> None:
    a = make_result(tmp_path / "runs" / "a-r1")
    with open_store(tmp_path) as store:
        assert {r["run_id"] for r in store.runs()} == {a["run_id"]}
    b = make_result(tmp_path / "runs" / "b-r1", strategy="ddp", workers=2)
    import shutil

    shutil.rmtree(tmp_path / "runs" / "a-r1")
    with open_store(tmp_path) as store:
        assert {r["run_id"] for r in store.runs()} == {b["run_id"]}
        assert store.epochs(a["run_id"]) == []


def test_rebuild_from_json_recovers_a_corrupt_database(tmp_path: Path) -> None:
    runs = [make_result(tmp_path / "runs" / f"r{i}", repeat=i) for i in range(3)]
    (tmp_path / DB_FILE).write_bytes(b"\x00garbage, not a database" * 100)
    with pytest.raises(ResultsError, match="corrupt"):
        open_store(tmp_path)
    with rebuild(tmp_path) as store:
        assert {r["run_id"] for r in store.runs()} == {r["run_id"] for r in runs}
    assert list(tmp_path.glob(f"{DB_FILE}.corrupt-*")), "the corrupt file is kept aside, not deleted"


def test_unreadable_result_is_reported_not_fatal(tmp_path: Path) -> None:
    make_result(tmp_path / "runs" / "good")
    bad = tmp_path / "runs" / "bad"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text("{ not json")
    with open_store(tmp_path) as store:
        assert store.count() == 1
        assert store.last_sync is not None and any("bad" in u for u in store.last_sync.unreadable)


def test_missing_empty_and_corrupt_are_results_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such folder"):
        open_store(tmp_path / "nowhere")
    with pytest.raises(ResultsError, match="no results database"):
        open_store(tmp_path)
    (tmp_path / DB_FILE).write_bytes(b"")
    with open_store(tmp_path) as store, pytest.raises(ResultsError, match="empty"):
        require_runs(store)
    (tmp_path / DB_FILE).write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(ResultsError, match="corrupt"):
        open_store(tmp_path)


def test_threads_per_replica_from_the_engine_record() -> None:
    base = {"config": {"strategy": "mirrored", "workers": 2}, "environment": {"intra_op_threads": 2}}
    assert threads_per_replica(base) == 1
    ddp = {"config": {"strategy": "ddp", "workers": 2}, "environment": {"torch_threads": 1}}
    assert threads_per_replica(ddp) == 1
    env_only = {"config": {"strategy": "single", "workers": 1},
                "environment": {"thread_env": {"OMP_NUM_THREADS": "2"}}}
    assert threads_per_replica(env_only) == 2


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("state", ["missing", "empty", "corrupt"])
def test_report_of_a_bad_database_is_one_line_exit_2(tmp_path: Path, state: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    if state == "empty":
        (root / DB_FILE).write_bytes(b"")
    elif state == "corrupt":
        make_result(root / "runs" / "a-r1")
        (root / DB_FILE).write_bytes(b"\x13\x37 garbage bytes, definitely not SQLite " * 50)
    for args in (["report", str(root)], ["runs", "list", str(root)]):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pvision: error:"), proc.stderr
        assert "Traceback" not in proc.stderr
    if state == "corrupt":
        assert "corrupt" in lines[0] and "rebuild" in lines[0]
        proc = _cli("runs", "rebuild", str(root), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        proc = _cli("runs", "export", "--csv", str(tmp_path / "runs.csv"), str(root), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        rows = (tmp_path / "runs.csv").read_text().strip().splitlines()
        assert len(rows) == 2 and rows[0].startswith("run_id,")


def test_skip_records_are_indexed(tmp_path: Path) -> None:
    make_result(tmp_path / "runs" / "a-r1")
    skip = tmp_path / "skipped" / "torch-dp-w2.json"
    skip.parent.mkdir()
    skip.write_text(json.dumps({"name": "torch-dp-w2", "reason": "needs 2 GPUs", "kind": "skipped",
                                "config": {"framework": "torch", "strategy": "dp", "workers": 2}}))
    with open_store(tmp_path) as store:
        (row,) = store.skipped()
        assert row["reason"] == "needs 2 GPUs" and row["strategy"] == "dp"
    skip.unlink()
    with open_store(tmp_path) as store:
        assert store.skipped() == []


def test_a_run_id_prefix_is_matched_literally(tmp_path: Path) -> None:
    a = make_result(tmp_path / "runs" / "a-r1")
    make_result(tmp_path / "runs" / "b-r1", strategy="ddp", workers=2)
    with open_store(tmp_path) as store:
        assert store.find(a["run_id"][:-1])["run_id"] == a["run_id"]
        assert store.find(a["run_id"][:-1].upper())["run_id"] == a["run_id"]  # hex ids: case does not matter
        assert store.find("a-r1")["run_id"] == a["run_id"]
        for key in ("%", "_", "%%", a["run_id"][:4] + "%", "_" + a["run_id"][1:]):  # not wildcards
            with pytest.raises(ResultsError, match="no run"):
                store.find(key)


def test_runs_show_takes_root_as_its_last_argument_and_still_accepts_the_old_option(tmp_path: Path) -> None:
    a = make_result(tmp_path / "root" / "runs" / "a-r1")
    new = _cli("runs", "show", a["run_id"][:8], "root", "--json", cwd=tmp_path)
    assert new.returncode == 0 and new.stderr == "", new.stderr
    assert json.loads(new.stdout)["run_id"] == a["run_id"]
    old = _cli("runs", "show", a["run_id"][:8], "--root", "root", "--json", cwd=tmp_path)
    assert old.returncode == 0 and old.stdout == new.stdout
    assert old.stderr.strip().splitlines() == [
        f"pvision: warning: --root is deprecated; give the results folder as the last argument: "
        f"pvision runs show {a['run_id'][:8]} root"]
    wildcard = _cli("runs", "show", "%", "root", cwd=tmp_path)
    assert wildcard.returncode == 2 and wildcard.stderr.strip().splitlines() == [
        f"pvision: error: no run '%' in {Path('root') / DB_FILE}"]
