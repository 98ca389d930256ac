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

import statistics
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from parallel_vision.errors import ConfigError
from parallel_vision.projection import records
from parallel_vision.projection.collectives import (
    Plan,
    comm_by_op_s,
    exposure,
    project_strategy,
)
from parallel_vision.projection.linktest import link_of
from parallel_vision.projection.model import (
    BACKWARD_SHARE,
    ComputeFit,
    Link,
    OverlapCalibration,
    Projected,
    Scenario,
    fit_compute,
    phi_of,
    reconcile,
)
from parallel_vision.projection.root_inputs import BYTES_TRUST, Inputs, bytes_scales
from parallel_vision.projection.store import PROJECTION_VERSION
from parallel_vision.results.stragglers import rank_spread_s

#: A projected step within this of the measured one counts as a hit (the issue's target).
TOLERANCE = 0.15


def compute_fit(inputs: Inputs) -> ComputeFit:
    return fit_compute([(int(r["summary"]["per_worker_batch"]), records.step_s(r)) for r in inputs.singles])


def contention(inputs: Inputs, fit: ComputeFit) -> tuple[float, str]:
    """γ = the pair control's step time ÷ T_c at its batch (median over the control's runs), else 1."""
    if not inputs.pairs:
        return 1.0, "no 'two independent runs at once' control in ROOT: γ = 1 (no slowdown assumed)"
    ratios = [records.step_s(r) / fit.step_s(int(r["summary"]["per_worker_batch"])) for r in inputs.pairs]
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
    plan = inputs.plan(n, records.run_bytes(run), records.run_partition(run))
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
    step = records.step_s(run)
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
        if records.nodes(r) != 1:
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
    measured_bytes, bytes_runs = records.comm_bytes(inputs.ddp)
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
        record = linktest_for(inputs, records.nodes(r))
        hook = r.get("hook_comm_per_step_s")
        if hook is None:
            continue
        plan = inputs.plan(r["workers"], records.run_bytes(r), records.run_partition(r))
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
        k = records.nodes(r)
        record = linktest_for(inputs, k)
        if record is None:
            continue
        link = link_of(record)
        single = linktest_for(inputs, 1)
        intra = link_of(single) if single else link
        b = int(r["summary"]["per_worker_batch"])
        plan = inputs.plan(r["workers"], records.run_bytes(r), records.run_partition(r))
        p = project_strategy(plan, Scenario(r["workers"], k, link, intra), b, fit, backend=inputs.backend,
                             contention=gamma, skew_s=skew_s, overlap=phi)
        m = records.step_s(r)
        out.append({"run": r["path"], "strategy": inputs.strategy, "workers": r["workers"], "nodes": k,
                    "per_worker_batch": b, "measured_step_s": m, "projected_step_s": p.step_time_s,
                    "step_time_low_s": p.step_time_low_s, "step_time_high_s": p.step_time_high_s,
                    "error": p.step_time_s / m - 1, "within_band": p.step_time_low_s <= m <= p.step_time_high_s,
                    "link": link.as_dict(), "comm_by_op_s": p.extra.get("comm_by_op_s")})
    return out
