"""Per-rank step times (`summary.per_rank`) and the straggler rule, framework-free.

A torch DDP run on the CPU records, on every rank, each optimiser step's wall time and the part of it spent
waiting at a collective (engines/torch/loop.py: from the batch to the model's own forward, i.e. DDP's buffer
broadcast, plus from the last gradient to the optimiser, i.e. the all-reduce not hidden under backward); rank 0
gathers one small summary per rank at the end (`rank_summary`), written as `summary.per_rank`
(docs/reliability.md, "Stragglers"):

    [{"rank": 0, "host": "...", "steps": 64,
      "step_time_s": {"median", "p90", "max"},   # the step: batch, forward, backward, all-reduce, optimiser
      "comm_wait_s": {...},                      # waiting at the collectives: transfer + waiting for the others
      "compute_s": {...}}, ...]                  # step − wait: what this rank does on its own

Which rank lags is read from **compute**, not step time: a synchronous all-reduce ends every step at the same
moment on every rank, so the step times of a slow rank and of the ranks that wait for it are the same; the
slow rank shows in its compute, the others show it as extra wait at the collective.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

#: A rank is a straggler when its median compute per step is this much above the median of the other ranks'.
STRAGGLER_THRESHOLD = 0.10


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """median, p90 (nearest rank) and max of `values` (None each when there are none)."""
    if not values:
        return {"median": None, "p90": None, "max": None}
    ordered = sorted(float(v) for v in values)
    p90 = ordered[min(len(ordered) - 1, max(0, -(-9 * len(ordered) // 10) - 1))]
    return {"median": statistics.median(ordered), "p90": p90, "max": ordered[-1]}


def rank_summary(rank: int, host: str, steps: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """One rank's entry of `summary.per_rank` from its (step wall seconds, wait seconds) per step; compute is the
    step minus its wait, at least 0."""
    return {"rank": rank, "host": host, "steps": len(steps),
            "step_time_s": distribution([s for s, _ in steps]),
            "compute_s": distribution([max(0.0, s - c) for s, c in steps]),
            "comm_wait_s": distribution([c for _, c in steps])}


def _median(entry: dict[str, Any], key: str) -> float | None:
    value = (entry.get(key) or {}).get("median")
    return float(value) if isinstance(value, (int, float)) else None


def _usable(per_rank: Any) -> list[dict[str, Any]]:
    if not isinstance(per_rank, list):
        return []
    return [e for e in per_rank if isinstance(e, dict) and _median(e, "compute_s") is not None]


def straggler(per_rank: Any, threshold: float = STRAGGLER_THRESHOLD) -> dict[str, Any] | None:
    """The slowest rank, when its median compute per step is more than `threshold` above the median of the
    other ranks' medians; None otherwise (or with fewer than two ranks recorded).

    Returns rank, host, behind (the fraction above the others), its compute and the others' (median s per
    step), and the wait it caused: the others' median wait per step at the collectives beside its own (the
    difference is what they spent waiting for it)."""
    ranks = _usable(per_rank)
    if len(ranks) < 2:
        return None
    slow = max(ranks, key=lambda e: _median(e, "compute_s") or 0.0)
    others = [e for e in ranks if e is not slow]
    mine = _median(slow, "compute_s") or 0.0
    typical = statistics.median(_median(e, "compute_s") or 0.0 for e in others)
    if typical <= 0 or mine <= typical * (1 + threshold):
        return None
    waits = [w for w in (_median(e, "comm_wait_s") for e in others) if w is not None]
    others_wait = statistics.median(waits) if waits else None
    own_wait = _median(slow, "comm_wait_s")
    caused = others_wait - own_wait if others_wait is not None and own_wait is not None else None
    return {"rank": slow.get("rank"), "host": slow.get("host"), "behind": mine / typical - 1,
            "compute_s": mine, "others_compute_s": typical, "others_wait_s": others_wait, "own_wait_s": own_wait,
            "wait_caused_s": caused}


def rank_spread_s(per_rank: Any) -> float | None:
    """Seconds per step the slowest rank's median compute is above the median of the other ranks' (≥ 0):
    what every step of a synchronous run waits for its slowest rank (None with fewer than two ranks)."""
    ranks = _usable(per_rank)
    if len(ranks) < 2:
        return None
    computes = sorted(_median(e, "compute_s") or 0.0 for e in ranks)
    return max(0.0, computes[-1] - statistics.median(computes[:-1]))


def describe(name: str, flag: dict[str, Any]) -> str:
    """The report's one-line warning for a run with a straggler."""
    where = f" on {flag['host']}" if flag.get("host") else ""
    text = (f"{name}: rank {flag['rank']}{where} is a straggler: its compute per step (median "
            f"{flag['compute_s'] * 1e3:.1f} ms) is {flag['behind'] * 100:.0f} % above the other ranks' "
            f"({flag['others_compute_s'] * 1e3:.1f} ms)")
    if flag.get("wait_caused_s") is not None:
        text += (f"; the others waited {flag['others_wait_s'] * 1e3:.1f} ms per step at the collectives "
                 f"(rank {flag['rank']}: {flag['own_wait_s'] * 1e3:.1f} ms), "
                 f"{flag['wait_caused_s'] * 1e3:.1f} ms of it for rank {flag['rank']}")
    return text


def straggler_warnings(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The report's warnings: one per run (a result or a store row) whose `summary.per_rank` has a straggler."""
    warnings = []
    for run in runs:
        flag = straggler((run.get("summary") or {}).get("per_rank"))
        if flag is not None:
            warnings.append(describe(str(run.get("name") or run.get("run_id")), flag))
    return warnings
