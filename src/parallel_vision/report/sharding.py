"""Beyond data parallelism: memory per worker vs speed (docs/parallelism.md). Per model, every strategy that
supports it side by side: DDP, ZeRO-1, FSDP, pipeline and tensor (torch), model-parallel (JAX), beside the
1-worker single run.

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

import dataclasses
import json
import statistics
from dataclasses import dataclass
from typing import Any

from parallel_vision.bench.machine import BUSY_CORES
from parallel_vision.report.groups import ConfigGroup
from parallel_vision.report.state_formulas import (
    StateBytes,
    formula,
    fsdp_units,
    largest_shard_bytes,
    largest_unit,
    optimizer_bytes_per_parameter,
    parameter_shapes,
)

TITLE = "Beyond data parallelism: memory per worker vs speed"
SHARDED = ("zero1", "fsdp")
#: Strategies that split the model rather than replicate or shard its state: the ZeRO formulas do not describe them.
SPLIT = ("pipeline", "tensor", "model-parallel")
#: A run of one of these makes the section.
BEYOND = (*SHARDED, *SPLIT)
#: The strategies the section compares, in the order it shows them (single: the 1-worker baseline).
COMPARED = ("single", "ddp", "zero1", "fsdp", "pipeline", "tensor", "model-parallel")
COLLECTIVE_KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv")
COMPONENTS = ("parameters", "gradients", "optimizer", "unsharded")
MIB = 2 ** 20
#: A measurement within this share of the formula's total is "as predicted".
TOLERANCE = 0.01
#: Config fields that tell variants of one strategy apart, not the workload: left out of the comparison key.
_STRATEGY_FIELDS = ("reshard_after_forward", "microbatches", "pipeline_schedule")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class ShardRow:
    """One configuration's measured memory and speed, and what the formula predicts for it."""

    group: ConfigGroup
    n_parameters: int
    measured: StateBytes
    """The largest rank's bytes, per component (unsharded: FSDP's unsharded peak, else 0)."""
    predicted: StateBytes | None
    """The ZeRO paper's expectation (None for the strategies that split the model: SPLIT)."""
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
    bubble: float | None = None
    """pipeline: the stages' measured idle share of a step (summary.bubble_fraction)."""
    bubble_formula: float | None = None
    """pipeline: (p − 1)/(m + p − 1)."""
    gradients_held: bool = True
    """False where gradients live only inside a compiled step (JAX): the record has none between steps."""

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
    bubbles = [float(r["summary"]["bubble_fraction"]) for r in runs if r["summary"].get("bubble_fraction") is not None]
    pipeline = summary.get("pipeline") or {}
    predicted = None if g.strategy in SPLIT else formula(g.strategy, g.workers, params, k, unit)
    if predicted is not None and state.get("gradients") is None:  # JAX: gradients live inside the compiled step
        predicted = dataclasses.replace(predicted, gradients=0.0)
    return ShardRow(group=g, n_parameters=params, measured=measured, predicted=predicted, k=k,
                    activations=_median(acts), rss_mib=_median(rss), images_per_s=images.median if images else None,
                    comm=comm, partition=[int(b) for b in partition] if isinstance(partition, list) else None,
                    how=str(state.get("how") or ""), bubble=_median(bubbles),
                    bubble_formula=pipeline.get("bubble_formula"), gradients_held=state.get("gradients") is not None)


# ------------------------------------------------------------------------------------------ comparisons
@dataclass(frozen=True)
class Comparison:
    """One model at one worker count N in one framework: its runs of every compared strategy, and the 1-worker single
    baseline."""

    model: str
    workers: int
    rows: list[ShardRow]

    def of(self, strategy: str) -> ShardRow | None:
        return next((r for r in self.rows if r.strategy == strategy), None)

    @property
    def sharded(self) -> list[ShardRow]:
        return [r for r in self.rows if r.strategy in SHARDED]

    @property
    def split(self) -> list[ShardRow]:
        return [r for r in self.rows if r.strategy in SPLIT]


def _key(g: ConfigGroup) -> str:
    """What must be equal to compare two configurations: everything but the strategy, its variant fields,
    the worker count and the threads (the global batch stays)."""
    family = {k: v for k, v in g.family if k not in _STRATEGY_FIELDS}
    return json.dumps([g.framework, g.global_batch, sorted(family.items())])


def state_rows(groups: list[ConfigGroup]) -> list[ShardRow]:
    """A row for every configuration of the compared strategies whose runs recorded their state bytes."""
    rows = (shard_row(g) for g in groups if g.strategy in COMPARED)
    return [r for r in rows if r is not None]


def comparisons(groups: list[ConfigGroup]) -> list[Comparison]:
    """For every (model, framework, N > 1) that has a run beyond data parallelism (BEYOND) with state bytes: the rows
    of that workload, the 1-worker single run first, then every compared strategy at N. Empty: there is none."""
    rows = state_rows(groups)
    out: list[Comparison] = []
    seen: set[tuple[str, int]] = set()
    for sharded in (r for r in rows if r.strategy in BEYOND):
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


