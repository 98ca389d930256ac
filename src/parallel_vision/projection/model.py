"""The projection's maths, framework-free: compute fit, all-reduce cost per DDP bucket, overlap, bounds.

One data-parallel step of N workers on K nodes, per-worker batch b (docs/definitions.md, *Projection*):

    T_step(N) = T_c(b) · γ  +  exposed all-reduce  +  skew

- T_c(b) = c0 + c1·b, the per-worker compute of one step, fitted from 1-worker runs at several per-worker
  batches (c0 > 0 is what a small batch wastes; one measured batch can only give T_c ∝ b).
- γ: contention between co-located workers (the "two independent runs at once" control), 1 without it,
  applied only when a node hosts more than one worker.
- each DDP bucket of S bytes costs, over a link of bandwidth B and one-hop latency α,
  ring 2(N−1)/N · S/B + 2(N−1)·α, or tree 2·S/B + 2⌈log2 N⌉·α (the band takes both).
- overlap: bucket i is ready when backward (2/3 of T_c) has reached its last layer; the buckets are
  reduced one after another from their ready time; only what ends after backward is exposed. φ ∈ [0, 1],
  calibrated from a measured DDP run's comm-hook time (`overlap_efficiency`), says how much of that
  overlap happens: exposed = φ·(the bucket model's) + (1 − φ)·(all of it). φ = 1 without a calibration.
- bounds: low = full overlap (exposed = max(0, Σ cost − backward)) with the cheaper form per bucket;
  high = no overlap (exposed = Σ cost) with the dearer form. low ≤ point ≤ high by construction.

Nothing here reads a file or imports a framework.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from parallel_vision.models.catalog import LayerSpec

#: DDP's defaults (torch.nn.parallel.DistributedDataParallel): bucket_cap_mb=25, first bucket 1 MiB.
BUCKET_CAP_BYTES = 25 * 1024 * 1024
FIRST_BUCKET_BYTES = 1024 * 1024
#: Forward : backward ≈ 1 : 2 in FLOPs, so backward is 2/3 of a step's compute.
BACKWARD_SHARE = 2.0 / 3.0


@dataclass(frozen=True)
class Link:
    """A link as an all-reduce sees it: per-direction bandwidth (bytes/s) and one-hop latency (s)."""

    name: str
    bandwidth_Bps: float
    latency_s: float
    source: str = ""

    def __post_init__(self) -> None:
        if not self.bandwidth_Bps > 0 or not self.latency_s >= 0:
            raise ValueError(f"link {self.name!r}: bandwidth must be > 0 and latency ≥ 0")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bandwidth_gbps": self.bandwidth_Bps * 8 / 1e9, "latency_us": self.latency_s * 1e6}


# --------------------------------------------------------------------------- buckets
@dataclass(frozen=True)
class Bucket:
    bytes: int
    ready_fraction: float
    """Share of backward done when the bucket's last gradient is ready (0 = at once, 1 = at the end)."""


def _param_tensors(spec: LayerSpec) -> list[int]:
    """Element counts of the layer's trainable tensors, in registration order (weight, bias)."""
    if spec.kind == "bn":
        return [spec.shape[0], spec.shape[0]]
    weights = math.prod(spec.shape)
    return [weights, spec.shape[0]] if spec.bias else [weights]


def ddp_buckets(specs: Sequence[LayerSpec], cap_bytes: int = BUCKET_CAP_BYTES,
                first_cap_bytes: int = FIRST_BUCKET_BYTES, bytes_per_element: int = 4) -> list[Bucket]:
    """DDP's gradient buckets, approximated from the layer list.

    DDP fills buckets with the parameters in reverse registration order (the order backward produces
    their gradients), closing a bucket once it holds at least its cap: 1 MiB for the first, 25 MiB after.
    A bucket is ready when its last (earliest-registered) layer's gradient is; that layer's backward
    ends after the backward FLOPs of every layer after it plus its own (backward FLOPs ∝ forward FLOPs).
    Approximations: layers in `layer_specs` order stand for registration order; BatchNorm's backward
    costs nothing; DDP's rebuilt buckets after the first step follow the same order here.
    """
    total_flops = sum(s.forward_flops for s in specs) or 1
    buckets: list[Bucket] = []
    size, done = 0, 0
    cap = first_cap_bytes
    for spec in reversed(list(specs)):
        done += spec.forward_flops
        for count in reversed(_param_tensors(spec)):
            size += count * bytes_per_element
            if size >= cap:
                buckets.append(Bucket(size, done / total_flops))
                size, cap = 0, cap_bytes
    if size:
        buckets.append(Bucket(size, done / total_flops))
    return buckets


