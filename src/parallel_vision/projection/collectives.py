"""The collectives a data-parallel strategy issues per step, what each costs, and how much of it is exposed.

Framework-free (docs/projection.md, *Sharded strategies*). Three strategies:

- ``ddp``: the all-reduce of DDP's gradient buckets, overlapped with backward (model.project_point).
- ``zero1`` (DDP + ZeroRedundancyOptimizer): DDP's all-reduce, then after the optimiser step every parameter
  is broadcast from the rank that owns its optimiser state (one broadcast per tensor, issued together and
  waited before the next forward: nothing to hide it behind).
- ``fsdp`` (FSDP2 ``fully_shard`` per unit, then the root; the engine's units: models.torch_zoo.shard_units):
  per unit an all-gather before its forward, another before its backward when it was resharded after
  forward, and a reduce-scatter of its gradients after its backward. Each all-gather can be hidden behind
  the previous unit's compute (prefetch), each reduce-scatter behind the backward of the units before it.

Costs over a link of per-direction bandwidth B and one-hop latency α, N ranks, S the full (unsharded) bytes:

- all-reduce (ring): 2(N−1)/N·S/B + 2(N−1)α (model.ring_allreduce_s);
- all-gather, reduce-scatter (ring): (N−1)/N·S/B + (N−1)α each;
- on gloo a reduce-scatter is an all-reduce of the whole input, then a chunk of it is kept
  (ProcessGroupGloo's fallback, pytorch/pytorch#118911): twice a real reduce-scatter's traffic;
- broadcast of S bytes from one root: every receiver must take in all S bytes over its own link, so no
  schedule beats S/B. NCCL pipelines it down a chain: S/B + (N−1)α. Gloo sends the whole message down a
  binomial tree (gloo/broadcast.cc: ⌈log2 N⌉ rounds, the root's sends all queued on its link):
  ⌈log2 N⌉·(S/B + α). At N = 2 both are S/B + α. ZeRO-1's broadcasts from the N roots together move what an
  all-gather does, (N−1)/N·S/B per rank, only if they run at once and the shards are equal; they are issued
  in rank order and the sorted-greedy partition is uneven (wide_mlp: one tensor is 84 % of it), so the point
  takes them one after another and the low bound takes them all at once (each rank receives S − S_r).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from parallel_vision.models.catalog import LayerSpec
from parallel_vision.projection.model import (
    BACKWARD_SHARE,
    Bucket,
    ComputeFit,
    Link,
    Projected,
    Scenario,
    _bucket_exposure,
    _param_tensors,
    bottleneck,
    project_point,
    ring_allreduce_s,
)

STRATEGIES = ("ddp", "zero1", "fsdp")
OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
BACKENDS = ("gloo", "nccl")


# --------------------------------------------------------------------------- one collective
def allgather_s(size: float, workers: int, link: Link) -> float:
    """Ring all-gather of S bytes in all (S/N from each rank): (N−1)/N·S/B + (N−1)·α."""
    if workers <= 1:
        return 0.0
    n = workers
    return (n - 1) / n * size / link.bandwidth_Bps + (n - 1) * link.latency_s


def reduce_scatter_s(size: float, workers: int, link: Link, backend: str = "nccl") -> float:
    """Reduce-scatter of S bytes of input: ring (N−1)/N·S/B + (N−1)·α; on gloo an all-reduce of all S."""
    if workers <= 1:
        return 0.0
    if backend == "gloo":
        return ring_allreduce_s(size, workers, link)
    return allgather_s(size, workers, link)


def broadcast_s(size: float, workers: int, link: Link, backend: str = "nccl") -> float:
    """Broadcast of S bytes from one root: NCCL's pipelined chain S/B + (N−1)·α; gloo's binomial tree
    ⌈log2 N⌉·(S/B + α) (module docstring)."""
    if workers <= 1:
        return 0.0
    if backend == "gloo":
        return math.ceil(math.log2(workers)) * (size / link.bandwidth_Bps + link.latency_s)
    return size / link.bandwidth_Bps + (workers - 1) * link.latency_s


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


# --------------------------------------------------------------------------- ZeRO-1
def zero1_partition(elements: Sequence[int], workers: int) -> list[list[int]]:
    """ZeroRedundancyOptimizer's default assignment: tensors sorted by size (largest first, stable), each to
    the rank with the fewest elements so far (the lowest rank on a tie). Returns each rank's tensor sizes."""
    ranks: list[list[int]] = [[] for _ in range(max(1, workers))]
    totals = [0] * len(ranks)
    for count in sorted(elements, key=lambda c: -c):
        r = totals.index(min(totals))
        ranks[r].append(count)
        totals[r] += count
    return ranks


