"""Stragglers made visible: per-rank step times in result.json (`summary.per_rank`), the report's flag, and
`pvision project`'s skew taken from them (results/stragglers.py, docs/reliability.md).

The rule is tested on hand-made rows; one tiny real DDP run with rank 1 slowed on purpose (the test hook
PVISION_TEST_SLOW_RANK) shows the engine records which rank lags and the report names it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from parallel_vision import envvars
from parallel_vision.projection import calibrate, links, root_inputs
from parallel_vision.results.stragglers import (
    STRAGGLER_THRESHOLD,
    distribution,
    rank_spread_s,
    rank_summary,
    straggler,
    straggler_warnings,
)


def _rank(rank: int, compute_ms: float, wait_ms: float, host: str = "h") -> dict[str, Any]:
    """A per_rank entry as the engine writes it (median = p90 = max: only the median is read by the rule)."""
    def d(ms: float) -> dict[str, float]:
        return {"median": ms / 1e3, "p90": ms / 1e3, "max": ms / 1e3}
    return {"rank": rank, "host": host, "steps": 8, "step_time_s": d(compute_ms + wait_ms),
            "compute_s": d(compute_ms), "comm_wait_s": d(wait_ms)}


# --------------------------------------------------------------------------- the rule, on hand-made rows
def test_a_rank_more_than_ten_percent_behind_the_others_compute_is_flagged_with_the_wait_it_caused() -> None:
    # rank 1 computes 60 ms per step, the others 40: the others wait ~20 ms more at the all-reduce than rank 1
    rows = [_rank(0, 40, 23), _rank(1, 60, 3, host="slowhost"), _rank(2, 41, 22), _rank(3, 39, 24)]
    flag = straggler(rows)
    assert flag is not None and flag["rank"] == 1 and flag["host"] == "slowhost"
    assert flag["behind"] == pytest.approx(60 / 40 - 1)  # against the median of the others: 40 ms
    assert flag["others_wait_s"] == pytest.approx(0.023) and flag["own_wait_s"] == pytest.approx(0.003)
    assert flag["wait_caused_s"] == pytest.approx(0.020)
    (warning,) = straggler_warnings([{"name": "ddp-w4", "summary": {"per_rank": rows}}])
    assert warning.startswith("ddp-w4: rank 1 on slowhost is a straggler") and "50 %" in warning
    assert "20.0 ms of it for rank 1" in warning
    assert rank_spread_s(rows) == pytest.approx(0.020)


def test_the_threshold_is_strict_and_two_ranks_compare_with_each_other() -> None:
    at = 40 * (1 + STRAGGLER_THRESHOLD)
    assert straggler([_rank(0, 40, 5), _rank(1, at, 1)]) is None  # exactly 10 % behind: not flagged
    assert straggler([_rank(0, 40, 5), _rank(1, at + 0.1, 1)])["rank"] == 1
    assert straggler([_rank(0, 40, 1), _rank(1, 40, 1)]) is None
    # nothing to compare: one rank, no per_rank (older results, other engines), entries without compute
    for rows in ([_rank(0, 40, 1)], None, [], [{"rank": 0}, {"rank": 1}], "junk"):
        assert straggler(rows) is None and rank_spread_s(rows) is None
    assert straggler_warnings([{"name": "old", "summary": {}}, {"name": "x"}]) == []


def test_rank_summary_is_the_distribution_of_step_compute_and_wait() -> None:
    steps = [(0.10 + i / 1000, 0.02) for i in range(10)]  # 100..109 ms, 20 ms of it all-reduce
    s = rank_summary(1, "h", steps)
    assert s["rank"] == 1 and s["steps"] == 10 and s["host"] == "h"
    assert s["step_time_s"]["median"] == pytest.approx(0.1045)
    assert s["step_time_s"]["p90"] == pytest.approx(0.108) and s["step_time_s"]["max"] == pytest.approx(0.109)
    assert s["compute_s"]["median"] == pytest.approx(0.0845) and s["comm_wait_s"]["max"] == pytest.approx(0.02)
    assert rank_summary(0, "h", [(0.01, 0.02)])["compute_s"]["median"] == 0.0  # never negative
    assert distribution([]) == {"median": None, "p90": None, "max": None}


# --------------------------------------------------------------------------- pvision project's skew default
def _run(path: str, batch: int, step: float, per_rank: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {"per_worker_batch": batch, "steps_per_epoch": 4,
                               "mean_epoch_time_excl_warmup_s": 4 * step}
    if per_rank is not None:
        summary["per_rank"] = per_rank
    return {"path": path, "workers": 2 if per_rank else 1, "summary": summary, "config": {}}


def test_project_takes_its_skew_from_the_measured_per_rank_spread_unless_given() -> None:
    singles = [_run("s32", 32, 0.1), _run("s64", 64, 0.2)]
    ddp = [_run("d1", 64, 0.25, [_rank(0, 200, 30), _rank(1, 206, 24)]),
           _run("d2", 64, 0.25, [_rank(0, 200, 30), _rank(1, 210, 20)]),
           _run("d3", 64, 0.25)]  # an older run without per-rank times: not counted
    inputs = root_inputs.Inputs(Path("."), "paper_cnn", "torch", 1.0, (1, 28, 28), 10, singles, ddp, [])
    skew, note, runs = calibrate.measured_skew(inputs)
    assert skew == pytest.approx(0.008) and runs == ["d1", "d2"] and "measured" in note  # median of 6 and 10 ms
    link = links.preset("25gbe")
    doc = calibrate.project(inputs, [2, 4], link)
    assert doc["calibration"]["skew_s"] == pytest.approx(0.008) and doc["calibration"]["skew"]["runs"] == ["d1", "d2"]
    given = calibrate.project(inputs, [2, 4], link, skew_s=0.0)
    assert given["calibration"]["skew"]["note"] == "given with --skew-ms"
    for a, b in zip(doc["rows"], given["rows"], strict=True):
        assert a["step_time_s"] == pytest.approx(b["step_time_s"] + 0.008)
    none = root_inputs.Inputs(**{**vars(inputs), "ddp": [ddp[2]]})
    assert calibrate.measured_skew(none)[0] == 0.0 and "give --skew-ms" in calibrate.measured_skew(none)[1]


def test_project_prints_where_its_skew_came_from(capsys: pytest.CaptureFixture[str]) -> None:
    from parallel_vision.cli.project_cmd import print_projection

    singles = [_run("s32", 32, 0.1), _run("s64", 64, 0.2)]
    ddp = [_run("d1", 64, 0.25, [_rank(0, 200, 30), _rank(1, 206, 24)])]
    inputs = root_inputs.Inputs(Path("."), "paper_cnn", "torch", 1.0, (1, 28, 28), 10, singles, ddp, [])
    print_projection(calibrate.project(inputs, [2], links.preset("25gbe")))
    out = capsys.readouterr().out
    assert "rank skew: 6.00 ms per step (measured" in " ".join(out.split())


# --------------------------------------------------------------------------- a real straggler
#: 256 images in 8 steps of 32 on two DDP workers, rank 1 sleeping SLOW_S in every step (the test hook). A step's own
#: compute is a few ms, so the sleep stands far above what other test processes sharing the 2 cores (the suite runs
#: in two pytest-xdist processes) do to the medians of two 1-thread workers.
SLOW = {"strategy": "ddp", "workers": 2, "limit_train": 256, "limit_test": 200, "batch_size": 32, "epochs": 1,
        "device": "cpu", "tensorboard": False, "threads_per_worker": 1}
SLOW_S = 0.6


@pytest.mark.slow
def test_a_slowed_rank_is_recorded_and_the_report_flags_it(data_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from parallel_vision.config import RunConfig
    from parallel_vision.launch import run
    from parallel_vision.report import write_report
    from parallel_vision.report.data import build_report_data

    monkeypatch.setenv(envvars.TEST_SLOW_RANK, f"1:{SLOW_S}")
    out = tmp_path / "root" / "ddp-slow"
    run(RunConfig(**dict(SLOW, data_dir=str(data_dir), out_dir=str(out))), progress=False)  # type: ignore[arg-type]
    data = json.loads((out / "result.json").read_text())
    per_rank = data["summary"]["per_rank"]
    assert [e["rank"] for e in per_rank] == [0, 1] and all(e["steps"] == 8 for e in per_rank)
    assert all(e["host"] == os.uname().nodename for e in per_rank)
    fast, slow = per_rank
    # rank 1's compute carries its SLOW_S; rank 0 waits for it at the all-reduce
    assert slow["compute_s"]["median"] >= fast["compute_s"]["median"] + SLOW_S / 2
    assert fast["comm_wait_s"]["median"] >= slow["comm_wait_s"]["median"] + SLOW_S / 2
    for e in per_rank:
        for key in ("step_time_s", "compute_s", "comm_wait_s"):
            d = e[key]
            assert 0 <= d["median"] <= d["p90"] <= d["max"]
    flag = straggler(per_rank)
    assert flag is not None and flag["rank"] == 1
    report = build_report_data(tmp_path / "root")
    assert any(w.startswith("ddp-slow: rank 1 ") and "straggler" in w for w in report.warnings), report.warnings
    write_report(tmp_path / "root", formats=("md",))
    text = (tmp_path / "root" / "report.md").read_text()
    assert "Per-rank step times" in text and "yes: +" in text and "rank 1 on " in text