def pct(share: float) -> str:
    """0.45 -> '45 %' (the report's way of writing a share)."""
    return f"{100 * share:.0f} %"


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
    """Why the measurement differs from the formula, from the records; 'as predicted' within TOLERANCE. The
    strategies that split the model have no ZeRO formula: what each worker holds, measured, and why."""
    if row.predicted is None:
        return _split_note(row)
    diffs = {c: row.measured.get(c) - row.predicted.get(c) for c in COMPONENTS}
    notes: list[str] = []
    if not row.gradients_held:
        notes.append("its gradients exist only inside the compiled step (XLA's buffers), so the formula's 4 B of "
                     "gradients per parameter is left out on both sides")
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


def _split_note(row: ShardRow) -> str:
    """What a worker of a model-splitting strategy holds, from its record."""
    share = (f"{mib(row.measured.total)} MiB of state, {_share(row.measured.total, 16 * row.n_parameters)} of a "
             "replicated worker's with Adam" if row.k == 8 else f"{mib(row.measured.total)} MiB of state")
    if row.strategy == "pipeline":
        split = (row.group.first["summary"].get("pipeline") or {}).get("split") or {}
        cuts = split.get("cuts") if isinstance(split, dict) else None
        where = f"; cut after block {', '.join(str(c) for c in cuts)} by measured block time" if cuts else ""
        return f"no ZeRO formula: each stage holds its own blocks' parameters, gradients and optimizer state " \
               f"({share}{where})."
    inside = "" if row.gradients_held else "; its gradients exist only inside the compiled step, so are not counted"
    return (f"no ZeRO formula: the hidden layers' weights are split across the workers, the rest replicated "
            f"({share}{inside}); the group takes each batch once, every worker the whole batch.")


def advice(c: Comparison) -> str:
    """The section's sentences for one model at N workers: what sharding saves (`sharding_advice`) and which
    strategy is fastest here and why (`fastest`)."""
    parts = [sharding_advice(c)] if c.sharded else []
    if c.split:
        parts.append(fastest(c))
    busy = [r.variant for r in c.rows if r.strategy != "single" and busy_machine(r.group)]
    if busy:
        parts.append(f"Timing caveat: other processes used ≥ {BUSY_CORES:g} cores while {', '.join(busy)} trained, "
                     "so the throughput ratios may be the machine's; the bytes are not affected.")
    return " ".join(parts) or f"{c.model} at {c.workers} workers: nothing beyond data parallelism to compare."


def fastest(c: Comparison) -> str:
    """Which strategy has the most images/s at N on this machine, and why the others lose: communication (bytes per
    step), the pipeline's bubble, or virtual devices sharing one CPU."""
    timed = [r for r in c.rows if r.strategy != "single" and r.images_per_s]
    if not timed:
        return f"{c.model} at {c.workers} workers: no throughput recorded."
    best = max(timed, key=lambda r: r.images_per_s or 0.0)
    single = c.of("single")
    base = f" ({best.images_per_s / single.images_per_s:.2f}× single)" if single and single.images_per_s else ""
    text = f"At {c.workers} workers on this machine, {best.variant} is fastest for {c.model}: " \
           f"{best.images_per_s:,.0f} images/s{base}"
    if _virtual_cpu(best):
        text += f" ({VIRTUAL_CPU})"
    for r in sorted(timed, key=lambda r: -(r.images_per_s or 0.0)):
        if r is best:
            continue
        why = []
        sent = sum(v for v in r.comm.values() if v)
        if sent:
            why.append(f"{mib(sent, 2)} MiB on the wire per step")
        if r.bubble is not None:
            formula = f" (formula {pct(r.bubble_formula)})" if r.bubble_formula is not None else ""
            why.append(f"its stages idle {pct(r.bubble)} of a step in the bubble{formula}")
        if _virtual_cpu(r):
            why.append(VIRTUAL_CPU)
        text += f"; {r.variant} {r.images_per_s:,.0f}" + (f" ({', '.join(why)})" if why else "")
    return text + "."


VIRTUAL_CPU = "virtual CPU devices sharing one thread pool: this shows layout and correctness, not a speed-up"


def _virtual_cpu(r: ShardRow) -> bool:
    return r.strategy == "model-parallel" and (r.group.first.get("environment") or {}).get("platform") == "cpu"


def sharding_advice(c: Comparison) -> str:
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
    return sentence


def busy_machine(g: ConfigGroup) -> bool:
    """Whether another process loaded the machine while one of this configuration's runs trained."""
    return any((r.get("other_cores") or 0) >= BUSY_CORES for r in g.runs)


def advice_sentences(comps: list[Comparison]) -> list[str]:
    return [advice(c) for c in comps]