def tensor_elements(specs: Sequence[LayerSpec]) -> list[int]:
    """Element counts of every trainable tensor, in registration order."""
    return [c for spec in specs for c in _param_tensors(spec)]


@dataclass(frozen=True)
class Broadcasts:
    """ZeRO-1's parameter broadcasts of one step: the bytes each rank owns and how many tensors it sends."""

    bytes_per_root: tuple[float, ...]
    tensors: int

    def cost_s(self, workers: int, link: Link, backend: str) -> float:
        """Issued in rank order, one tensor at a time: each broadcast's bandwidth term, plus its latency
        (the tree's ⌈log2 N⌉ hops on gloo, the chain's N − 1 on NCCL) once per tensor."""
        if workers <= 1:
            return 0.0
        per_tensor = broadcast_s(0.0, workers, link, backend)
        return sum(broadcast_s(s, workers, link, backend) - per_tensor for s in self.bytes_per_root) + \
            self.tensors * per_tensor

    def low_s(self, workers: int, link: Link) -> float:
        """Every root at once: each rank receives all but its own shard over its link, S − S_r."""
        if workers <= 1:
            return 0.0
        total = sum(self.bytes_per_root)
        return max(total - s for s in self.bytes_per_root) / link.bandwidth_Bps + link.latency_s

    def high_s(self, workers: int, link: Link) -> float:
        return max(self.cost_s(workers, link, b) for b in BACKENDS)


def zero1_broadcasts(specs: Sequence[LayerSpec], workers: int, total_bytes: float | None = None,
                     bytes_per_element: int = 4, shares: Sequence[float] | None = None) -> Broadcasts:
    """The broadcasts from the sorted-greedy partition of the model's tensors over `workers` ranks, or from
    `shares` (a run's measured split, summary.zero1_partition, when it has `workers` ranks); `total_bytes`
    (measured, summary.comm_bytes_by_op['broadcast']) rescales them."""
    elements = tensor_elements(specs)
    if shares is not None and len(shares) == workers and sum(shares) > 0:
        sizes = [float(x) for x in shares]
    else:
        sizes = [sum(p) * bytes_per_element for p in zero1_partition(elements, workers)]
    if total_bytes is not None and sum(sizes):
        sizes = [s * total_bytes / sum(sizes) for s in sizes]
    return Broadcasts(tuple(float(s) for s in sizes), len(elements))


# --------------------------------------------------------------------------- FSDP units
#: What `fully_shard` wraps before the root, per model: a regex whose match on a layer name is the unit's name
#: (the engine wraps each block; layers outside every block are the root's).
FSDP_BLOCKS: dict[str, str] = {
    "resnet18": r"^layer\d\.\d",       # the eight BasicBlocks; the stem and the classifier are the root's
    "wide_mlp": r"^fc\d",             # each Linear; the BatchNorms are the root's
    "paper_cnn": r"^(conv|dense)\d",  # each convolution and dense layer; the BatchNorms are the root's
}
ROOT = "<root>"


@dataclass(frozen=True)
class Unit:
    name: str
    bytes: float
    """Unsharded parameter bytes: what its all-gather assembles and its reduce-scatter takes in."""
    root: bool = False


@dataclass(frozen=True)
class Segment:
    """Consecutive layers (forward order) that belong to one unit, and their share of the forward FLOPs."""

    unit: int
    flops_share: float


@dataclass(frozen=True)
class FsdpLayout:
    units: tuple[Unit, ...]
    segments: tuple[Segment, ...]

    def scaled(self, factor: float) -> FsdpLayout:
        return FsdpLayout(tuple(Unit(u.name, u.bytes * factor, u.root) for u in self.units), self.segments)

    @property
    def parameter_bytes(self) -> float:
        return sum(u.bytes for u in self.units)


