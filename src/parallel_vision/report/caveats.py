"""What the reader must know before trusting a number: mixed code versions, superseded runs, a busy
machine, single epochs, unfinished benches, baselines with other threads, unreadable results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parallel_vision.bench.machine import BUSY_CORES
from parallel_vision.report.groups import ConfigGroup
from parallel_vision.report.scaling import ScalingRow


def read_manifest(root: Path) -> dict[str, Any] | None:
    """ROOT/bench.json, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((root / "bench.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def warnings_for(groups: list[ConfigGroup], superseded: list[dict[str, Any]], manifest: dict[str, Any] | None,
                 scaling: list[ScalingRow], unreadable: list[str]) -> list[str]:
    """The report's warnings, in the order it lists them (`scaling`: the strong rows, then the weak ones)."""
    warnings: list[str] = []
    codes = sorted({str(r.get("code_version")) for g in groups for r in g.runs})
    if len(codes) > 1:
        warnings.append(f"the configurations were measured with {len(codes)} code versions "
                        f"({', '.join(codes)}); see the code version of each run under 'All runs'")
    if superseded:
        warnings.append(f"{len(superseded)} older run(s) of the same configurations, from earlier code "
                        "versions, are left out (listed under 'All runs' as superseded)")

    for g in groups:
        for r in g.runs:
            others = r.get("other_cores")
            if others is not None and others >= BUSY_CORES:
                warnings.append(f"{r['name']}: other processes on this machine used {others:.2f} cores on "
                                "average while it trained; its timing may be skewed")
        if g.config["epochs"] < 2:
            warnings.append(f"{g.label}: a single epoch, so its steady epoch time includes the warm-up")
    if manifest:
        measured = {r["path"] for g in groups for r in g.runs if r.get("other_cores") is not None}
        used = {r["path"] for g in groups for r in g.runs}
        for entry in manifest.get("runs", []):
            folder = entry.get("folder")
            if folder not in used or folder in measured:
                continue  # not reported, or its own bench_run.json says how busy the machine was
            others = entry.get("other_cores")
            if others is not None and others >= BUSY_CORES:  # runs from before bench_run.json existed
                warnings.append(f"{entry['name']}: other processes on this machine used {others:.2f} cores on "
                                "average while it trained; its timing may be skewed")
            elif entry.get("other_engines"):  # benches before the whole-machine meter
                warnings.append(f"{entry['name']}: other engine processes ran on this machine during the run "
                                f"(pids {entry['other_engines']}); its timing may be skewed")
        if manifest.get("status") != "complete":
            warnings.append(f"the last bench is {manifest.get('status')}: not every planned run finished")
    for row in scaling:
        if not row.same_threads:
            warnings.append(
                f"{row.point.label}: no 1-worker run with the same threads per worker "
                f"({row.point.threads:g}); the {row.mode} baseline uses {row.baseline.threads:g} threads"
                if row.point.threads is not None and row.baseline.threads is not None else
                f"{row.point.label}: the baseline's threads per worker are unknown")
    warnings += [f"unreadable: {u}" for u in unreadable]
    return warnings
