"""From a ROOT's runs and linktest to projection.json: calibrate, project, compare with what was measured.

Calibration (docs/projection.md): T_c(b) from the 1-worker runs (one per per-worker batch, steady step time
= steady epoch time ÷ steps per epoch); the collectives of the strategy projected (ddp, zero1 or fsdp:
collectives.Plan) from the model's layer list, their bytes rescaled to the runs' measured
`summary.comm_bytes_by_op` where they have it; contention from runs labelled as the "two independent runs
at once" control (`extra.control = "pair"`); the overlap φ from the strategy's single-host runs
(model.reconcile); the link from a preset, numbers, or the ROOT's linktest. Every N that was also measured
(runs of the strategy in ROOT whose link a linktest in ROOT describes) gets its error. Reads the store only;
imports no framework.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.errors import ConfigError, ResultsError
from parallel_vision.models.catalog import layer_specs, model_costs
from parallel_vision.projection.collectives import (
    BACKENDS,
    OPS,
    STRATEGIES,
    Plan,
    comm_by_op_s,
    exposure,
    fsdp_layout,
    project_strategy,
    zero1_broadcasts,
)
from parallel_vision.projection.linktest import link_of
from parallel_vision.projection.model import (
    BACKWARD_SHARE,
    Bucket,
    ComputeFit,
    Link,
    OverlapCalibration,
    Projected,
    Scenario,
    ddp_buckets,
    fit_compute,
    phi_of,
    reconcile,
)
from parallel_vision.results.store import open_store, require_runs
from parallel_vision.results.stragglers import rank_spread_s

PROJECTION_FILE = "projection.json"
PROJECTION_VERSION = 1
#: A projected step within this of the measured one counts as a hit (the issue's target).
TOLERANCE = 0.15


@dataclass
class Inputs:
    """What a ROOT offers the projection for one model, framework and threads per worker."""

    root: Path
    model: str
    framework: str
    threads: float | None
    input_shape: tuple[int, int, int]
    classes: int
    singles: list[dict[str, Any]]
    ddp: list[dict[str, Any]]
    """The multi-worker runs of the strategy projected (`strategy`: ddp, zero1 or fsdp)."""
    pairs: list[dict[str, Any]]
    linktests: list[dict[str, Any]] = field(default_factory=list)
    strategy: str = "ddp"
    reshard: bool = True
    """fsdp: the blocks are resharded after forward (the runs' --reshard-after-forward)."""
    backend: str = "gloo"
    """The collectives' backend (gloo's reduce-scatter is an all-reduce; its broadcast a binomial tree)."""
    device: str = "cpu"
    """'cpu' or 'cuda': where the runs' tensors were (FSDP2 overlaps nothing on the CPU: `blocking`)."""

    @property
    def blocking(self) -> bool:
        """FSDP2 on the CPU: every all-gather and reduce-scatter blocks the step (φ = 0).

        FSDP2 overlaps its collectives with compute only through CUDA streams (its all-gather and
        reduce-scatter streams; `unshard` and `foreach_reduce` call the collectives with async_op=False). On
        the CPU there are no such streams: each collective runs to completion before compute goes on, so
        none of it is hidden, whatever the loopback run seems to say (γ and φ trade off in its one equation)."""
        return self.strategy == "fsdp" and self.device == "cpu"

    @property
    def buckets(self) -> list[Bucket]:
        return ddp_buckets(self.specs)

    @property
    def gradient_bytes(self) -> int:
        c, s, _ = self.input_shape
        return model_costs(self.model, c, s, self.classes).gradient_bytes

    @property
    def specs(self) -> list[Any]:
        c, s, _ = self.input_shape
        return layer_specs(self.model, c, s, self.classes)

    def plan(self, workers: int, measured: dict[str, float] | None = None,
             partition: list[float] | None = None) -> Plan:
        """What the strategy issues per step at N = `workers`; `measured` (summary.comm_bytes_by_op) rescales
        each kind's bytes to what the runs counted (`bytes_scales`); `partition` (summary.zero1_partition, bytes
        per rank) is ZeRO-1's split where it has `workers` ranks."""
        specs = self.specs
        buckets = tuple(ddp_buckets(specs)) if self.strategy in ("ddp", "zero1") else ()
        model_plan = Plan(self.strategy, buckets=buckets,
                          broadcasts=zero1_broadcasts(specs, workers, shares=partition)
                          if self.strategy == "zero1" else None,
                          fsdp=fsdp_layout(specs, self.model) if self.strategy == "fsdp" else None,
                          reshard=self.reshard, reshard_root=self.reshard)
        scales = bytes_scales(model_plan, measured)
        if self.strategy == "zero1" and "broadcast" in scales:
            model_plan = Plan(self.strategy, buckets=buckets, broadcasts=zero1_broadcasts(
                specs, workers, total_bytes=scales["broadcast"] * model_plan.modelled_bytes()["broadcast"],
                shares=partition))
        return Plan(model_plan.strategy, buckets=model_plan.buckets, broadcasts=model_plan.broadcasts,
                    fsdp=model_plan.fsdp, reshard=model_plan.reshard, reshard_root=model_plan.reshard_root,
                    all_reduce_scale=scales.get("all_reduce", 1.0), all_gather_scale=scales.get("all_gather", 1.0),
                    reduce_scatter_scale=scales.get("reduce_scatter", 1.0))


#: Measured bytes further than this factor from the model's are not used (a different counting convention,
#: compression): the model's stand, and calibration.comm_bytes says so.
BYTES_TRUST = 4.0


def bytes_scales(plan: Plan, measured: dict[str, float] | None) -> dict[str, float]:
    """Measured ÷ modelled bytes per collective kind the plan issues (only kinds both have, within BYTES_TRUST)."""
    if not measured:
        return {}
    modelled = plan.modelled_bytes()
    out = {}
    for op in OPS:
        m, want = measured.get(op), modelled[op]
        if m and want and 1 / BYTES_TRUST <= m / want <= BYTES_TRUST:
            out[op] = m / want
    return out


def comm_bytes(runs: list[dict[str, Any]]) -> tuple[dict[str, float] | None, list[str]]:
    """The median over `runs` of summary.comm_bytes_by_op (bytes per worker per step, each kind), and the runs."""
    have = [r for r in runs if isinstance((r.get("summary") or {}).get("comm_bytes_by_op"), dict)]
    if not have:
        return None, []
    return ({op: statistics.median(float(r["summary"]["comm_bytes_by_op"].get(op) or 0.0) for r in have)
             for op in OPS}, [r["path"] for r in have])


def run_partition(run: dict[str, Any]) -> list[float] | None:
    """ZeRO-1's measured split of the parameters over the ranks (summary.zero1_partition, bytes per rank)."""
    got = (run.get("summary") or {}).get("zero1_partition")
    return [float(x) for x in got] if isinstance(got, list) and got else None


def run_bytes(run: dict[str, Any]) -> dict[str, float] | None:
    got = (run.get("summary") or {}).get("comm_bytes_by_op")
    return {op: float(got.get(op) or 0.0) for op in OPS} if isinstance(got, dict) else None


def step_s(run: dict[str, Any]) -> float:
    """Steady seconds per step: the mean epoch time without the warm-up epoch ÷ steps per epoch."""
    s = run["summary"]
    return float(s["mean_epoch_time_excl_warmup_s"]) / max(1, int(s["steps_per_epoch"]))


def _hook_per_step(epochs: list[dict[str, Any]], run: dict[str, Any]) -> float | None:
    """The comm hook's all-reduce seconds per step over the steady epochs (None where not measured)."""
    steady = epochs[1:] or epochs
    comm = [e["comm_time_s"] for e in steady if e.get("comm_time_s") is not None]
    if not comm or len(comm) != len(steady):
        return None
    return sum(comm) / (len(comm) * max(1, int(run["summary"]["steps_per_epoch"])))


def _control(run: dict[str, Any]) -> str | None:
    return (run["config"].get("extra") or {}).get("control")


def _nodes(run: dict[str, Any]) -> int:
    extra = run["config"].get("extra") or {}
    return int(extra.get("nodes") or 1)


def check_strategy(strategy: str | None) -> None:
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError(f"pvision project: unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"pvision project: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _reshard(run: dict[str, Any]) -> bool:
    value = run["config"].get("reshard_after_forward")
    return True if value is None else bool(value)


def _device_of(runs: list[dict[str, Any]]) -> str:
    devices = [str((r.get("environment") or {}).get("device") or "") for r in runs]
    return "cuda" if any(d.startswith("cuda") for d in devices) else "cpu"


def _backend_of(runs: list[dict[str, Any]], linktests: list[dict[str, Any]]) -> str:
    """The runs' process-group backend (environment.backend), else the linktest's, else by device."""
    found = [(r.get("environment") or {}).get("backend") for r in runs]
    found = [b for b in found if b in BACKENDS] or [t.get("backend") for t in linktests if t.get("backend") in BACKENDS]
    if found:
        return max(set(found), key=found.count)
    devices = [str((r.get("environment") or {}).get("device") or "") for r in runs]
    return "nccl" if any(d.startswith("cuda") for d in devices) else "gloo"


def default_strategy(runs: list[dict[str, Any]]) -> str:
    """The strategy of a ROOT's multi-worker runs when they have one (of ddp, zero1, fsdp), else ddp."""
    found = sorted({r["strategy"] for r in runs if r["workers"] > 1 and r["strategy"] in STRATEGIES})
    return found[0] if len(found) == 1 else "ddp"


def load_inputs(root: str | Path, model: str | None = None, framework: str = "torch",
                threads: float | None = None, strategy: str | None = None, reshard: bool | None = None,
                backend: str | None = None) -> Inputs:
    """A ROOT's runs for projecting `strategy` (None: the one strategy of ROOT's multi-worker runs, else ddp)."""
    check_strategy(strategy)
    check_backend(backend)
    root = Path(root)
    with open_store(root) as store:
        require_runs(store)
        runs = [r for r in store.runs() if r["framework"] == framework]
        linktests = store.linktests()
        for r in runs:
            if r["workers"] > 1:
                r["hook_comm_per_step_s"] = _hook_per_step(store.epochs(r["run_id"]), r)
    if not runs:
        raise ResultsError(f"{root}: no complete {framework} runs to calibrate from")
    models = sorted({r["model"] or "paper_cnn" for r in runs})
    if model is None:
        if len(models) > 1:
            raise ConfigError(f"{root} holds runs of {', '.join(models)}; choose one with --model")
        model = models[0]
    runs = [r for r in runs if (r["model"] or "paper_cnn") == model]
    if not runs:
        raise ConfigError(f"{root}: no {framework} runs of {model}; it has {', '.join(models)}")
    strategy = strategy or default_strategy(runs)
    ddp = [r for r in runs if r["strategy"] == strategy and r["workers"] > 1]
    if strategy == "fsdp":
        if reshard is None:
            settings = [_reshard(r) for r in ddp] or [True]
            reshard = max(set(settings), key=lambda v: (settings.count(v), v))
        ddp = [r for r in ddp if _reshard(r) == reshard]
    one = [r for r in runs if r["workers"] == 1 and r["strategy"] in ("single", "ddp")]
    if threads is None:
        pool = ddp or [r for r in one if _control(r) is None]
        counts = [r["threads_per_replica"] for r in pool if r["threads_per_replica"] is not None]
        threads = min(set(counts), key=lambda t: (-counts.count(t), t)) if counts else None
    if threads is not None:
        one = [r for r in one if r["threads_per_replica"] == threads]
        ddp = [r for r in ddp if r["threads_per_replica"] == threads]
    singles = [r for r in one if _control(r) is None]
    pairs = [r for r in one if _control(r) == "pair"]
    if not singles:
        raise ResultsError(f"{root}: no 1-worker {framework} run of {model}"
                           + (f" with {threads:g} thread(s) per worker" if threads else "")
                           + " to fit the compute time from")
    w = singles[0].get("workload") or {}
    shape = tuple(w.get("input_shape") or (1, 28, 28))
    return Inputs(root=root, model=model, framework=framework, threads=threads,
                  input_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
                  classes=int(w.get("classes") or 10), singles=singles, ddp=ddp, pairs=pairs, linktests=linktests,
                  strategy=strategy, reshard=True if reshard is None else reshard,
                  backend=backend or _backend_of(ddp or singles, linktests), device=_device_of(ddp or singles))


def compute_fit(inputs: Inputs) -> ComputeFit:
    return fit_compute([(int(r["summary"]["per_worker_batch"]), step_s(r)) for r in inputs.singles])


def contention(inputs: Inputs, fit: ComputeFit) -> tuple[float, str]:
    """γ = the pair control's step time ÷ T_c at its batch (median over the control's runs), else 1."""
    if not inputs.pairs:
        return 1.0, "no 'two independent runs at once' control in ROOT: γ = 1 (no slowdown assumed)"
    ratios = [step_s(r) / fit.step_s(int(r["summary"]["per_worker_batch"])) for r in inputs.pairs]
    gamma = max(1.0, statistics.median(ratios))
    return gamma, f"from {len(ratios)} run(s) of the pair control: median ratio {statistics.median(ratios):.3f}"


def calibrate_run(inputs: Inputs, run: dict[str, Any], compute_s: float, gamma: float,
                  adjust_gamma: bool = True) -> dict[str, Any] | None:
    """γ and φ from one single-host run of the strategy (model.reconcile), or None where it cannot say.

    H, the comm seconds per step the strategy can overlap: the comm hook's (DDP's all-reduce: ddp, zero1;
    whatever the engine timed: fsdp), else for fsdp its collectives costed over ROOT's single-host linktest.
    ZeRO-1's broadcasts come after the step, outside H: their seconds over that linktest are exposed as they are.
    The full-overlap exposure takes the collectives' shares from that linktest (any link where there is none).
    """
    n = int(run["workers"])
    plan = inputs.plan(n, run_bytes(run), run_partition(run))
    single = linktest_for(inputs, 1)
    link = link_of(single) if single else Link("shares", 1e9, 0.0)
    modelled = comm_by_op_s(plan, n, link, inputs.backend) if single else None
    hook, source = run.get("hook_comm_per_step_s"), "comm hook"
    if hook is None and inputs.strategy == "fsdp" and modelled is not None:
        hook, source = sum(modelled.values()), "modelled over the single-host linktest"
    if hook is None:
        return None
    fixed = modelled["broadcast"] if modelled is not None and inputs.strategy == "zero1" else 0.0
    exposed_ov = exposure(plan, hook, n, link, inputs.backend)
    step = step_s(run)
    if inputs.blocking:  # nothing overlaps (Inputs.blocking): the run's one equation gives γ alone
        g = max(1.0, (step - fixed - hook) / compute_s) if adjust_gamma else gamma
        cal = OverlapCalibration(g, 0.0, "blocking")
    elif adjust_gamma:
        cal = reconcile(step, compute_s, hook, gamma, exposed_ov, fixed_s=fixed)
    else:
        cal = OverlapCalibration(gamma, phi_of(step, compute_s * gamma, hook, exposed_ov, fixed), "phi")
    return {"run": run["path"], "overlap": cal.phi, "gamma": cal.gamma, "how": cal.how, "hook_comm_per_step_s": hook,
            "comm_source": source, "exposed_outside_hook_s": fixed, "measured_step_s": step}


def overlap(inputs: Inputs, fit: ComputeFit, gamma: float, adjust_gamma: bool = True
            ) -> tuple[float, float, str, list[dict[str, Any]]]:
    """(φ, γ, note, runs) from the ROOT's single-host runs of the strategy (medians, calibrate_run), else φ = 1
    (the model's overlap, assumed) and γ as given. With `adjust_gamma`, a γ that a run contradicts is
    re-solved from it (model.reconcile); else φ is only clamped."""
    runs = []
    for r in inputs.ddp:
        if _nodes(r) != 1:
            continue  # the runs projected over a linktest are what the projection is checked against
        cal = calibrate_run(inputs, r, fit.step_s(int(r["summary"]["per_worker_batch"])), gamma, adjust_gamma)
        if cal is not None:
            runs.append(cal)
    told = [x for x in runs if x["overlap"] is not None]
    what = f"single-host {inputs.strategy} run(s)"
    blocking = ("fsdp on the CPU: FSDP2's all-gathers and reduce-scatters block the step (its overlap needs "
                "CUDA streams), φ = 0")
    if not told:
        if inputs.blocking:
            return 0.0, gamma, blocking, runs
        return 1.0, gamma, (f"no {what} with comm times that can tell: φ = 1 (the model's overlap, "
                            "assumed)"), runs
    if inputs.blocking:
        new_gamma = statistics.median(x["gamma"] for x in told)
        note = blocking + (f"; γ {gamma:.3f} re-solved to {new_gamma:.3f} from {len(told)} {what}"
                           if abs(new_gamma - gamma) > 1e-9 else "")
        return 0.0, new_gamma, note, runs
    phi = statistics.median(x["overlap"] for x in told)
    new_gamma = statistics.median(x["gamma"] for x in told)
    sources = sorted({x["comm_source"] for x in told})
    note = f"from {len(told)} {what}' comm time ({', '.join(sources)}): median φ {phi:.2f}"
    if abs(new_gamma - gamma) > 1e-9:
        note += f"; γ {gamma:.3f} contradicted by them, re-solved to {new_gamma:.3f}"
    return phi, new_gamma, note, runs


def measured_skew(inputs: Inputs) -> tuple[float, str, list[str]]:
    """(skew s per step, note, runs) from ROOT's DDP runs that recorded per-rank step times (summary.per_rank):
    the median over those runs of how far the slowest rank's median compute per step is above the other ranks'
    (results.stragglers.rank_spread_s), the spread as measured, not extrapolated to more ranks; 0 without them."""
    spreads = [(r["path"], spread) for r in inputs.ddp
               if (spread := rank_spread_s((r.get("summary") or {}).get("per_rank"))) is not None]
    if not spreads:
        return 0.0, "no DDP run in ROOT recorded per-rank step times: skew 0 (give --skew-ms)", []
    skew = statistics.median(spread for _, spread in spreads)
    return skew, (f"measured: the slowest rank's compute above the other ranks', per step, median over "
                  f"{len(spreads)} DDP run(s) with per-rank step times"), [path for path, _ in spreads]


def linktest_for(inputs: Inputs, nodes: int) -> dict[str, Any] | None:
    """The newest linktest of this ROOT over `nodes` node(s) (1: the single-host link)."""
    for record in inputs.linktests:
        if int(record.get("nodes") or 1) == nodes:
            return record
    return None


def _what_would_help(rows: list[Projected], base: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Which of a faster link, gradient compression (DDP's all-reduce: ddp, zero1) or a larger per-worker batch
    the model says matters."""
    top = rows[-1]
    plan: Plan = base["plan"]
    alts = {"faster_link_4x": project_strategy(**{**base, "scenario": _faster(base["scenario"], 4.0)})}
    if plan.buckets:
        alts["compression_4x"] = project_strategy(**{**base, "plan": replace(
            plan, all_reduce_scale=plan.all_reduce_scale * 0.25)})
    alts["batch_2x"] = project_strategy(**{**base, "per_worker_batch": 2 * base["per_worker_batch"],
                                           "reference_batch": 2 * (base.get("reference_batch")
                                                                   or base["per_worker_batch"])})
    # What counts is the images per second of the whole job at the largest N.
    gain = {k: (a.workers * a.per_worker_batch / a.step_time_s) / (top.workers * top.per_worker_batch /
                                                                 top.step_time_s) - 1 for k, a in alts.items()}
    exposed_share = top.exposed_comm_s / top.step_time_s
    names = {"faster_link_4x": "a 4× faster link", "compression_4x": "4× gradient compression",
             "batch_2x": "a 2× larger per-worker batch"}
    best = max(gain, key=lambda k: gain[k])
    if gain[best] < 0.02:
        levers = "neither a faster link, compression nor a larger batch" if plan.buckets else \
            "neither a faster link nor a larger batch"
        line = (f"At N = {top.workers} the step is compute-bound ({exposed_share * 100:.0f} % exposed communication): "
                f"{levers} gains more than 2 % throughput.")
    else:
        line = (f"At N = {top.workers}, {exposed_share * 100:.0f} % of the step is exposed communication; "
                f"{names[best]} helps most (+{gain[best] * 100:.0f} % images/s); "
                + ", ".join(f"{names[k]} +{gain[k] * 100:.0f} %" for k in gain if k != best) + ".")
    return line, {k: {"gain": gain[k], **alts[k].row()} for k in alts}


def _faster(scenario: Scenario, factor: float) -> Scenario:
    inter = Link(f"{scenario.inter.name}×{factor:g}", scenario.inter.bandwidth_Bps * factor, scenario.inter.latency_s)
    intra = scenario.intra if scenario.nodes > 1 else Link(f"{scenario.intra.name}×{factor:g}",
                                                           scenario.intra.bandwidth_Bps * factor,
                                                           scenario.intra.latency_s)
    return Scenario(scenario.workers, scenario.nodes, inter, intra)


def layout(workers: int, nodes: int | None, per_node: int | None) -> int:
    """Nodes for N workers: --nodes K (capped at N), else ⌈N ÷ workers per node⌉ (default 1 per node)."""
    if nodes is not None:
        return max(1, min(nodes, workers))
    return max(1, -(-workers // (per_node or 1)))


def project(inputs: Inputs, workers: Sequence[int], link: Link, *, nodes: int | None = None,
            per_node: int | None = None, intra: Link | None = None, per_worker_batch: int | None = None,
            global_batch: int | None = None, gamma: float | None = None, skew_s: float | None = None,
            overlap_phi: float | None = None) -> dict[str, Any]:
    """The projection.json document for these worker counts over `link` (`skew_s` None: measured_skew)."""
    if nodes is not None and per_node is not None:
        raise ConfigError("give --nodes or --workers-per-node, not both")
    if not workers or any(n < 1 for n in workers):
        raise ConfigError("--workers needs positive worker counts, e.g. 2,4,8,16")
    if per_worker_batch is not None and global_batch is not None:
        raise ConfigError("give --per-worker-batch (weak scaling) or --global-batch (strong scaling), not both")
    fit = compute_fit(inputs)
    buckets = inputs.buckets
    skew_note, skew_runs = "given with --skew-ms", []
    if skew_s is None:
        skew_s, skew_note, skew_runs = measured_skew(inputs)
    gamma_note = "given with --contention"
    if gamma is None:
        gamma, gamma_note = contention(inputs, fit)
    given_gamma = gamma_note == "given with --contention"
    phi, gamma_fit, phi_note, phi_runs = overlap(inputs, fit, gamma, adjust_gamma=not given_gamma)
    if gamma_fit != gamma:
        gamma_note += (f"; re-solved to {gamma_fit:.3f} from the single-host {inputs.strategy} run(s) "
                       "(model.reconcile)")
        gamma = gamma_fit
    if overlap_phi is not None:
        phi, phi_note = overlap_phi, "given with --overlap"
    single_host = linktest_for(inputs, 1)
    if intra is None:
        intra = link_of(single_host, "linktest (this host)") if single_host else link
    if global_batch is None:
        per_worker_batch = per_worker_batch or max(b for b, _ in fit.points)
    measured_bytes, bytes_runs = comm_bytes(inputs.ddp)
    rows: list[Projected] = []
    bases: list[dict[str, Any]] = []
    for n in sorted(set(workers)):
        k = layout(n, nodes, per_node)
        b = per_worker_batch if global_batch is None else max(1, global_batch // n)
        base = {"plan": inputs.plan(n, measured_bytes), "scenario": Scenario(n, k, link, intra),
                "per_worker_batch": b, "compute": fit, "backend": inputs.backend, "contention": gamma,
                "skew_s": skew_s, "reference_batch": None if global_batch is None else global_batch, "overlap": phi}
        rows.append(project_strategy(**base))
        bases.append(base)
    help_line, alternatives = _what_would_help(rows, bases[-1])
    measured = measured_errors(inputs=inputs, fit=fit, gamma=gamma, skew_s=skew_s, phi=phi)
    for m in measured:  # φ from this very run: its error is not an independent check
        m["overlap_from_this_run"] = any(x["run"] == m["run"] and x["overlap"] is not None for x in phi_runs)
    plan = bases[-1]["plan"]
    return {
        "kind": "projection", "version": PROJECTION_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "root": str(inputs.root), "model": inputs.model, "framework": inputs.framework,
        "strategy": inputs.strategy, "backend": inputs.backend,
        "threads_per_worker": inputs.threads, "input_shape": list(inputs.input_shape),
        "scaling": "weak" if global_batch is None else "strong",
        "per_worker_batch": per_worker_batch, "global_batch": global_batch,
        "layout": {"nodes": nodes} if nodes is not None else {"workers_per_node": per_node or 1},
        "link": link.as_dict(), "intra_link": intra.as_dict(),
        "calibration": {
            "compute": {**fit.as_dict(), "runs": [r["path"] for r in inputs.singles]},
            "backward_share": BACKWARD_SHARE,
            "buckets": [{"bytes": bk.bytes, "ready_fraction": bk.ready_fraction} for bk in buckets],
            "gradient_bytes": inputs.gradient_bytes,
            "collectives": {**plan.describe(), "workers": bases[-1]["scenario"].workers,
                            "modelled_bytes_by_op": plan.modelled_bytes()},
            "comm_bytes": {"measured_by_op": measured_bytes, "runs": bytes_runs,
                           "used_scales": bytes_scales(inputs.plan(bases[-1]["scenario"].workers), measured_bytes),
                           "note": ("the model's parameter bytes" if measured_bytes is None else
                                    "each kind rescaled to the runs' median summary.comm_bytes_by_op where it is "
                                    f"within ×{BYTES_TRUST:g} of the model's")},
            "contention": {"gamma": gamma, "note": gamma_note, "runs": [r["path"] for r in inputs.pairs]},
            "overlap": {"phi": phi, "note": phi_note, "runs": phi_runs},
            "skew_s": skew_s,
            "skew": {"skew_s": skew_s, "note": skew_note, "runs": skew_runs},
            "comm_hook": comm_hook_check(inputs),
        },
        "rows": [r.row() for r in rows],
        "measured": measured,
        "what_would_help": help_line,
        "alternatives": alternatives,
    }


def comm_hook_check(inputs: Inputs) -> list[dict[str, Any]]:
    """The runs' measured comm time per step (the comm hook's) beside the model of their collectives over
    their linktest, in all (`modelled_ring_per_step_s`) and by kind."""
    out = []
    for r in inputs.ddp:
        record = linktest_for(inputs, _nodes(r))
        hook = r.get("hook_comm_per_step_s")
        if hook is None:
            continue
        plan = inputs.plan(r["workers"], run_bytes(r), run_partition(r))
        by_op = comm_by_op_s(plan, r["workers"], link_of(record), inputs.backend) if record else None
        out.append({"run": r["path"], "workers": r["workers"], "hook_comm_per_step_s": hook,
                    "modelled_ring_per_step_s": sum(by_op.values()) if by_op else None,
                    "modelled_by_op_s": by_op})
    return out


def measured_errors(inputs: Inputs, fit: ComputeFit, gamma: float, skew_s: float,
                    phi: float = 1.0) -> list[dict[str, Any]]:
    """Every run of the strategy in ROOT projected over the link its linktest measured: measured vs projected."""
    out = []
    for r in inputs.ddp:
        k = _nodes(r)
        record = linktest_for(inputs, k)
        if record is None:
            continue
        link = link_of(record)
        single = linktest_for(inputs, 1)
        intra = link_of(single) if single else link
        b = int(r["summary"]["per_worker_batch"])
        plan = inputs.plan(r["workers"], run_bytes(r), run_partition(r))
        p = project_strategy(plan, Scenario(r["workers"], k, link, intra), b, fit, backend=inputs.backend,
                             contention=gamma, skew_s=skew_s, overlap=phi)
        m = step_s(r)
        out.append({"run": r["path"], "strategy": inputs.strategy, "workers": r["workers"], "nodes": k,
                    "per_worker_batch": b, "measured_step_s": m, "projected_step_s": p.step_time_s,
                    "step_time_low_s": p.step_time_low_s, "step_time_high_s": p.step_time_high_s,
                    "error": p.step_time_s / m - 1, "within_band": p.step_time_low_s <= m <= p.step_time_high_s,
                    "link": link.as_dict(), "comm_by_op_s": p.extra.get("comm_by_op_s")})
    return out


def write_projection(doc: dict[str, Any], root: str | Path) -> Path:
    path = Path(root) / PROJECTION_FILE
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
    return path


def read_projection(root: str | Path) -> dict[str, Any] | None:
    """ROOT/projection.json, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads((Path(root) / PROJECTION_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "projection" else None
