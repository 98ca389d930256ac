"""Everything the report shows, computed once from the results store (never from training).

`build_report_data(root)` opens ROOT/results.sqlite (syncing it with the
result.json files), groups runs by configuration identity (repeats of one
configuration share it, report/groups.py), takes medians with min–max, pairs
configurations for speedup and efficiency (report/scaling.py), and lines our
numbers up with the paper's (report/pairs.py). ROOT's bench.json and
projection.json are read here too, once, so no renderer reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.explain.files import read_compare
from parallel_vision.projection.store import read_projection
from parallel_vision.report import paper
from parallel_vision.report.caveats import read_manifest, warnings_for
from parallel_vision.report.environment import environment
from parallel_vision.report.groups import (
    FRAMEWORK_NAMES,
    STAT_KEYS,
    STRATEGY_NAMES,
    ConfigGroup,
    framework_order,
    group_runs,
    target_stats,
)
from parallel_vision.report.pairs import paper_rows, protocol_rows
from parallel_vision.report.scaling import STRONG, WEAK, Point, ScalingRow, scaling_rows
from parallel_vision.results.store import open_store, require_runs
from parallel_vision.results.stragglers import straggler_warnings

# Re-exported for code that imports them from here (they live in report/groups.py).
__all__ = ["FRAMEWORK_NAMES", "STAT_KEYS", "STRATEGY_NAMES", "ConfigGroup", "ReportData", "build_report_data",
           "target_stats"]


@dataclass
class ReportData:
    """Everything the report shows, read from ROOT once."""

    root: Path
    generated_at: str
    groups: list[ConfigGroup]
    skipped: list[dict[str, Any]]
    incomplete: list[dict[str, Any]]
    superseded: list[dict[str, Any]]
    strong: list[ScalingRow]
    weak: list[ScalingRow]
    environment: dict[str, Any]
    manifest: dict[str, Any] | None
    warnings: list[str]
    paper_rows: list[dict[str, Any]]
    paper_checks: list[dict[str, Any]]
    protocol_rows: list[dict[str, Any]]
    peak_gflops: float | None = None
    """A declared peak per worker (GFLOP/s) for model FLOPs utilisation; None: MFU is not shown."""
    projection: dict[str, Any] | None = None
    """ROOT/projection.json (`pvision project ROOT`), read once; None: the report shows no projection."""
    explain_compare: dict[str, Any] | None = None
    """ROOT/explain/compare.json (`pvision explain ROOT`), read once; None: no trust section."""
    memory_per_worker: int | None = None
    """A declared memory budget per worker in bytes (`--memory-per-worker`): the sharding section says the largest
    model each strategy would fit in it; None: no such line."""

    def group(self, key: str) -> ConfigGroup:
        for g in self.groups:
            if g.key == key:
                return g
        raise KeyError(key)

    @property
    def frameworks(self) -> list[str]:
        return sorted({g.framework for g in self.groups}, key=framework_order)


def _point(g: ConfigGroup) -> Point | None:
    t, x = g.stats.get("mean_epoch_time_excl_warmup_s"), g.stats.get("images_per_s_excl_warmup")
    if t is None or x is None:
        return None
    target, missed = target_stats(g)
    return Point(key=g.key, label=g.label, framework=g.framework, strategy=g.strategy, workers=g.workers,
                 global_batch=g.global_batch, per_worker_batch=g.per_worker_batch, threads=g.threads,
                 family=g.family, time=t, throughput=x, target=target, target_missed=missed)


def build_report_data(root: str | Path, peak_gflops: float | None = None,
                      memory_per_worker: int | None = None) -> ReportData:
    """Read ROOT's store (synced with its result.json files), bench.json and projection.json, once."""
    root = Path(root)
    with open_store(root) as store:
        require_runs(store)
        runs = store.runs()
        epochs = {r["run_id"]: store.epochs(r["run_id"]) for r in runs}
        skipped = store.skipped()
        incomplete = store.runs(status="incomplete")
        unreadable = list(store.last_sync.unreadable) if store.last_sync else []

    groups, superseded = group_runs(runs, epochs)

    points = [p for p in (_point(g) for g in groups) if p is not None]
    strong = scaling_rows(points, STRONG)
    weak = scaling_rows(points, WEAK)

    manifest = read_manifest(root)
    return ReportData(
        root=root,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        groups=groups,
        skipped=skipped,
        incomplete=incomplete,
        superseded=superseded,
        strong=strong,
        weak=weak,
        environment=environment(groups),
        manifest=manifest,
        warnings=(warnings_for(groups, superseded, manifest, strong + weak, unreadable)
                  + straggler_warnings([r for g in groups for r in g.runs])),
        paper_rows=paper_rows(groups, strong),
        paper_checks=paper.published_scaling_checks(),
        protocol_rows=protocol_rows(groups),
        peak_gflops=peak_gflops,
        projection=read_projection(root),
        explain_compare=read_compare(root),
        memory_per_worker=memory_per_worker,
    )