# --------------------------------------------------------------------------- all-reduce cost
def ring_allreduce_s(size: float, workers: int, link: Link) -> float:
    """Ring all-reduce: 2(N−1) steps, each sending S/N bytes one hop: 2(N−1)/N·S/B + 2(N−1)·α."""
    if workers <= 1:
        return 0.0
    n = workers
    return 2 * (n - 1) / n * size / link.bandwidth_Bps + 2 * (n - 1) * link.latency_s


def tree_allreduce_s(size: float, workers: int, link: Link) -> float:
    """Pipelined (double binary) tree: reduce up and broadcast down, ≈ 2·S/B + 2⌈log2 N⌉·α."""
    if workers <= 1:
        return 0.0
    return 2 * size / link.bandwidth_Bps + 2 * math.ceil(math.log2(workers)) * link.latency_s


def bottleneck(nodes: int, inter: Link, intra: Link) -> Link:
    """The link a flat ring over every worker is gated by: the slower of the hops it crosses."""
    if nodes <= 1:
        return intra
    return Link(f"{inter.name}+{intra.name}", min(inter.bandwidth_Bps, intra.bandwidth_Bps),
                max(inter.latency_s, intra.latency_s))


# --------------------------------------------------------------------------- compute
@dataclass(frozen=True)
class ComputeFit:
    """T_c(b) = c0 + c1·b seconds per step of one worker at per-worker batch b."""

    c0: float
    c1: float
    points: tuple[tuple[int, float], ...]
    kind: str
    """'linear' (≥ 2 batches), 'proportional' (one batch, or a fit with c0 < 0 made through the origin)."""

    def step_s(self, batch: float) -> float:
        return self.c0 + self.c1 * batch

    def max_rel_residual(self) -> float:
        return max((abs(self.step_s(b) - t) / t for b, t in self.points), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"c0_s": self.c0, "c1_s_per_image": self.c1, "kind": self.kind,
                "points": [{"per_worker_batch": b, "step_s": t} for b, t in self.points],
                "max_rel_residual": self.max_rel_residual()}


def fit_compute(points: Sequence[tuple[int, float]]) -> ComputeFit:
    """Least squares of step time on per-worker batch (each batch's points averaged first)."""
    by_batch: dict[int, list[float]] = {}
    for b, t in points:
        if b <= 0 or not t > 0:
            raise ValueError(f"a compute point needs a positive batch and time, got ({b}, {t})")
        by_batch.setdefault(int(b), []).append(float(t))
    pts = tuple(sorted((b, sum(ts) / len(ts)) for b, ts in by_batch.items()))
    if not pts:
        raise ValueError("no 1-worker step times to fit the compute time from")
    if len(pts) >= 2:
        n = len(pts)
        mb = sum(b for b, _ in pts) / n
        mt = sum(t for _, t in pts) / n
        sxx = sum((b - mb) ** 2 for b, _ in pts)
        c1 = sum((b - mb) * (t - mt) for b, t in pts) / sxx
        c0 = mt - c1 * mb
        if c0 >= 0 and c1 > 0:
            return ComputeFit(c0, c1, pts, "linear")
    c1 = sum(b * t for b, t in pts) / sum(b * b for b, _ in pts)
    return ComputeFit(0.0, c1, pts, "proportional")


# --------------------------------------------------------------------------- overlap and one point
def exposed_after_backward(buckets: Sequence[Bucket], costs: Sequence[float], backward_s: float) -> float:
    """Bucket i starts at max(its ready time, the end of bucket i−1); what ends after backward is exposed."""
    t = 0.0
    for bucket, cost in zip(buckets, costs, strict=True):
        t = max(t, bucket.ready_fraction * backward_s) + cost
    return max(0.0, t - backward_s)