def fsdp_layout(specs: Sequence[LayerSpec], model: str, bytes_per_element: int = 4) -> FsdpLayout:
    """The units `fully_shard` makes of `model` (FSDP_BLOCKS; the root first) and the forward segments."""
    pattern = re.compile(FSDP_BLOCKS.get(model, r"^$^"))
    names: list[str] = [ROOT]
    sizes: dict[str, float] = {ROOT: 0.0}
    owner: list[str] = []
    for spec in specs:
        m = pattern.match(spec.name)
        name = m.group(0) if m else ROOT
        if name not in sizes:
            names.append(name)
            sizes[name] = 0.0
        sizes[name] += sum(_param_tensors(spec)) * bytes_per_element
        owner.append(name)
    total_flops = sum(s.forward_flops for s in specs) or 1
    segments: list[Segment] = []
    for spec, name in zip(specs, owner, strict=True):
        unit = names.index(name)
        share = spec.forward_flops / total_flops
        if segments and segments[-1].unit == unit:
            segments[-1] = Segment(unit, segments[-1].flops_share + share)
        else:
            segments.append(Segment(unit, share))
    units = tuple(Unit(n, sizes[n], n == ROOT) for n in names)
    return FsdpLayout(units, tuple(segments))


@dataclass(frozen=True)
class FsdpCosts:
    """Seconds of each unit's collectives: all-gather (forward and backward alike) and reduce-scatter."""

    all_gather: tuple[float, ...]
    reduce_scatter: tuple[float, ...]
    regather: tuple[bool, ...]
    """Per unit: gathered again before its backward (resharded after forward)."""

    def total(self) -> float:
        return sum(self.all_gather) + sum(g for g, again in zip(self.all_gather, self.regather, strict=True)
                                          if again) + sum(self.reduce_scatter)

    def by_op(self) -> dict[str, float]:
        ag = sum(self.all_gather) + sum(g for g, r in zip(self.all_gather, self.regather, strict=True) if r)
        return {"all_reduce": 0.0, "all_gather": ag, "reduce_scatter": sum(self.reduce_scatter), "broadcast": 0.0}

    def scaled(self, factor: float) -> FsdpCosts:
        return FsdpCosts(tuple(c * factor for c in self.all_gather), tuple(c * factor for c in self.reduce_scatter),
                         self.regather)


def fsdp_costs(plan: Plan, workers: int, link: Link, backend: str) -> FsdpCosts:
    """Each unit's all-gather and reduce-scatter over `link`. `plan.reshard`: the blocks are resharded after
    forward (so gathered again for backward); the root when `plan.reshard_root`. FSDP2 keeps the root's
    parameters from forward to backward only when reshard_after_forward is left unset; the engine passes it
    to the root too, so there the root follows the blocks (its measured all-gather bytes say so: 2 × P)."""
    assert plan.fsdp is not None
    units = plan.fsdp.units
    ag = tuple(allgather_s(u.bytes * plan.all_gather_scale, workers, link) for u in units)
    rs = tuple(reduce_scatter_s(u.bytes * plan.reduce_scatter_scale, workers, link, backend) for u in units)
    again = tuple((plan.reshard_root if u.root else plan.reshard) for u in units)
    return FsdpCosts(ag, rs, again)


