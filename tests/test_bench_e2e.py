"""A tiny real bench, run once for the whole module: interrupted, resumed, stored and reported.

Matrix: torch (single, ddp, dp) and TensorFlow (single, mirrored), 1 and 2 workers, 512 training
and 200 test images, batch 128, 2 epochs. The first bench is interrupted with SIGINT while its
second run trains; the same command then resumes; a third call finds nothing left to run.
"""

from __future__ import annotations

import html.parser
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = "torch,tensorflow" if importlib.util.find_spec("tensorflow") else "torch"


def _data_dir() -> Path:
    candidates = (os.environ.get("PVISION_DATA_DIR"), "/work/shared/datasets",
                  REPO.parent / "shared" / "datasets")
    for candidate in candidates:
        if candidate and (Path(candidate) / "mnist").is_dir():
            return Path(candidate)
    pytest.skip("MNIST not found (set PVISION_DATA_DIR)")


def _bench_args(root: Path) -> list[str]:
    return [sys.executable, "-m", "parallel_vision", "bench", "--frameworks", FRAMEWORKS, "--workers", "1,2",
            "--strategies", "ddp,dp,mirrored", "--epochs", "2", "--batch-size", "128", "--limit-train", "512",
            "--limit-test", "200", "--data-dir", str(_data_dir()), "--out", str(root), "--wait-idle", "0"]


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", COLUMNS="200")
    env.pop("PVISION_DEBUG", None)
    return env


