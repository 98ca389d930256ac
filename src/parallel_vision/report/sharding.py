"""Sharding: memory per worker vs speed (docs/parallelism.md). DDP, ZeRO-1 and FSDP side by side, per model.

Every number comes from the runs' result.json (never from training): `summary.state_bytes_per_worker` (the
parameter, gradient and optimizer bytes each rank held, and FSDP's unsharded peak), `activation_bytes_per_worker`,
`comm_bytes_by_op`, `zero1_partition`, peak RSS and images/s. Beside them, what the ZeRO paper's formulas
(arXiv 1910.02054, fp32) predict for P parameters over N workers:

- replicated (single, ddp): 4 B parameters + 4 B gradients + k B optimizer state per parameter;
- ZeRO-1 (zero1): 4 + 4 + k/N;
- FSDP (fsdp): (4 + 4 + k)/N, plus the largest unit's unsharded parameters (the whole model without resharding);

k = 8 for Adam (two fp32 moments), 4 for SGD with momentum, 0 for plain SGD (read from each run's config). Where a
measurement differs, `explain` says why in words, from the records (ZeRO-1's uneven partition, for one).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from parallel_vision.bench.machine import BUSY_CORES
from parallel_vision.report.groups import ConfigGroup
from parallel_vision.report.state_formulas import (
    StateBytes,
    formula,
    formula_text,
    fsdp_units,
    largest_shard_bytes,
    largest_unit,
    optimizer_bytes_per_parameter,
    optimizer_words,
    parameter_shapes,
)
from parallel_vision.report.tables import Table

SHARDED = ("zero1", "fsdp")
#: The strategies the section compares, in the order it shows them (single: the 1-worker baseline).
COMPARED = ("single", "ddp", "zero1", "fsdp")
COLLECTIVE_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
COMPONENTS = ("parameters", "gradients", "optimizer", "unsharded")
MIB = 2 ** 20
#: A measurement within this share of the formula's total is "as predicted".
TOLERANCE = 0.01
#: Config fields that tell variants of one strategy apart, not the workload: left out of the comparison key.
_STRATEGY_FIELDS = ("reshard_after_forward",)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class ShardRow:
    """One configuration's measured memory and speed, and what the formula predicts for it."""

    group: ConfigGroup
    n_parameters: int
    measured: StateBytes
    """The largest rank's bytes, per component (unsharded: FSDP's unsharded peak, else 0)."""
    predicted: StateBytes
    k: int
    activations: float | None
    rss_mib: float | None
    """Median over repeats of the largest worker's peak RSS."""
    images_per_s: float | None
    comm: dict[str, float | None]
    """Bytes per optimiser step per worker, by collective kind."""
    partition: list[int] | None
    """ZeRO-1: bytes of parameters whose optimizer state each rank owns."""
    how: str

    @property
    def strategy(self) -> str:
        return self.group.strategy

    @property
    def workers(self) -> int:
        return self.group.workers

    @property
    def name(self) -> str:
        """'fsdp', or 'fsdp (no reshard)' for FSDP that keeps the parameters unsharded after forward."""
        if self.strategy == "fsdp" and self.group.config.get("reshard_after_forward") is False:
            return "fsdp (no reshard)"
        return self.strategy

    @property
    def variant(self) -> str:
        """'fsdp ×2'."""
        return f"{self.name} ×{self.workers}"

    @property
    def bytes_per_parameter(self) -> float:
        return self.measured.total / self.n_parameters


def state_of(run: dict[str, Any]) -> dict[str, Any] | None:
    state = (run.get("summary") or {}).get("state_bytes_per_worker")
    return state if isinstance(state, dict) else None


def _measured(state: dict[str, Any]) -> StateBytes:
    """The largest rank's state. The record's total is parameters + gradients + optimizer (engines/torch/
    footprint.py); FSDP's unsharded peak, recorded apart, is a component of its own here: at the peak of a step a
    worker holds its shards and the gathered parameters at once."""
    parts = [float(state.get(c) or 0) for c in ("parameters", "gradients", "optimizer")]
    return StateBytes(*parts, unsharded=float(state.get("unsharded_peak") or 0))


