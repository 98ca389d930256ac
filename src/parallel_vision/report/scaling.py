"""Speedup and efficiency: the definitions, written once, used by every table and figure.

- T: mean epoch time excluding the warm-up (first) epoch,
  `summary.mean_epoch_time_excl_warmup_s` (equal to the epoch time for 1-epoch runs).
- X: throughput, training images per second excluding the warm-up epoch,
  `summary.images_per_s_excl_warmup`.
- Strong scaling (global batch fixed): S(N) = T(1) / T(N).
- Weak scaling (per-worker batch fixed, global = per-worker × N): S(N) = X(N) / X(1).
- Efficiency: E(N) = S(N) / N.
- Baseline: the same framework's 1-worker run with the same threads per worker
  (and the same everything else); the speedup against the best (fastest)
  single-process run of that framework, whatever its threads, is given too.
- Speedup to target: T_target(1) / T_target(N), T_target = training time to the end of the first epoch
  whose test accuracy reaches the declared target (`summary.time_to_target_s`); a configuration with a
  repeat that never reached it is "not reached", never dropped.
- Repeats: medians, with the min–max range. A ratio's range pairs the extremes:
  S_strong ∈ [min T(1) / max T(N), max T(1) / min T(N)].
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

STRONG = "strong"
WEAK = "weak"

#: (term, definition) pairs shown verbatim in the report.
DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("Epoch time", "wall time of one epoch's training loop, device synchronised, evaluation excluded. "
                   "The first epoch (warm-up: tracing, caches, allocator) is reported alone."),
    ("T (steady epoch time)", "mean epoch time excluding the warm-up epoch "
                              "(summary.mean_epoch_time_excl_warmup_s)."),
    ("X (throughput)", "training images ÷ epoch time, excluding the warm-up epoch "
                       "(summary.images_per_s_excl_warmup)."),
    ("Strong scaling", "global batch fixed; speedup S(N) = T(1) ÷ T(N)."),
    ("Weak scaling", "per-worker batch fixed (global batch = per-worker × N); speedup S(N) = X(N) ÷ X(1)."),
    ("Efficiency", "E(N) = S(N) ÷ N; 100 % is perfect scaling."),
    ("Baseline", "the same framework's 1-worker run with the same threads per worker and otherwise the "
                 "same configuration. S vs best single-process: against that framework's fastest "
                 "1-worker run, whatever its thread count."),
    ("Threads per worker", "a process's CPU threads ÷ the replicas it hosts (single, ddp, multiworker: "
                           "1 replica per process; mirrored, dp: all replicas share one process)."),
    ("Time to target", "with --target-accuracy A: training time (epoch times summed, evaluation excluded) to "
                       "the end of the first epoch whose full-test-set accuracy reaches A (summary.time_to_target_s)."),
    ("Speedup to target", "T_target(1) ÷ T_target(N), beside the epoch-time speedup: what N workers buy in time "
                          "to the same accuracy. A run that never reached the target is shown as not reached."),
    ("Repeats", "medians over repeats, with the min–max range; a ratio's range pairs the extremes, "
                "e.g. S ∈ [min T(1) ÷ max T(N), max T(1) ÷ min T(N)]."),
    ("Test metrics", "every test image evaluated exactly once, whatever the number of workers."),
    ("Total time", "from the command's launch to the result being written: process start-up, framework "
                   "import, data loading, model build, every epoch and every evaluation."),
)


# --------------------------------------------------------------------------- the arithmetic
def speedup_strong(t1: float, tn: float) -> float:
    """S(N) = T(1) / T(N): how many times shorter an epoch is with N workers (global batch fixed)."""
    if t1 <= 0 or tn <= 0:
        raise ValueError("epoch times must be positive")
    return t1 / tn


def speedup_weak(x1: float, xn: float) -> float:
    """S(N) = X(N) / X(1): how many times more images per second N workers process (per-worker batch
    fixed)."""
    if x1 <= 0 or xn <= 0:
        raise ValueError("throughputs must be positive")
    return xn / x1


def efficiency(speedup: float, workers: int) -> float:
    """E(N) = S(N) / N."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    return speedup / workers


@dataclass(frozen=True)
class Spread:
    """Median and min–max of a measured quantity over repeats."""

    median: float
    lo: float
    hi: float
    n: int

    @property
    def has_range(self) -> bool:
        return self.n > 1


def spread(values: Iterable[float | None]) -> Spread | None:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return Spread(statistics.median(vals), min(vals), max(vals), len(vals))


