"""The report across machines (`pvision report ROOT_A ROOT_B … --out DIR`) on hand-made results.

Two ROOTs on two "machines" (different provenance in result.json): each machine's speedup against its own
1-worker run, the throughput ratio of the same configuration across machines, the labels, the errors; and a
small checked-in ROOT written by an older version of the tool (tests/fixtures/old_root, see its README).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from parallel_vision.config import RunConfig
from parallel_vision.report.machines import build_machines_data, describe, label_machines
from parallel_vision.report.machines_page import write_machines_report
from parallel_vision.results.schema import summarise_epochs, write_result

OLD_ROOT = Path(__file__).parent / "fixtures" / "old_root"
LAPTOP = {"host": "laptop", "cpu_model": "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", "logical_cores": 8,
          "gpus": []}
SERVER = {"host": "gpu-box.lab.example", "cpu_model": "AMD EPYC 7763 64-Core Processor", "logical_cores": 128,
          "gpus": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]}


def _result(root: Path, name: str, env: dict[str, Any], *, strategy: str, workers: int, steady: float,
            threads: int, code: str = "abc", time_to_target: float | None = None, epochs: int = 3) -> None:
    cfg = RunConfig(framework="torch", strategy=strategy, workers=workers, epochs=epochs,  # type: ignore[arg-type]
                    batch_size=256, limit_train=4096, limit_test=1000, threads_per_worker=threads,
                    extra={"repeat": 1})
    times = [steady * 1.5] + [steady] * (epochs - 1)
    records = [{"epoch": i + 1, "train_loss": 0.5, "train_accuracy": 0.9, "test_loss": 0.3, "test_accuracy": 0.95,
                "epoch_time_s": t, "images_per_s": 4096 / t, "data_time_s": 0.1 * t, "compute_time_s": 0.9 * t,
                "comm_time_s": None, "eval_time_s": 0.4, "n_train_images": 4096, "n_test_evaluated": 1000}
               for i, t in enumerate(times)]
    summary = summarise_epochs(records, total_time_s=sum(times) + 5.0)
    summary.update({"world_size": workers, "global_batch": 256, "per_worker_batch": 256 // workers,
                    "steps_per_epoch": 16, "n_train": 4096})
    if time_to_target is not None:
        summary.update({"target_accuracy": 0.9, "target_reached": True, "time_to_target_s": time_to_target,
                        "epochs_to_target": 2})
    data = {"schema_version": 1, "run_id": uuid.uuid4().hex, "status": "complete",
            "created_at": "2026-12-01T00:00:00+00:00", "config": cfg.to_dict(),
            "environment": {**env, "code_version": code, "torch_threads": threads},
            "epochs": records, "summary": summary, "timing": {}, "classification_report": {},
            "confusion_matrix": [], "artifacts": {}}
    write_result(data, root / "runs" / name)


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("machines")
    laptop, server = base / "laptop-week1", base / "server-week1"
    # Laptop: 4 threads per worker; server: 16 (the machine's choice: still the same configuration).
    _result(laptop, "single", LAPTOP, strategy="single", workers=1, steady=10.0, threads=4, time_to_target=30.0)
    _result(laptop, "ddp2", LAPTOP, strategy="ddp", workers=2, steady=6.0, threads=4, time_to_target=18.0)
    _result(server, "single", SERVER, strategy="single", workers=1, steady=4.0, threads=16, code="def",
            time_to_target=10.0)
    _result(server, "ddp2", SERVER, strategy="ddp", workers=2, steady=2.5, threads=16, code="def",
            time_to_target=9.0)
    out = base / "compare"
    write_machines_report([laptop, server], out)
    return laptop, server, out


def test_each_machine_is_labelled_from_its_provenance(two_machines: tuple[Path, Path, Path]) -> None:
    laptop, server, _ = two_machines
    data = build_machines_data([laptop, server])
    assert [m.label for m in data.machines] == ["laptop (8 cores, CPU)", "gpu-box (2× H100 80GB HBM3)"]
    assert data.machines[0].hardware == "11th Gen Intel Core i7-1165G7, 8 cores; no GPU"
    assert [m.code_versions for m in data.machines] == [["abc"], ["def"]]


def test_speedup_is_per_machine_against_its_own_baseline(two_machines: tuple[Path, Path, Path]) -> None:
    laptop, server, _ = two_machines
    data = build_machines_data([laptop, server])
    for m, t1, tn in ((data.machines[0], 10.0, 6.0), (data.machines[1], 4.0, 2.5)):
        ddp = next(g for g in m.data.groups if g.workers == 2)
        (row,) = m.scaling(ddp)
        assert row.baseline.key in {g.key for g in m.data.groups}  # never another machine's 1-worker run
        assert row.speedup.median == pytest.approx(t1 / tn)
        assert row.efficiency.median == pytest.approx(t1 / tn / 2)


def test_the_same_configuration_across_machines(two_machines: tuple[Path, Path, Path]) -> None:
    laptop, server, out = two_machines
    data = build_machines_data([laptop, server])
    assert [(row.label, [e.machine.label for e in row.entries]) for row in data.cross] == [
        ("PyTorch single ×1", ["laptop (8 cores, CPU)", "gpu-box (2× H100 80GB HBM3)"]),
        ("PyTorch DDP ×2", ["laptop (8 cores, CPU)", "gpu-box (2× H100 80GB HBM3)"])]
    single, ddp = data.cross
    assert single.entries[1].throughput_ratio.median == pytest.approx(10.0 / 4.0)  # type: ignore[union-attr]
    assert ddp.entries[1].throughput_ratio.median == pytest.approx(6.0 / 2.5)  # type: ignore[union-attr]
    assert single.entries[1].target_ratio.median == pytest.approx(30.0 / 10.0)  # type: ignore[union-attr]
    assert ddp.entries[1].target_ratio.median == pytest.approx(18.0 / 9.0)  # type: ignore[union-attr]
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    for text in (page, md):
        assert "laptop (8 cores, CPU)" in text and "gpu-box (2× H100 80GB HBM3)" in text
        assert "2.50×" in text and "2.40×" in text
        assert "1.67" in text and "1.60" in text  # each machine's own S(2)
        assert "Time to target (s)" in text and "3.00×" in text and "2.00×" in text
        assert ("PyTorch DDP ×2: gpu-box (2× H100 80GB HBM3) processes 2.40× the images per second of laptop "
                "(8 cores, CPU); it reaches the target accuracy 2.00× sooner.") in text
        assert str((laptop / "runs" / "ddp2" / "result.json").resolve()) in text  # named where it is
    summary = json.loads((out / "report.json").read_text())
    assert summary["across_machines"][1]["machines"][1]["throughput_ratio"]["median"] == pytest.approx(2.4)
    assert [m["label"] for m in summary["machines"]] == ["laptop (8 cores, CPU)", "gpu-box (2× H100 80GB HBM3)"]


def test_nothing_is_copied_and_the_roots_keep_their_own_reports(two_machines: tuple[Path, Path, Path]) -> None:
    laptop, server, out = two_machines
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    for root in (laptop, server):
        assert not (root / "report.html").exists()  # the ROOT is read, its own report left alone
        assert {p.name for p in root.iterdir()} <= {"runs", "results.sqlite", "results.sqlite-wal",
                                                    "results.sqlite-shm"}


def test_two_roots_of_one_machine_are_told_apart_by_their_names(tmp_path: Path) -> None:
    host, brief, _, others = describe([{"environment": LAPTOP}, {"environment": {**LAPTOP, "host": "node2"}}])
    assert (host, brief, others) == ("laptop", "8 cores, CPU", ["node2"])
    week1, week2 = tmp_path / "week1", tmp_path / "week2"
    assert label_machines([("laptop", "8 cores, CPU", week1), ("laptop", "8 cores, CPU", week2),
                           ("gpu-box", "2× H100", tmp_path / "x")]) == [
        "laptop (8 cores, CPU) · week1", "laptop (8 cores, CPU) · week2", "gpu-box (2× H100)"]
    # Same folder name in two places: the parent tells them apart.
    assert label_machines([("h", "b", tmp_path / "a" / "runs"), ("h", "b", tmp_path / "b" / "runs")]) == [
        "h (b) · a/runs", "h (b) · b/runs"]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from parallel_vision.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_an_old_root_opens_beside_a_new_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """tests/fixtures/old_root was written by the code at f2bf0ad (no workload block, no lever keys, the config
    and environment of that time); the report across machines reads it beside a ROOT of today's code."""
    old = tmp_path / "old"
    shutil.copytree(OLD_ROOT, old)  # the store writes its index into the ROOT: never into the checkout
    new = tmp_path / "new"
    _result(new, "single", SERVER, strategy="single", workers=1, steady=5.0, threads=16, epochs=2)
    code, err = _cli(["report", str(old), str(new), "--out", str(tmp_path / "out"), "--format", "html,md"], capsys)
    assert code == 0, err
    page = (tmp_path / "out" / "report.html").read_text()
    assert "laptop (8 cores, CPU)" in page and "gpu-box (2× H100 80GB HBM3)" in page
    assert "f2bf0add74f4" in page  # the old ROOT's code version
    data = build_machines_data([old, new])
    (row,) = data.cross  # the old and the new 1-worker runs are the same configuration
    assert row.entries[1].throughput_ratio.median == pytest.approx(20.0 / 5.0)  # type: ignore[union-attr]
    (strong,) = data.machines[0].data.strong  # the old ROOT's own speedup, from its own baseline
    assert strong.speedup.median == pytest.approx(20.0 / 12.5)


def test_errors_are_one_line(tmp_path: Path, two_machines: tuple[Path, Path, Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    laptop, server, _ = two_machines
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["report", str(laptop), str(server)], "--out DIR"),
        (["report", str(laptop), str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "missing"),
        (["report", str(laptop), str(empty), "--out", str(tmp_path / "o")], str(empty)),
        (["report", str(laptop), str(server), "--out", str(laptop)], "is the ROOT"),
        (["report", str(laptop), str(laptop), "--out", str(tmp_path / "o")], "given twice"),
    ]
    for args, named in cases:
        code, err = _cli(args, capsys)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and named in err, err
    assert not (tmp_path / "o").exists()


def test_one_root_writes_its_report_into_the_root_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "one"
    shutil.copytree(OLD_ROOT, root)
    code, err = _cli(["report", str(root), "--format", "md"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("report")) == ["report.json", "report.md"]
    md = (root / "report.md").read_text()
    assert md.startswith("# Parallel Vision — data-parallel training report") and "across machines" not in md