@dataclass(frozen=True)
class Scenario:
    """Where the workers run: N workers on K nodes, the link between nodes and the one inside a node."""

    workers: int
    nodes: int
    inter: Link
    intra: Link

    @property
    def per_node(self) -> int:
        return -(-self.workers // self.nodes)


@dataclass(frozen=True)
class Projected:
    workers: int
    nodes: int
    per_worker_batch: int
    compute_s: float
    step_time_s: float
    step_time_low_s: float
    step_time_high_s: float
    exposed_comm_s: float
    comm_s: float
    """The ring all-reduce of every bucket, summed (what the comm hook would measure, overlap or not)."""
    reference_images_per_s: float
    """Throughput of one worker alone at the reference batch (b for weak scaling, the global batch for strong)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        """Throughput speedup: N·b ÷ T_N over one worker's images/s (weak: N·T_1(b) ÷ T_N(b); strong with
        global batch G = N·b: T_1(G) ÷ T_N(b))."""
        return self.workers * self.per_worker_batch / self.step_time_s / self.reference_images_per_s

    @property
    def efficiency(self) -> float:
        return self.speedup / self.workers

    def row(self) -> dict[str, Any]:
        return {"workers": self.workers, "nodes": self.nodes, "per_worker_batch": self.per_worker_batch,
                "step_time_s": self.step_time_s, "step_time_low_s": self.step_time_low_s,
                "step_time_high_s": self.step_time_high_s, "speedup": self.speedup,
                "efficiency": self.efficiency, "exposed_comm_s": self.exposed_comm_s, "comm_s": self.comm_s,
                "compute_s": self.compute_s, **self.extra}


def overlap_efficiency(buckets: Sequence[Bucket], step_s: float, compute_s: float, hook_s: float,
                       backward_share: float = BACKWARD_SHARE) -> float | None:
    """φ: how much of what the bucket model says backward can hide a measured DDP step really hid.

    A run's comm hook gives its all-reduce seconds per step H (launch to completion, summed over buckets);
    its step exposes E = step − T_c of them. Full overlap (the bucket model, the costs ∝ bucket bytes
    scaled to sum to H) would expose E_ov; none would expose H. φ = (H − E) ÷ (H − E_ov), clamped to
    [0, 1]: 1 = backward hid what the model says it can, 0 = nothing was hidden. None when the model
    itself says there is little to hide (H − E_ov < 2 % of the step): the run cannot tell.
    """
    if not sum(b.bytes for b in buckets):
        return None
    return phi_of(step_s, compute_s, hook_s, _bucket_exposure(buckets, hook_s, backward_share))


def _bucket_exposure(buckets: Sequence[Bucket], hook_s: float, backward_share: float) -> Callable[[float], float]:
    """E_ov(T_c): the bucket model's exposed time when the buckets' costs (∝ bytes) sum to H."""
    total = sum(b.bytes for b in buckets) or 1
    costs = [hook_s * b.bytes / total for b in buckets]
    return lambda compute_s: exposed_after_backward(buckets, costs, backward_share * compute_s)


def phi_of(step_s: float, compute_s: float, hook_s: float, exposed_ov: Callable[[float], float],
           fixed_s: float = 0.0) -> float | None:
    """φ from one measured step, any strategy: step = T_c + fixed + φ·E_ov(T_c) + (1 − φ)·H, clamped to [0, 1].
    `exposed_ov(T_c)`: what full overlap exposes of H; `fixed_s`: exposed time outside H (ZeRO-1's
    broadcasts). None when H − E_ov < 2 % of the step (the run cannot tell)."""
    if hook_s <= 0 or compute_s <= 0:
        return None
    hideable = hook_s - exposed_ov(compute_s)
    if hideable < 0.02 * step_s:
        return None
    exposed = max(0.0, step_s - compute_s - fixed_s)
    return min(1.0, max(0.0, (hook_s - exposed) / hideable))


@dataclass(frozen=True)
class OverlapCalibration:
    """γ and φ that reproduce one measured single-host DDP step (`reconcile_overlap`)."""

    gamma: float
    phi: float | None
    """None: the run cannot tell (the bucket model says there is little to hide)."""
    how: str
    """'phi' (γ kept, φ solved), 'gamma_down' / 'gamma_up' (φ out of [0, 1] with the given γ: clamped, γ
    solved), 'cannot_tell' (γ kept, φ None), 'too_fast' (the step is below T_c even at γ = 1)."""


def reconcile_overlap(buckets: Sequence[Bucket], step_s: float, compute_s: float, hook_s: float, gamma: float,
                      backward_share: float = BACKWARD_SHARE) -> OverlapCalibration:
    """Calibrate φ from a single-host DDP run, keeping the run's own step reproduced.

    The run gives one equation, step = T_c·γ + φ·E_ov + (1 − φ)·H (`overlap_efficiency`), in two unknowns;
    γ comes from the pair control, φ from this. A pair control measured under another machine load can
    give a γ this very run contradicts: φ > 1 (the step exposes less than even full overlap would: γ too
    large) or φ < 0 (more than all of its all-reduce: γ too small). Then φ is clamped to [0, 1] and γ
    (≥ 1) solved from the equation, so the calibration still reproduces the DDP run it was taken from.
    """
    if not sum(b.bytes for b in buckets):
        return OverlapCalibration(gamma, None, "cannot_tell")
    return reconcile(step_s, compute_s, hook_s, gamma, _bucket_exposure(buckets, hook_s, backward_share))


def reconcile(step_s: float, compute_s: float, hook_s: float, gamma: float, exposed_ov: Callable[[float], float],
              fixed_s: float = 0.0) -> OverlapCalibration:
    """`reconcile_overlap` for any strategy: `exposed_ov(T_c)` is what full overlap exposes of the measured comm
    time H per step, `fixed_s` exposed time outside H (phi_of)."""
    tc = compute_s * gamma
    if phi_of(step_s, tc, hook_s, exposed_ov, fixed_s) is None:
        return OverlapCalibration(gamma, None, "cannot_tell")
    exposed = max(0.0, step_s - tc - fixed_s)
    raw = (hook_s - exposed) / (hook_s - exposed_ov(tc))
    if 0.0 <= raw <= 1.0:
        return OverlapCalibration(gamma, raw, "phi")
    target = 1.0 if raw > 1.0 else 0.0

    def predicted(g: float) -> float:  # increasing in g: T_c·g grows faster than E_ov can shrink
        return compute_s * g + fixed_s + target * exposed_ov(compute_s * g) + (1 - target) * hook_s

    if predicted(1.0) >= step_s:
        return OverlapCalibration(1.0, target, "too_fast" if target == 1.0 else "gamma_up")
    lo, hi = 1.0, max(2.0, gamma)
    while predicted(hi) < step_s:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if predicted(mid) < step_s else (lo, mid)
    return OverlapCalibration((lo + hi) / 2, target, "gamma_down" if target == 1.0 else "gamma_up")


def project_point(scenario: Scenario, per_worker_batch: int, compute: ComputeFit, buckets: Sequence[Bucket],
                  *, contention: float = 1.0, skew_s: float = 0.0, bytes_scale: float = 1.0,
                  reference_batch: int | None = None, overlap: float = 1.0,
                  shared_machine: bool = False) -> Projected:
    """One calibrated point and its bounds (module docstring). `bytes_scale` < 1: compressed gradients;
    `reference_batch`: the 1-worker batch the speedup compares with (default: the per-worker batch, weak);
    `overlap` φ ∈ [0, 1]: the share of the bucket model's overlap that happens (exposed = φ·the bucket
    model's + (1 − φ)·all of it); `shared_machine`: the nodes are emulated on one machine, so γ applies
    even with one worker per node."""
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be in [0, 1]; got {overlap}")
    ref = reference_batch or per_worker_batch
    reference = ref / compute.step_s(ref)
    colocated = scenario.per_node > 1 or (shared_machine and scenario.workers > 1)
    tc = compute.step_s(per_worker_batch) * (contention if colocated else 1.0)
    backward = BACKWARD_SHARE * tc
    n = scenario.workers
    link = bottleneck(scenario.nodes, scenario.inter, scenario.intra)
    sizes = [b.bytes * bytes_scale for b in buckets]
    ring = [ring_allreduce_s(s, n, link) for s in sizes]
    tree = [tree_allreduce_s(s, n, link) for s in sizes]
    exposed = overlap * exposed_after_backward(buckets, ring, backward) + (1 - overlap) * sum(ring)
    skew = skew_s if n > 1 else 0.0
    low = tc + max(0.0, sum(min(r, t) for r, t in zip(ring, tree, strict=True)) - backward) + skew
    high = tc + sum(max(r, t) for r, t in zip(ring, tree, strict=True)) + skew
    point = tc + exposed + skew
    return Projected(workers=n, nodes=scenario.nodes, per_worker_batch=per_worker_batch, compute_s=tc,
                     step_time_s=point, step_time_low_s=low, step_time_high_s=high, exposed_comm_s=exposed,
                     comm_s=sum(ring), reference_images_per_s=reference)


# --------------------------------------------------------------------------- linktest fit
#: Sizes at or below this are latency-bound: α (the fit's `a`) is read from them.
SMALL_MESSAGE_BYTES = 64 * 1024
#: Sizes at or above this fix the bandwidth: DDP's smallest bucket (its first, 1 MiB) and up.
LARGE_MESSAGE_BYTES = FIRST_BUCKET_BYTES


@dataclass(frozen=True)
class AllReduceFit:
    """t(S) = a + S/B for one all-reduce of S bytes among `workers` ranks, and the link it implies (ring).

    Fitted in two regimes (Hockney): `a` from the small, latency-bound sizes, B from the slope over the
    sizes DDP's buckets have (≥ 1 MiB). `large_intercept_s` is the intercept of that large-size line: below
    `a` (even negative) when a token bucket (tc tbf) lets the first bytes of every message through at once.
    """

    a_s: float
    bandwidth_Bps: float
    workers: int
    max_rel_residual: float
    method: str = "two-regime"
    large_intercept_s: float | None = None
    sizes_for_bandwidth: tuple[int, ...] = ()

    def seconds(self, size: float) -> float:
        return self.a_s + size / self.bandwidth_Bps

    def link(self, name: str = "linktest", source: str = "") -> Link:
        """Invert the ring: t = 2(N−1)/N·S/B_link + 2(N−1)·α  ⇒  B_link = B·2(N−1)/N, α = a ÷ 2(N−1)."""
        n = max(2, self.workers)
        return Link(name, self.bandwidth_Bps * 2 * (n - 1) / n, self.a_s / (2 * (n - 1)), source)

    def as_dict(self) -> dict[str, Any]:
        return {"a_s": self.a_s, "bandwidth_Bps": self.bandwidth_Bps, "workers": self.workers,
                "max_rel_residual": self.max_rel_residual, "method": self.method,
                "large_intercept_s": self.large_intercept_s,
                "sizes_for_bandwidth": list(self.sizes_for_bandwidth)}


def _line(pts: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Ordinary least squares t = c + k·S in absolute time: (c, k)."""
    n = len(pts)
    ms = sum(s for s, _ in pts) / n
    mt = sum(t for _, t in pts) / n
    sxx = sum((s - ms) ** 2 for s, _ in pts)
    k = sum((s - ms) * (t - mt) for s, t in pts) / sxx
    return mt - k * ms, k