def fsdp_exposed_after_compute(layout: FsdpLayout, costs: FsdpCosts, compute_s: float,
                               backward_share: float = BACKWARD_SHARE) -> float:
    """The comm time left over after compute when every collective that can be hidden is (full overlap).

    One link, collectives one after another in the order they are issued. Forward: the first unit's
    all-gather at once; as each segment starts, the all-gather of the next unit not yet gathered (one unit
    ahead, FSDP2's prefetch; segments of units already gathered, such as the root's BatchNorms, are skipped
    over), and a segment's compute waits for its unit's. Backward, segments in reverse: a resharded unit's
    all-gather again one unit ahead, its reduce-scatter once its last (in backward order) segment is done.
    The step ends when compute and every collective have; what ends after compute_s is exposed.
    """
    forward = (1 - backward_share) * compute_s
    backward = backward_share * compute_s
    ch = 0.0  # when the link is free
    ready: dict[int, float] = {}

    def gather(unit: int, at: float) -> None:
        nonlocal ch
        start = max(ch, at)
        ch = start + costs.all_gather[unit]
        ready[unit] = ch

    def run(order: Sequence[Segment], phase_s: float, t: float, needs: set[int], last_of: dict[int, int]) -> float:
        nonlocal ch
        if order and order[0].unit in needs:
            gather(order[0].unit, t)
            needs.discard(order[0].unit)
        for k, seg in enumerate(order):
            start = max(t, ready.get(seg.unit, 0.0))
            ahead = next((s.unit for s in order[k + 1:] if s.unit in needs), None)
            if ahead is not None:
                gather(ahead, start)  # prefetch the next unit not yet gathered, as this segment starts
                needs.discard(ahead)
            t = start + seg.flops_share * phase_s
            if last_of.get(seg.unit) == k:
                ch = max(ch, t) + costs.reduce_scatter[seg.unit]
        return t

    segs = list(layout.segments)
    t = run(segs, forward, 0.0, {s.unit for s in segs}, {})
    ready.clear()
    back = segs[::-1]
    last_of = {seg.unit: k for k, seg in enumerate(back)}
    again = {s.unit for s in segs if costs.regather[s.unit]}
    for unit in {s.unit for s in segs} - again:
        ready[unit] = 0.0
    t = run(back, backward, t, again, last_of)
    return max(0.0, max(t, ch) - compute_s)


# --------------------------------------------------------------------------- one projected point
@dataclass(frozen=True)
class Plan:
    """What one strategy issues per step for one model: the buckets (ddp, zero1), the broadcasts (zero1),
    the FSDP units and whether blocks reshard after forward (fsdp)."""

    strategy: str
    buckets: tuple[Bucket, ...] = ()
    broadcasts: Broadcasts | None = None
    fsdp: FsdpLayout | None = None
    reshard: bool = True
    reshard_root: bool = False
    all_reduce_scale: float = 1.0
    """Measured ÷ modelled bytes per op (1: the model's parameter bytes); the broadcasts are scaled already."""
    all_gather_scale: float = 1.0
    reduce_scatter_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.strategy}
        if self.buckets:
            out["buckets"] = [{"bytes": b.bytes, "ready_fraction": b.ready_fraction} for b in self.buckets]
        if self.broadcasts is not None:
            out["broadcast_bytes_per_root"] = list(self.broadcasts.bytes_per_root)
            out["broadcast_tensors"] = self.broadcasts.tensors
        if self.fsdp is not None:
            out["fsdp_units"] = [{"name": u.name, "bytes": u.bytes, "root": u.root} for u in self.fsdp.units]
            out["reshard_after_forward"] = self.reshard
            out["reshard_root"] = self.reshard_root
        out["bytes_scale"] = {"all_reduce": self.all_reduce_scale, "all_gather": self.all_gather_scale,
                              "reduce_scatter": self.reduce_scatter_scale}
        return out

    def modelled_bytes(self) -> dict[str, float]:
        """Bytes each worker hands to each collective kind per step (full tensors: an all-gather's output, a
        reduce-scatter's input), as `summary.comm_bytes_by_op` counts them."""
        out = dict.fromkeys(OPS, 0.0)
        out["all_reduce"] = sum(b.bytes for b in self.buckets) * self.all_reduce_scale
        if self.broadcasts is not None:
            out["broadcast"] = sum(self.broadcasts.bytes_per_root)
        if self.fsdp is not None:
            again = sum(u.bytes for u in self.fsdp.units if (self.reshard_root if u.root else self.reshard))
            out["all_gather"] = (self.fsdp.parameter_bytes + again) * self.all_gather_scale
            out["reduce_scatter"] = self.fsdp.parameter_bytes * self.reduce_scatter_scale
        return out


def comm_by_op_s(plan: Plan, workers: int, link: Link, backend: str) -> dict[str, float]:
    """Seconds per step each collective kind costs over `link` (no overlap), the model's `comm_bytes_by_op`."""
    out = dict.fromkeys(OPS, 0.0)
    if plan.buckets:
        out["all_reduce"] = sum(ring_allreduce_s(b.bytes * plan.all_reduce_scale, workers, link)
                                for b in plan.buckets)
    if plan.broadcasts is not None:
        out["broadcast"] = plan.broadcasts.cost_s(workers, link, backend)
    if plan.fsdp is not None:
        costs = fsdp_costs(plan, workers, link, backend)
        out.update({k: v for k, v in costs.by_op().items() if v})
    return out


