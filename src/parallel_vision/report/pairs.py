"""Configurations lined up for comparison: ours beside the paper's, and SGD beside Adam (the protocol)."""

from __future__ import annotations

from typing import Any

from parallel_vision.report import paper
from parallel_vision.report.groups import ConfigGroup
from parallel_vision.report.scaling import ScalingRow


def paper_rows(groups: list[ConfigGroup], strong: list[ScalingRow]) -> list[dict[str, Any]]:
    """Each of the paper's configurations with ours of the same framework, strategy and workers (best match first),
    their strong-scaling row and total-time efficiency."""
    rows = []
    for pc in paper.configurations():
        ours = [g for g in groups if g.framework == pc["framework"] and g.strategy == pc["strategy"]
                and g.workers == pc["workers"]]
        # Prefer the scaling series (same threads per worker) over the all-cores reference.
        ours.sort(key=lambda g: (g.role == "reference", g.optimizer_text != _paper_optimizer_text(pc, g)))
        matches = []
        for g in ours:
            srow = next((r for r in strong if r.point.key == g.key), None)
            total_eff = None
            if srow is not None:
                base_total = srow.baseline.key
                bt = next(x for x in groups if x.key == base_total).stats.get("total_time_s")
                nt = g.stats.get("total_time_s")
                if bt and nt:
                    total_eff = 100.0 * bt.median / (g.workers * nt.median)
            matches.append({"group": g, "scaling": srow, "total_time_efficiency_pct": total_eff})
        rows.append({"paper": pc, "ours": matches})
    return rows


def _paper_optimizer_text(pc: dict[str, Any], g: ConfigGroup) -> str:
    return g.optimizer_text if g.config["optimizer"] == pc["optimizer"] else "?"


def protocol_rows(groups: list[ConfigGroup]) -> list[dict[str, Any]]:
    """Pairs of configurations that differ only in the optimiser: what the paper's protocol changes."""
    rows = []
    for g in groups:
        if g.config["optimizer"] != "sgd":
            continue
        for h in groups:
            if h.config["optimizer"] == "adam" and _without_optimiser(h) == _without_optimiser(g):
                rows.append({"sgd": g, "adam": h})
    return rows


def _without_optimiser(g: ConfigGroup) -> dict[str, Any]:
    return {k: v for k, v in g.first["identity"].items() if k not in ("optimizer", "lr", "momentum")}