def fit_allreduce(points: Sequence[tuple[float, float]], workers: int) -> AllReduceFit:
    """Fit t = a + S/B to (bytes, seconds) in two regimes (Hockney's α-β model, fitted where each term
    dominates):

    * a (= 2(N−1)·α for a ring): the smallest time among the sizes ≤ 64 KiB. There the bandwidth term is
      negligible, and the minimum rather than a mean drops the scheduler's stalls on a busy host.
    * B: 1 / slope of an ordinary least-squares line (absolute time) through the sizes ≥ 1 MiB, the sizes
      DDP's buckets have. Only the slope is kept: a link that lets small messages through faster (tc tbf's
      burst, a switch buffer, TCP's initial window) lowers the intercept, not the slope, so it cannot
      inflate B, which a fit over every size in relative error did (11.8 Mbit/s on a 10 Mbit/s tbf).

    Fallbacks: one large size: B = S ÷ (t − a); none: the two largest sizes measured stand in.
    """
    pts = sorted((float(s), float(t)) for s, t in points if t > 0 and s > 0)
    if len(pts) < 2:
        raise ValueError("a linktest fit needs at least two sizes")
    small = [t for s, t in pts if s <= SMALL_MESSAGE_BYTES] or [pts[0][1]]
    a = min(small)
    large = [(s, t) for s, t in pts if s >= LARGE_MESSAGE_BYTES]
    if not large:
        large = pts[-2:]
    intercept: float | None = None
    if len(large) >= 2:
        intercept, k = _line(large)
    else:
        s, t = large[0] if large else pts[-1]
        k = (t - a) / s
    if k <= 0:  # no growth with size where it counts: bandwidth beyond measurement
        k = 1e-18
    residual = max(abs(a + k * s - t) / t for s, t in large or pts)
    return AllReduceFit(a_s=a, bandwidth_Bps=1 / k, workers=workers, max_rel_residual=residual, method="two-regime",
                        large_intercept_s=intercept, sizes_for_bandwidth=tuple(int(s) for s, _ in large))