def _manifest(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / "bench.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _run_ids(root: Path, complete_only: bool = False) -> dict[str, str]:
    """run_id of each run folder's result.json; `complete_only` leaves out the partial result a stopped run
    leaves behind (the resumed run rightly replaces it)."""
    results = {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("runs/*/result.json"))}
    return {name: r["run_id"] for name, r in results.items() if not complete_only or r["status"] == "complete"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("bench") / "root"
    # 1. Start the bench and interrupt it while its second run trains.
    # Ctrl-C semantics even when pytest itself runs as a background job (which ignores SIGINT).
    proc = subprocess.Popen(_bench_args(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        states = [r["state"] for r in _manifest(root).get("runs", [])]
        if "done" in states and "running" in states:
            break
        time.sleep(0.5)
    time.sleep(2.0)  # let the second run's engine process get going
    proc.send_signal(signal.SIGINT)
    out1, err1 = proc.communicate(timeout=180)
    interrupted = SimpleNamespace(rc=proc.returncode, out=out1, err=err1, manifest=_manifest(root),
                                  run_ids=_run_ids(root, complete_only=True))
    codes = [_manifest(root)["code_version"]]
    # 2. The same command resumes and finishes, writing the report.
    t0 = time.monotonic()
    resumed = subprocess.run(_bench_args(root), capture_output=True, text=True, env=_env(), cwd=REPO,
                             timeout=600)
    resumed_s = time.monotonic() - t0
    after_resume = _run_ids(root)
    codes.append(_manifest(root)["code_version"])
    # 3. Once more: everything is stored already, nothing runs.
    again = subprocess.run(_bench_args(root) + ["--no-report"], capture_output=True, text=True, env=_env(),
                           cwd=REPO, timeout=300)
    codes.append(_manifest(root)["code_version"])
    codes += [json.loads(p.read_text())["environment"]["code_version"] for p in root.glob("runs/*/result.json")]
    # Colleagues committing to a shared checkout move HEAD between calls; the bench then (rightly)
    # measures again with the new code, into new folders. The strict resume checks need one version.
    return SimpleNamespace(root=root, interrupted=interrupted, resumed=resumed, resumed_s=resumed_s,
                           after_resume=after_resume, again=again, stable_code=len(set(codes)) == 1)


def _used(bench: SimpleNamespace) -> list[dict[str, Any]]:
    """The result.json of every run the report uses (the newest code version of each configuration)."""
    summary = json.loads((bench.root / "report.json").read_text())
    used = {run_id for c in summary["configurations"] for run_id in c["run_ids"]}
    results = [json.loads(p.read_text()) for p in bench.root.glob("runs/*/result.json")]
    return [r for r in results if r["run_id"] in used]


def test_interrupt_keeps_finished_runs(bench: SimpleNamespace) -> None:
    first = bench.interrupted
    assert first.rc == 130, first.err
    lines = first.err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "resume" in lines[0], first.err
    assert first.manifest["status"] == "interrupted"
    done = {r["name"] for r in first.manifest["runs"] if r["state"] == "done"}
    assert done and done <= set(first.run_ids), "every finished run keeps a complete result.json"
    # The run that was training when the signal came either stopped or (DDP workers finishing their
    # epoch) completed and was kept; either way the bench stopped and said so.
    assert any(r["state"] in ("interrupted", "done") and r["name"] not in ("torch-single-w1-b128-t1-r1",)
               for r in first.manifest["runs"])


def test_resume_reruns_only_what_was_not_finished(bench: SimpleNamespace) -> None:
    assert bench.resumed.returncode == 0, bench.resumed.stderr
    assert bench.again.returncode == 0, bench.again.stderr
    assert _manifest(bench.root)["status"] == "complete"
    final = _run_ids(bench.root)
    for name, run_id in bench.interrupted.run_ids.items():  # a finished run is never overwritten
        assert bench.after_resume[name] == run_id and final[name] == run_id, f"{name} was overwritten"
    n_configs = 2 if FRAMEWORKS == "torch" else 4  # dp is skipped (no 2 GPUs), not stored as a run
    if not bench.stable_code:
        pytest.skip("HEAD moved between the bench calls (a shared checkout): re-running was correct")
    assert f"{len(bench.interrupted.run_ids)} already done" in bench.resumed.stdout
    assert len(bench.after_resume) == n_configs
    assert not list(bench.root.glob("runs/*-2")), "no duplicate folders for the same run"
    assert "0 to run" in bench.again.stdout  # third call: nothing left, same runs
    assert final == bench.after_resume


def test_dataparallel_without_two_gpus_is_skipped_with_its_reason(bench: SimpleNamespace) -> None:
    skip = json.loads((bench.root / "skipped" / "torch-dp-w2-b128-t1.json").read_text())
    assert "2 CUDA devices" in skip["reason"] and skip["kind"] == "skipped"
    assert not (bench.root / "runs" / "torch-dp-w2-b128-t1-r1").exists()
    page = (bench.root / "report.html").read_text()
    assert "torch-dp-w2-b128-t1" in page and "2 CUDA devices" in page


def test_database_rows_match_the_run_folders(bench: SimpleNamespace) -> None:
    conn = sqlite3.connect(bench.root / "results.sqlite")
    conn.row_factory = sqlite3.Row
    rows = {r["path"]: r for r in conn.execute("SELECT * FROM runs")}
    folders = sorted(bench.root.glob("runs/*/result.json"))
    assert sorted(rows) == sorted(str(p.parent.relative_to(bench.root)) for p in folders)
    for path in folders:
        data = json.loads(path.read_text())
        row = rows[str(path.parent.relative_to(bench.root))]
        assert row["run_id"] == data["run_id"] and row["status"] == "complete"
        assert (row["framework"], row["strategy"], row["workers"]) == (
            data["config"]["framework"], data["config"]["strategy"], data["config"]["workers"])
        for key in ("mean_epoch_time_excl_warmup_s", "total_time_s", "images_per_s_excl_warmup",
                    "test_accuracy", "test_loss", "n_test_evaluated"):
            assert row[key] == data["summary"][key], key
        assert row["code_version"] == data["environment"]["code_version"]
        epochs = conn.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch",
                              (data["run_id"],)).fetchall()
        assert [e["epoch_time_s"] for e in epochs] == [e["epoch_time_s"] for e in data["epochs"]]
        assert data["summary"]["n_test_evaluated"] == 200
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class _Tables(html.parser.HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_report_has_every_section_and_figure(bench: SimpleNamespace) -> None:
    page = (bench.root / "report.html").read_text()
    for anchor in ("runs", "skipped", "scaling", "epoch-time", "curves", "split", "compare", "paper",
                   "classification", "environment", "definitions", "all-runs"):
        assert f"id='{anchor}'" in page, anchor
    assert page.count("src='data:image/png;base64,") == 5  # curves, epoch time, scaling, split, confusion
    assert "<img" in page and "http://" not in page and "https://" not in page  # self-contained
    for text in ("S = T(1) ÷ T(N)", "E(N) = S(N) ÷ N", "73.62", "5,000", "not measured", "Tesla T4"):
        assert text in page, text
    md = (bench.root / "report.md").read_text()
    for figure in ("curves", "epoch_times", "scaling", "time_split", "confusion"):
        assert f"](figures/{figure}.png)" in md
        assert (bench.root / "figures" / f"{figure}.png").stat().st_size > 1000
    summary = json.loads((bench.root / "report.json").read_text())
    modes = {(s["mode"], s["configuration"].split(" ×")[0]) for s in summary["scaling"]}
    assert ("strong", "PyTorch DDP") in modes
    if FRAMEWORKS != "torch":
        assert ("strong", "TensorFlow Mirrored") in modes
        assert "TensorFlow" in " ".join(summary["comparison"]["Scaling"])


def test_run_table_numbers_equal_the_result_files(bench: SimpleNamespace) -> None:
    parser = _Tables()
    parser.feed((bench.root / "report.html").read_text())
    header, *rows = parser.tables[0]
    names = {"torch": "PyTorch", "tensorflow": "TensorFlow"}
    strategies = {"single": "single", "ddp": "DDP", "mirrored": "Mirrored"}
    results = _used(bench)
    assert len(rows) == len(results)
    for data in results:
        c, s = data["config"], data["summary"]
        expected = {
            "Framework": names[c["framework"]], "Strategy": strategies[c["strategy"]],
            "Workers": str(c["workers"]),
            "Batch global / worker": f"{c['batch_size']} / {c['batch_size'] // c['workers']}",
            "Epochs": str(c["epochs"]),
            "Steady epoch T (s)": f"{s['mean_epoch_time_excl_warmup_s']:.2f}",
            "Warm-up epoch (s)": f"{s['warmup_epoch_time_s']:.2f}",
            "Total time (s)": f"{s['total_time_s']:.1f}",
            "Images/s": f"{s['images_per_s_excl_warmup']:,.0f}",
            "Test accuracy (%)": f"{100 * s['test_accuracy']:.2f}",
            "Test loss": f"{s['test_loss']:.4f}",
        }
        cells = [dict(zip(header, r, strict=True)) for r in rows]
        matching = [r for r in cells
                    if (r["Framework"], r["Strategy"]) == (expected["Framework"], expected["Strategy"])]
        assert len(matching) == 1, (expected, rows)
        for key, value in expected.items():
            assert matching[0][key] == value, (key, matching[0][key], value)


def test_speedup_in_report_follows_the_definition(bench: SimpleNamespace) -> None:
    results = {(d["config"]["framework"], d["config"]["strategy"]): d["summary"] for d in _used(bench)}
    summary = json.loads((bench.root / "report.json").read_text())
    for row in summary["scaling"]:
        fw = "torch" if row["configuration"].startswith("PyTorch") else "tensorflow"
        strategy = "ddp" if fw == "torch" else "mirrored"
        t1 = results[(fw, "single")]["mean_epoch_time_excl_warmup_s"]
        tn = results[(fw, strategy)]["mean_epoch_time_excl_warmup_s"]
        assert row["speedup"]["median"] == pytest.approx(t1 / tn)
        assert row["efficiency"]["median"] == pytest.approx(t1 / tn / 2)
        assert row["same_threads"] is True


def test_runs_and_report_commands(bench: SimpleNamespace, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "parallel_vision", *args], capture_output=True,
                              text=True, env=_env(), cwd=tmp_path, timeout=120)

    listed = cli("runs", "list", str(bench.root))
    assert listed.returncode == 0, listed.stderr
    final = _run_ids(bench.root)
    for name in final:
        assert name in listed.stdout
    name, run_id = next(iter(final.items()))
    shown = cli("runs", "show", run_id[:10], str(bench.root), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["run_id"] == run_id
    exported = cli("runs", "export", "--csv", str(tmp_path / "runs.csv"), str(bench.root))
    assert exported.returncode == 0
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == len(final) + 1
    text = cli("report", str(bench.root), "--format", "text")
    assert text.returncode == 0, text.stderr
    assert "PyTorch" in text.stdout and "Strong scaling" in text.stdout and "DDP" in text.stdout


def test_a_ddp_bench_records_this_hosts_linktest_and_project_measures_against_it(bench: SimpleNamespace,
                                                                                tmp_path: Path) -> None:
    """A bench with a DDP run ends with a linktest of this host (ROOT/linktest.json), so `pvision project` shows
    its error against the measured DDP run instead of projecting with no measured error."""
    assert (bench.root / "linktest.json").exists(), bench.resumed.stdout[-2000:]
    assert _manifest(bench.root)["linktest"]["state"] in ("done", "kept")
    assert "linktest: all-reduce among 2 ranks on this host" in bench.resumed.stdout
    projected = subprocess.run([sys.executable, "-m", "parallel_vision", "project", str(bench.root)],
                               capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert projected.returncode == 0, projected.stderr
    assert "measured N = 2 on 1 node(s) over its linktest" in projected.stdout, projected.stdout[-2000:]


def test_corrupt_database_is_an_error_until_rebuilt(bench: SimpleNamespace, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bench.root, copy, ignore=shutil.ignore_patterns("*.pt", "*.keras", "tb", "logs"))
    for suffix in ("-wal", "-shm"):
        (copy / f"results.sqlite{suffix}").unlink(missing_ok=True)
    (copy / "results.sqlite").write_bytes(os.urandom(8192))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "parallel_vision", *args], capture_output=True,
                              text=True, env=_env(), cwd=tmp_path, timeout=120)

    bad = cli("report", str(copy), "--format", "md")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "corrupt" in bad.stderr
    assert cli("runs", "rebuild", str(copy)).returncode == 0
    good = cli("report", str(copy), "--format", "md")
    assert good.returncode == 0, good.stderr
    conn = sqlite3.connect(copy / "results.sqlite")
    assert {r[0] for r in conn.execute("SELECT run_id FROM runs")} == set(_run_ids(bench.root).values())