def n_parameters(run: dict[str, Any], state: dict[str, Any]) -> int:
    """Trainable parameters: summary.n_parameters, else the workload block's count, else fp32 parameter bytes
    ÷ 4 (replicated strategies only: their parameter bytes are the whole model)."""
    summary = run.get("summary") or {}
    if summary.get("n_parameters"):
        return int(summary["n_parameters"])
    if (run.get("workload") or {}).get("parameters"):
        return int(run["workload"]["parameters"])
    return int(float(state.get("parameters") or 0) // 4)


def shard_row(g: ConfigGroup) -> ShardRow | None:
    """The row of a configuration whose runs recorded their state bytes (None otherwise)."""
    runs = [r for r in g.runs if state_of(r)]
    if not runs:
        return None
    state = state_of(runs[0])
    assert state is not None
    summary = runs[0]["summary"]
    params = n_parameters(runs[0], state)
    k = optimizer_bytes_per_parameter(g.config)
    measured = _measured(state)
    unit = 0.0
    if g.strategy == "fsdp":
        # the largest unit gathered for its forward or backward; without resharding, the whole model stays gathered
        # from forward to backward
        unit = 4.0 * (params if g.config.get("reshard_after_forward") is False else largest_unit(g.workload)[1])
    rss = [max(r["summary"]["peak_rss_mib_per_worker"]) for r in runs if r["summary"].get("peak_rss_mib_per_worker")]
    acts = [float(r["summary"]["activation_bytes_per_worker"]) for r in runs
            if r["summary"].get("activation_bytes_per_worker") is not None]
    comm: dict[str, float | None] = {}
    for kind in COLLECTIVE_KINDS:
        comm[kind] = _median([float(r["summary"]["comm_bytes_by_op"][kind]) for r in runs
                              if (r["summary"].get("comm_bytes_by_op") or {}).get(kind) is not None])
    images = g.stats.get("images_per_s_excl_warmup")
    partition = summary.get("zero1_partition")
    return ShardRow(group=g, n_parameters=params, measured=measured,
                    predicted=formula(g.strategy, g.workers, params, k, unit), k=k, activations=_median(acts),
                    rss_mib=_median(rss), images_per_s=images.median if images else None, comm=comm,
                    partition=[int(b) for b in partition] if isinstance(partition, list) else None,
                    how=str(state.get("how") or ""))


# ------------------------------------------------------------------------------------------ comparisons
@dataclass(frozen=True)
class Comparison:
    """One model at one worker count N: its ddp, zero1 and fsdp runs, and the 1-worker single baseline."""

    model: str
    workers: int
    rows: list[ShardRow]

    def of(self, strategy: str) -> ShardRow | None:
        return next((r for r in self.rows if r.strategy == strategy), None)

    @property
    def sharded(self) -> list[ShardRow]:
        return [r for r in self.rows if r.strategy in SHARDED]


def _key(g: ConfigGroup) -> str:
    """What must be equal to compare two configurations: everything but the strategy, its variant fields,
    the worker count and the threads (the global batch stays)."""
    family = {k: v for k, v in g.family if k not in _STRATEGY_FIELDS}
    return json.dumps([g.framework, g.global_batch, sorted(family.items())])


def state_rows(groups: list[ConfigGroup]) -> list[ShardRow]:
    """A row for every torch configuration of the compared strategies whose runs recorded their state bytes."""
    rows = (shard_row(g) for g in groups if g.framework == "torch" and g.strategy in COMPARED)
    return [r for r in rows if r is not None]


def comparisons(groups: list[ConfigGroup]) -> list[Comparison]:
    """For every (model, N > 1) that has a zero1 or fsdp run with state bytes: the rows of that workload, the
    1-worker single run first, then ddp, zero1 and fsdp at N. Empty: the results hold no sharded run."""
    rows = state_rows(groups)
    out: list[Comparison] = []
    seen: set[tuple[str, int]] = set()
    for sharded in (r for r in rows if r.strategy in SHARDED):
        key, n = _key(sharded.group), sharded.workers
        if (key, n) in seen:
            continue
        seen.add((key, n))
        members = [r for r in rows if _key(r.group) == key and (r.workers == n or r.strategy == "single")]
        members.sort(key=lambda r: (COMPARED.index(r.strategy), r.variant))
        out.append(Comparison(model=sharded.group.model, workers=n, rows=members))
    return out


def has_sharded_runs(groups: list[ConfigGroup]) -> bool:
    return bool(comparisons(groups))


# ------------------------------------------------------------------------------------------ the words
def mib(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value / MIB:,.{digits}f}"


def amount(value: float) -> str:
    """Bytes in MiB, or in KiB (B) below one MiB (KiB)."""
    if abs(value) >= MIB:
        return f"{mib(value)} MiB"
    return f"{value / 1024:.2f} KiB" if abs(value) >= 1024 else f"{value:.0f} B"


def _share(value: float, of: float) -> str:
    return f"{100 * value / of:.0f} %" if of else "—"


def _names(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _unsharded_note(row: ShardRow, diffs: dict[str, float]) -> str:
    """What FSDP's unsharded peak holds: the largest unit (or the whole model), plus the root's parameters, which
    FSDP2 keeps gathered from forward to backward. Takes the part it explains out of `diffs`."""
    if row.group.config.get("reshard_after_forward") is False:
        return "unsharded: the whole model (4 B × P), gathered from forward to backward without resharding"
    units, root = fsdp_units(row.group.workload)
    name, size = largest_unit(row.group.workload)
    note = f"largest unit: {name}, {amount(4 * size)}"
    extra = diffs["unsharded"]
    root_bytes = 4 * sum(root.values())
    if root_bytes and abs(extra - root_bytes) <= max(64.0, TOLERANCE * root_bytes):
        diffs["unsharded"] -= root_bytes
        note += (f"; beside it the root's parameters ({_names(list(root))}: {amount(root_bytes)}) stay gathered "
                 "beside it (the root's forward encloses every unit's)")
    return note


def explain(row: ShardRow) -> str:
    """Why the measurement differs from the formula, from the records; 'as predicted' within TOLERANCE."""
    diffs = {c: row.measured.get(c) - row.predicted.get(c) for c in COMPONENTS}
    notes: list[str] = []
    if row.strategy == "fsdp":
        notes.append(_unsharded_note(row, diffs))
    partition = row.partition
    if row.strategy == "zero1" and partition and len(partition) > 1 and sum(partition):
        largest = max(partition)
        even = sum(partition) / len(partition)
        owner = partition.index(largest)
        if largest > even * (1 + TOLERANCE):
            notes.append(
                f"ZeRO-1's sorted-greedy partition is uneven: rank {owner} owns the optimizer state of "
                f"{mib(largest)} of {mib(sum(partition))} MiB of parameters ({_share(largest, sum(partition))}, "
                f"not 1/{len(partition)}), since a whole tensor goes to one rank; its optimizer state is "
                f"{row.k}/4 × {mib(largest)} = {mib(row.k / 4 * largest)} MiB, not {row.k}·P/{row.workers} = "
                f"{mib(row.predicted.optimizer)} MiB")
            diffs["optimizer"] -= row.k / 4 * largest - row.predicted.optimizer
    tensors = len(parameter_shapes(row.group.workload))
    if row.k == 8 and 0 < diffs["optimizer"] <= 4 * tensors:
        notes.append(f"Adam keeps a 4-byte step count per parameter tensor ({tensors} tensors), which the formula "
                     f"does not count: {diffs['optimizer']:.0f} B")
        diffs["optimizer"] = 0.0
    chunked = largest_shard_bytes(row.group.workload, row.workers) - row.predicted.parameters
    if row.strategy == "fsdp" and chunked > 0 and diffs["parameters"] > 0:
        notes.append(f"FSDP splits every tensor's rows into N chunks of ⌈rows/N⌉ (torch.chunk), so rank 0's shard "
                     f"holds {chunked:.0f} B of parameters more than P/N (and its gradients and optimizer state "
                     "as much more in proportion)")
        for c, scale in (("parameters", 1.0), ("gradients", 1.0), ("optimizer", row.k / 4)):
            diffs[c] -= min(diffs[c], chunked * scale) if diffs[c] > 0 else 0.0
    left = {c: d for c, d in diffs.items() if abs(d) > TOLERANCE * row.predicted.total}
    if left:
        notes.append("not explained by the formula's terms: " + ", ".join(
            f"{c} {'+' if d > 0 else '−'}{mib(abs(d))} MiB" for c, d in left.items())
            + (f" (how it was measured: {row.how})" if row.how else ""))
    total_diff = row.measured.total - row.predicted.total
    head = "as predicted"
    if abs(total_diff) > TOLERANCE * row.predicted.total:
        head = (f"{'+' if total_diff > 0 else '−'}{mib(abs(total_diff))} MiB "
                f"({_share(abs(total_diff), row.predicted.total)} of the prediction)")
    return head + (": " + "; ".join(notes) if notes else "") + "."


def advice(c: Comparison) -> str:
    """One sentence, every number from the records: what sharding saves for this model at N workers and what
    it costs in throughput against ddp; where activations outweigh the state, that it saves little of a step."""
    ddp = c.of("ddp")
    if ddp is None or not c.sharded:
        return f"{c.model} at {c.workers} workers: no ddp run to compare the sharded ones with."
    base = ddp.measured.total

    def speed(r: ShardRow) -> str:
        if r.images_per_s and ddp.images_per_s:
            return f" at {100 * r.images_per_s / ddp.images_per_s:.0f} % of ddp's throughput"
        return ""

    best = min(c.sharded, key=lambda r: r.measured.total)
    rest = [r for r in c.sharded if r is not best]
    acts = ddp.activations
    if acts is not None and acts > base:
        saved = base - best.measured.total
        rss = ""
        if ddp.rss_mib is not None and best.rss_mib is not None:
            rss = f"; peak RSS {ddp.rss_mib:,.0f} MiB under ddp, {best.rss_mib:,.0f} under {best.name}"
        sentence = (f"At {c.workers} workers, for {c.model}, activations dominate ({mib(acts)} MiB against "
                    f"{mib(base)} MiB of state per worker under ddp), so {best.name} "
                    f"{'saves' if saved >= 0 else 'adds'} {mib(abs(saved))} MiB of the {mib(base + acts)} MiB a step "
                    f"holds{speed(best)}"
                    + "".join(f"; {r.name} holds {mib(r.measured.total)} MiB of state{speed(r)}" for r in rest)
                    + f"{rss}.")
    else:
        sentence = (f"At {c.workers} workers, {best.name} cuts {c.model}'s state per worker from {mib(base)} to "
                    f"{mib(best.measured.total)} MiB{speed(best)}"
                    + "".join(f"; {r.name} to {mib(r.measured.total)} MiB{speed(r)}" for r in rest)
                    + (f" (activations: {mib(acts)} MiB per worker)." if acts is not None else "."))
    busy = [r.variant for r in c.rows if r.strategy != "single" and busy_machine(r.group)]
    if busy:
        sentence += (f" Timing caveat: other processes used ≥ {BUSY_CORES:g} cores while {', '.join(busy)} trained, "
                     "so the throughput ratios may be the machine's; the bytes are not affected.")
    return sentence


def busy_machine(g: ConfigGroup) -> bool:
    """Whether another process loaded the machine while one of this configuration's runs trained."""
    return any((r.get("other_cores") or 0) >= BUSY_CORES for r in g.runs)


def advice_sentences(comps: list[Comparison]) -> list[str]:
    return [advice(c) for c in comps]


# ------------------------------------------------------------------------------------------ the tables
def _parts(s: StateBytes, with_unit: bool) -> str:
    parts = [s.parameters, s.gradients, s.optimizer] + ([s.unsharded] if with_unit else [])
    return " + ".join(mib(v) for v in parts)


def _ratio(value: float | None, of: float | None) -> str:
    return f"{100 * value / of:.0f} %" if value is not None and of else "—"


def side_by_side_table(comps: list[Comparison]) -> Table:
    """Per model and N: each strategy's state per worker by component, activations, peak RSS, images/s and bytes
    per optimiser step by collective kind."""
    headers = ["Configuration", "Parameters (MiB)", "Gradients (MiB)", "Optimizer (MiB)", "Unsharded peak (MiB)",
               "State / worker (MiB)", "State vs ddp", "Activations (MiB)", "Peak RSS (MiB)", "Images/s",
               "Images/s vs ddp"] + [f"{k.replace('_', '-')} (MiB / step)" for k in COLLECTIVE_KINDS]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    sections: set[int] = set()
    for c in comps:
        sections.add(len(rows))
        rows.append([f"{c.model} at {c.workers} workers ({c.rows[0].n_parameters:,} parameters)"]
                    + [""] * (len(headers) - 1))
        colors.append(None)
        ddp = c.of("ddp")
        for r in c.rows:
            m = r.measured
            rows.append([r.variant, mib(m.parameters), mib(m.gradients), mib(m.optimizer),
                         mib(m.unsharded) if r.strategy == "fsdp" else "—", mib(m.total),
                         _ratio(m.total, ddp.measured.total if ddp else None), mib(r.activations),
                         f"{r.rss_mib:,.0f}" if r.rss_mib is not None else "—",
                         f"{r.images_per_s:,.0f}" if r.images_per_s is not None else "—",
                         _ratio(r.images_per_s, ddp.images_per_s if ddp else None)]
                        + [mib(r.comm[k], 3) for k in COLLECTIVE_KINDS])
            colors.append(r.group.color)
    return Table(headers, rows, colors, "l" + "r" * (len(headers) - 1), sections=sections)


def formula_table(comps: list[Comparison]) -> Table:
    """Per configuration: the ZeRO paper's prediction beside the measurement, by component and in total."""
    headers = ["Configuration", "Optimizer", "Formula (B / parameter)",
               "Predicted: params + grads + optimizer (+ unit), MiB", "Measured, MiB", "Predicted total (MiB)",
               "Measured total (MiB)", "Measured B / parameter", "Difference"]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    sections: set[int] = set()
    for c in comps:
        sections.add(len(rows))
        rows.append([f"{c.model}: P = {c.rows[0].n_parameters:,} parameters, N = {c.workers}"]
                    + [""] * (len(headers) - 1))
        colors.append(None)
        for r in c.rows:
            unit = r.strategy == "fsdp"
            diff = r.measured.total - r.predicted.total
            rows.append([r.variant, optimizer_words(r.group.config), formula_text(r.strategy, r.workers, r.k),
                         _parts(r.predicted, unit), _parts(r.measured, unit), mib(r.predicted.total),
                         mib(r.measured.total), f"{r.bytes_per_parameter:.2f}",
                         f"{'+' if diff >= 0 else '−'}{mib(abs(diff))} MiB ({_ratio(abs(diff), r.predicted.total)})"])
            colors.append(r.group.color)
    return Table(headers, rows, colors, "lllllrrrr", sections=sections)


def explanations(comps: list[Comparison]) -> list[str]:
    return [f"{c.model}, {r.variant}: {explain(r)}" for c in comps for r in c.rows]


def as_dict(comps: list[Comparison]) -> list[dict[str, Any]]:
    """The section's numbers for report.json."""
    def state(s: StateBytes) -> dict[str, float]:
        return {**{c: s.get(c) for c in COMPONENTS}, "total": s.total}

    return [{"model": c.model, "workers": c.workers, "advice": advice(c), "rows": [
        {"configuration": r.variant, "strategy": r.strategy, "run_ids": [x["run_id"] for x in r.group.runs],
         "n_parameters": r.n_parameters, "optimizer_bytes_per_parameter": r.k,
         "formula": formula_text(r.strategy, r.workers, r.k), "predicted": state(r.predicted),
         "measured": state(r.measured), "bytes_per_parameter": r.bytes_per_parameter,
         "activation_bytes": r.activations, "peak_rss_mib": r.rss_mib, "images_per_s": r.images_per_s,
         "comm_bytes_by_op": r.comm, "zero1_partition": r.partition, "explanation": explain(r)}
        for r in c.rows]} for c in comps]
