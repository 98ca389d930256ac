"""The report's per-rank view: every rank's step time, compute and wait at the all-reduce, the straggler marked
(the rule and the report's warning: results/stragglers.py, docs/reliability.md)."""

from __future__ import annotations

from typing import Any

from parallel_vision.report.groups import ConfigGroup
from parallel_vision.report.tables import Table
from parallel_vision.results.stragglers import STRAGGLER_THRESHOLD, straggler


def runs_with_ranks(groups: list[ConfigGroup]) -> list[tuple[ConfigGroup, dict[str, Any]]]:
    """Every reported run that recorded per-rank step times, with its configuration."""
    return [(g, r) for g in groups for r in g.runs if isinstance((r.get("summary") or {}).get("per_rank"), list)]


def _ms(value: Any) -> str:
    return f"{float(value) * 1e3:.1f}" if isinstance(value, (int, float)) else "–"


def _cell(entry: dict[str, Any], key: str) -> str:
    d = entry.get(key) or {}
    return f"{_ms(d.get('median'))} / {_ms(d.get('p90'))} / {_ms(d.get('max'))}"


def per_rank_table(groups: list[ConfigGroup]) -> Table:
    """One row per rank of every run with per-rank step times; median / p90 / max in ms."""
    headers = ["Run", "Rank", "Host", "Steps", "Step (ms)", "Compute (ms)", "Wait at collectives (ms)", "Straggler"]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for g, r in runs_with_ranks(groups):
        flag = straggler(r["summary"]["per_rank"])
        for entry in r["summary"]["per_rank"]:
            mark = ""
            if flag is not None and entry.get("rank") == flag["rank"]:
                mark = f"yes: +{flag['behind'] * 100:.0f} % compute"
            rows.append([str(r.get("name") or r.get("run_id")), str(entry.get("rank")), str(entry.get("host") or ""),
                         str(entry.get("steps")), _cell(entry, "step_time_s"), _cell(entry, "compute_s"),
                         _cell(entry, "comm_wait_s"), mark])
            colors.append(g.color)
    return Table(headers, rows, colors, "lrlrrrrl")


NOTE = ("Median / p90 / max per optimiser step on each rank (torch DDP on the CPU). Wait: DDP's buffer broadcast "
        "before forward plus the all-reduce not hidden under backward; compute: the step minus the wait. A rank is "
        f"flagged when its median compute is more than {STRAGGLER_THRESHOLD * 100:.0f} % above the median of the "
        "other ranks' (step times cannot show it: the "
        "all-reduce ends every step at the same moment on every rank, so the others show a straggler as wait).")