def ratio_spread(numerator: Spread, denominator: Spread) -> Spread:
    """numerator ÷ denominator with its range from the extremes (median of ratio = ratio of medians)."""
    return Spread(
        numerator.median / denominator.median,
        numerator.lo / denominator.hi,
        numerator.hi / denominator.lo,
        min(numerator.n, denominator.n),
    )


def scale_spread(s: Spread, factor: float) -> Spread:
    return Spread(s.median * factor, s.lo * factor, s.hi * factor, s.n)


# --------------------------------------------------------------------------- pairing runs
@dataclass(frozen=True)
class Point:
    """One configuration's aggregated timing, as scaling needs it."""

    key: str
    label: str
    framework: str
    strategy: str
    workers: int
    global_batch: int
    per_worker_batch: int
    threads: float | None
    """threads per worker (replica)."""
    family: Hashable
    """Every other identity field (epochs, data, optimiser, …): only equal families are compared."""
    time: Spread
    throughput: Spread
    target: Spread | None = None
    """Time to the target accuracy over the repeats that reached it (None: no target, or none reached)."""
    target_missed: int | None = None
    """Repeats that never reached the target; None when the runs declared no target."""

    @property
    def target_reached(self) -> bool:
        return self.target is not None and not self.target_missed


@dataclass(frozen=True)
class ScalingRow:
    mode: str
    point: Point
    baseline: Point
    same_threads: bool
    speedup: Spread
    efficiency: Spread
    best: Point
    speedup_vs_best: Spread
    speedup_to_target: Spread | None = None

    @property
    def workers(self) -> int:
        return self.point.workers

    @property
    def target_text(self) -> str:
        """Speedup to target as the table shows it: the ratio, "not reached (1 / N workers)", or "—"."""
        return target_speedup_text(self.baseline, self.point, self.speedup_to_target)


def target_speedup_text(baseline: Point, point: Point, speedup: Spread | None) -> str:
    if point.target_missed is None and baseline.target_missed is None:
        return "—"
    missing = [f"{q.workers} worker{'s' if q.workers > 1 else ''}" for q in (baseline, point)
               if not q.target_reached]
    if missing:
        return "not reached (" + ", ".join(missing) + ")"
    assert speedup is not None
    if not speedup.has_range:
        return f"{speedup.median:.2f}"
    return f"{speedup.median:.2f} [{speedup.lo:.2f}–{speedup.hi:.2f}]"


def _metric(p: Point, mode: str) -> Spread:
    return p.time if mode == STRONG else p.throughput


def _speedup(base: Point, p: Point, mode: str) -> Spread:
    if mode == STRONG:
        return ratio_spread(base.time, p.time)
    return ratio_spread(p.throughput, base.throughput)


def scaling_rows(points: Sequence[Point], mode: str) -> list[ScalingRow]:
    """One row per N>1 configuration that has a 1-worker baseline for `mode` (strong or weak)."""
    if mode not in (STRONG, WEAK):
        raise ValueError(f"mode must be {STRONG!r} or {WEAK!r}")
    rows: list[ScalingRow] = []
    for p in points:
        if p.workers <= 1:
            continue
        wanted_batch = p.global_batch if mode == STRONG else p.per_worker_batch
        if mode == WEAK and p.global_batch == p.per_worker_batch:
            continue
        candidates = [q for q in points if q.workers == 1 and q.framework == p.framework
                      and q.family == p.family and q.global_batch == wanted_batch]
        if not candidates:
            continue
        same = [q for q in candidates if q.threads is not None and q.threads == p.threads]
        if same:
            baseline = same[0]
        else:
            baseline = min(candidates, key=lambda q: abs((q.threads or 0) - (p.threads or 0)))
        if mode == STRONG:
            best = min(candidates, key=lambda q: q.time.median)
        else:
            best = max(candidates, key=lambda q: q.throughput.median)
        s = _speedup(baseline, p, mode)
        to_target = (ratio_spread(baseline.target, p.target) if baseline.target_reached and p.target_reached
                     and baseline.target is not None and p.target is not None else None)
        rows.append(ScalingRow(
            mode=mode, point=p, baseline=baseline, same_threads=bool(same), speedup=s,
            efficiency=scale_spread(s, 1.0 / p.workers), best=best, speedup_vs_best=_speedup(best, p, mode),
            speedup_to_target=to_target,
        ))
    rows.sort(key=lambda r: (r.point.framework, r.point.strategy, r.point.workers))
    return rows