def project_strategy(plan: Plan, scenario: Scenario, per_worker_batch: int, compute: ComputeFit, *,
                     backend: str = "nccl", contention: float = 1.0, skew_s: float = 0.0,
                     reference_batch: int | None = None, overlap: float = 1.0,
                     shared_machine: bool = False) -> Projected:
    """One projected step of `plan.strategy` with its bounds (ddp: model.project_point as it was)."""
    check_backend(backend)
    base = project_point(scenario, per_worker_batch, compute, plan.buckets, contention=contention, skew_s=skew_s,
                         bytes_scale=plan.all_reduce_scale, reference_batch=reference_batch, overlap=overlap,
                         shared_machine=shared_machine)
    n = scenario.workers
    link = bottleneck(scenario.nodes, scenario.inter, scenario.intra)
    by_op = comm_by_op_s(plan, n, link, backend)
    if plan.strategy == "ddp":
        return _with(base, by_op=by_op)
    if plan.strategy == "zero1":
        assert plan.broadcasts is not None
        return _with(base, by_op=by_op, add=by_op["broadcast"], low=plan.broadcasts.low_s(n, link),
                     high=plan.broadcasts.high_s(n, link))
    assert plan.fsdp is not None
    costs = fsdp_costs(plan, n, link, backend)
    tc = base.compute_s
    total = costs.total()
    exposed = overlap * fsdp_exposed_after_compute(plan.fsdp, costs, tc) + (1 - overlap) * total
    skew = skew_s if n > 1 else 0.0
    dearer = max(fsdp_costs(plan, n, link, b).total() for b in BACKENDS)
    first = costs.all_gather[plan.fsdp.segments[0].unit] if plan.fsdp.segments else 0.0
    low = tc + max(first, total - tc) + skew  # every collective hidden but the first all-gather
    return Projected(workers=n, nodes=scenario.nodes, per_worker_batch=per_worker_batch, compute_s=tc,
                     step_time_s=tc + exposed + skew, step_time_low_s=min(low, tc + exposed + skew),
                     step_time_high_s=max(tc + dearer + skew, tc + exposed + skew), exposed_comm_s=exposed,
                     comm_s=total, reference_images_per_s=base.reference_images_per_s,
                     extra={"comm_by_op_s": by_op})


def _with(p: Projected, *, by_op: dict[str, float], add: float = 0.0, low: float = 0.0,
          high: float = 0.0) -> Projected:
    """`p` plus an exposed collective after the step (ZeRO-1's broadcasts): `add` at the point, `low`/`high`
    at the bounds."""
    return Projected(workers=p.workers, nodes=p.nodes, per_worker_batch=p.per_worker_batch, compute_s=p.compute_s,
                     step_time_s=p.step_time_s + add, step_time_low_s=p.step_time_low_s + min(low, add),
                     step_time_high_s=p.step_time_high_s + max(high, add), exposed_comm_s=p.exposed_comm_s + add,
                     comm_s=p.comm_s + add, reference_images_per_s=p.reference_images_per_s,
                     extra={**p.extra, "comm_by_op_s": by_op})


# --------------------------------------------------------------------------- overlap calibration
def exposure(plan: Plan, hook_s: float, workers: int, link: Link, backend: str) -> Callable[[float], float]:
    """E_ov(T_c): what full overlap would expose of a measured comm time H per step (the comm the strategy
    overlaps: DDP's all-reduce for ddp and zero1, every collective for fsdp), the collectives costed over
    `link` and scaled to sum to H: their shares are what matters, not the link (model.phi_of)."""
    if plan.fsdp is None:
        return _bucket_exposure(plan.buckets, hook_s, BACKWARD_SHARE)
    costs = fsdp_costs(plan, workers, link, backend)
    scaled = costs.scaled(hook_s / (costs.total() or 1))
    layout = plan.fsdp
    return lambda compute_s: fsdp_exposed_after_compute(layout, scaled, compute_s)
