"""`pvision report ROOT --memory-per-worker 16GiB`: the largest model each strategy would fit in a declared
memory budget per worker, from what the runs measured (docs/parallelism.md).

For each strategy the line uses the run of the largest model (in parameters) that recorded its state: its
bytes of training state per parameter (state bytes per worker ÷ parameters, at its N) and its activation bytes
per worker. The model that fits is P = (budget − activations) ÷ bytes per parameter; the sentence names the
assumptions that make it an estimate.
"""

from __future__ import annotations

import math
import re

from parallel_vision.errors import ConfigError
from parallel_vision.report.sharding import COMPARED, ShardRow, mib

#: Units `parse_size` reads: binary (KiB…TiB, powers of 1024) and decimal (kB…TB, powers of 1000).
UNITS = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
         "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]+)\s*$")


def parse_size(text: str) -> int:
    """'16GiB' -> 17179869184; '512MiB', '8GB', '1.5 GiB' too. One-line ConfigError for anything else."""
    example = "e.g. 16GiB, 512MiB or 8GB"
    match = _SIZE.match(text or "")
    if not match:
        raise ConfigError(f"--memory-per-worker: cannot read {text!r} as a size: a number and a unit, {example}")
    number, unit = match.groups()
    factor = UNITS.get(unit.lower())
    if factor is None:
        raise ConfigError(f"--memory-per-worker: unknown unit {unit!r} in {text!r}; use one of "
                          "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB")
    size = float(number) * factor
    if not math.isfinite(size) or size < 1:
        raise ConfigError(f"--memory-per-worker must be at least 1 byte; got {text!r} ({example})")
    return int(size)


def size_text(n: float) -> str:
    """Bytes as the largest binary unit that keeps a number ≥ 1: '16 GiB', '512 MiB'."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = UNITS[unit.lower()]
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n:.0f} B"


def count_text(n: float) -> str:
    """Parameters in words: '1.23 billion', '312 million'."""
    for word, factor in (("trillion", 1e12), ("billion", 1e9), ("million", 1e6), ("thousand", 1e3)):
        if n >= factor:
            return f"{n / factor:.3g} {word}"
    return f"{n:.0f}"


def reference_rows(rows: list[ShardRow]) -> list[ShardRow]:
    """Per strategy (variant), the measured run of the largest model, in COMPARED order."""
    best: dict[str, ShardRow] = {}
    for r in rows:
        held = best.get(r.name)
        if held is None or (r.n_parameters, r.workers) > (held.n_parameters, held.workers):
            best[r.name] = r
    return sorted(best.values(), key=lambda r: (COMPARED.index(r.strategy), r.name))


def fits(row: ShardRow, budget: int) -> float:
    """Parameters that fit: (budget − activations) ÷ measured bytes per parameter (0 if activations fill it)."""
    return max(0.0, (budget - (row.activations or 0.0)) / row.bytes_per_parameter)


def budget_line(row: ShardRow, budget: int) -> str:
    """One sentence: the largest model `row`'s strategy would fit in `budget` bytes per worker, and why."""
    g = row.group
    acts = (f"{mib(row.activations)} MiB of activations ({g.model}'s, {g.per_worker_batch} images per worker)"
            if row.activations is not None else "no activations (the run did not record them)")
    measured = (f"{row.bytes_per_parameter:.2f} B of state per parameter measured on {g.model} at N = {row.workers} "
                f"(fp32, {row.k} B of optimizer state per parameter)")
    growth = " (FSDP's largest unit taken to grow with the model)" if row.strategy == "fsdp" else ""
    rss = f": peak RSS was {row.rss_mib:,.0f} MiB here" if row.rss_mib is not None else ""
    assumptions = (f"assuming the bytes per parameter stay as measured at N = {row.workers}{growth}, activations stay "
                   f"as measured, and nothing else (framework runtime, data, buffers{rss}) takes memory")
    n = fits(row, budget)
    if n == 0:
        return (f"{row.variant}: nothing fits in {size_text(budget)} per worker: {acts} alone fill it "
                f"({measured}; {assumptions}).")
    return (f"{row.variant}: about {count_text(n)} parameters fit in {size_text(budget)} per worker, at "
            f"{measured} plus {acts}; {assumptions}.")


def budget_lines(rows: list[ShardRow], budget: int) -> list[str]:
    """A line per strategy that recorded its state bytes; one line saying none did, if none did."""
    refs = reference_rows(rows)
    if not refs:
        return [f"No run recorded its state bytes per worker (summary.state_bytes_per_worker), so no model size "
                f"can be estimated for {size_text(budget)} per worker."]
    return [budget_line(r, budget) for r in refs]
