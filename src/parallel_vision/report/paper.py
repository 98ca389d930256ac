"""The paper's published numbers (report/paper_numbers.json) and what its "scaling" can mean.

The paper never defines "scaling". `published_scaling_checks` recomputes the
candidate definitions from its own published times so the report can say which
one (if any) reproduces each published percentage.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

#: Two published figures "match" when they agree to this many percentage points (rounding).
MATCH_TOLERANCE_PP = 0.06


@lru_cache(maxsize=1)
def paper_numbers() -> dict[str, Any]:
    text = resources.files("parallel_vision.report").joinpath("paper_numbers.json").read_text()
    return json.loads(text)


def configurations() -> list[dict[str, Any]]:
    return list(paper_numbers()["configurations"])


def by_key(key: str) -> dict[str, Any]:
    for c in configurations():
        if c["key"] == key:
            return c
    raise KeyError(key)


def candidate_scalings(cfg: dict[str, Any]) -> dict[str, float]:
    """The paper's scaling percentage under each plausible definition, from its own numbers."""
    base = by_key(cfg["baseline"])
    n = cfg["workers"]
    return {
        "total-time efficiency T_total(1) ÷ (N·T_total(N))":
            100.0 * base["total_time_s"] / (n * cfg["total_time_s"]),
        "epoch-time efficiency T_epoch(1) ÷ (N·T_epoch(N))":
            100.0 * base["mean_epoch_time_s"] / (n * cfg["mean_epoch_time_s"]),
        "total-time speedup T_total(1) ÷ T_total(N)": 100.0 * base["total_time_s"] / cfg["total_time_s"],
        "epoch-time speedup T_epoch(1) ÷ T_epoch(N)":
            100.0 * base["mean_epoch_time_s"] / cfg["mean_epoch_time_s"],
    }


def published_scaling_checks() -> list[dict[str, Any]]:
    """For each published scaling figure: the candidates and the one that reproduces it, if any."""
    checks = []
    for cfg in configurations():
        if cfg.get("scaling_pct") is None:
            continue
        candidates = candidate_scalings(cfg)
        matches = [name for name, value in candidates.items()
                   if abs(value - cfg["scaling_pct"]) <= MATCH_TOLERANCE_PP]
        checks.append({
            "key": cfg["key"],
            "label": cfg["label"],
            "published_pct": cfg["scaling_pct"],
            "candidates": candidates,
            "matches": matches,
        })
    return checks


def scaling_sentence(check: dict[str, Any]) -> str:
    """One sentence on what a published scaling figure is, computed from the paper's numbers."""
    c = check["candidates"]
    tt = c["total-time efficiency T_total(1) ÷ (N·T_total(N))"]
    et = c["epoch-time efficiency T_epoch(1) ÷ (N·T_epoch(N))"]
    if check["matches"]:
        return (f"{check['label']}: the published {check['published_pct']:.2f} % is reproduced by "
                f"{' and '.join(check['matches'])} from the paper's own times "
                f"(epoch-time efficiency would be {et:.1f} %).")
    return (f"{check['label']}: the published {check['published_pct']:.2f} % is reproduced by no definition "
            f"we tried on the paper's own times (total-time efficiency {tt:.2f} %, epoch-time efficiency "
            f"{et:.2f} %).")
