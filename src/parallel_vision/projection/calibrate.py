"""From a ROOT's runs and linktest to projection.json: calibrate, project, compare with what was measured.

Calibration (docs/projection.md): T_c(b) from the 1-worker runs (one per per-worker batch, steady step time
= steady epoch time ÷ steps per epoch); the buckets from the model's layer list; contention from runs
labelled as the "two independent runs at once" control (`extra.control = "pair"`); the overlap φ from the
single-host DDP runs' comm-hook time (model.overlap_efficiency); the link from a
preset, numbers, or the ROOT's linktest. Every N that was also measured (DDP runs in ROOT whose link a
linktest in ROOT describes) gets its error. Reads the store only; imports no framework.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.errors import ConfigError, ResultsError
from parallel_vision.models.catalog import layer_specs, model_costs
from parallel_vision.projection.linktest import link_of
from parallel_vision.projection.model import (
    BACKWARD_SHARE,
    Bucket,
    ComputeFit,
    Link,
    Projected,
    Scenario,
    ddp_buckets,
    fit_compute,
    overlap_efficiency,
    project_point,
    reconcile_overlap,
    ring_allreduce_s,
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
    pairs: list[dict[str, Any]]
    linktests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def buckets(self) -> list[Bucket]:
        c, s, _ = self.input_shape
        return ddp_buckets(layer_specs(self.model, c, s, self.classes))

    @property
    def gradient_bytes(self) -> int:
        c, s, _ = self.input_shape
        return model_costs(self.model, c, s, self.classes).gradient_bytes


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


def load_inputs(root: str | Path, model: str | None = None, framework: str = "torch",
                threads: float | None = None) -> Inputs:
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
    ddp = [r for r in runs if r["strategy"] == "ddp" and r["workers"] > 1]
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
                  classes=int(w.get("classes") or 10), singles=singles, ddp=ddp, pairs=pairs, linktests=linktests)


def compute_fit(inputs: Inputs) -> ComputeFit:
    return fit_compute([(int(r["summary"]["per_worker_batch"]), step_s(r)) for r in inputs.singles])


def contention(inputs: Inputs, fit: ComputeFit) -> tuple[float, str]:
    """γ = the pair control's step time ÷ T_c at its batch (median over the control's runs), else 1."""
    if not inputs.pairs:
        return 1.0, "no 'two independent runs at once' control in ROOT: γ = 1 (no slowdown assumed)"
    ratios = [step_s(r) / fit.step_s(int(r["summary"]["per_worker_batch"])) for r in inputs.pairs]
    gamma = max(1.0, statistics.median(ratios))
    return gamma, f"from {len(ratios)} run(s) of the pair control: median ratio {statistics.median(ratios):.3f}"


def overlap(inputs: Inputs, fit: ComputeFit, gamma: float, adjust_gamma: bool = True
            ) -> tuple[float, float, str, list[dict[str, Any]]]:
    """(φ, γ, note, runs) from the ROOT's single-host DDP runs (medians), else φ = 1 (the bucket model's
    overlap, assumed) and γ as given. With `adjust_gamma`, a γ that a DDP run contradicts is re-solved
    from it (model.reconcile_overlap); else φ is only clamped."""
    runs = []
    for r in inputs.ddp:
        hook = r.get("hook_comm_per_step_s")
        if _nodes(r) != 1 or hook is None:
            continue  # the runs projected over a linktest are what the projection is checked against
        tc = fit.step_s(int(r["summary"]["per_worker_batch"]))
        if adjust_gamma:
            cal = reconcile_overlap(inputs.buckets, step_s(r), tc, hook, gamma)
            phi, g, how = cal.phi, cal.gamma, cal.how
        else:
            phi, g, how = overlap_efficiency(inputs.buckets, step_s(r), tc * gamma, hook), gamma, "phi"
        runs.append({"run": r["path"], "overlap": phi, "gamma": g, "how": how, "hook_comm_per_step_s": hook,
                     "measured_step_s": step_s(r)})
    told = [x for x in runs if x["overlap"] is not None]
    if not told:
        return 1.0, gamma, ("no single-host DDP run with comm-hook times that can tell: φ = 1 (the bucket "
                            "model's overlap, assumed)"), runs
    phi = statistics.median(x["overlap"] for x in told)
    new_gamma = statistics.median(x["gamma"] for x in told)
    note = f"from {len(told)} single-host DDP run(s)' comm-hook time: median φ {phi:.2f}"
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
    """Which of a faster link, gradient compression or a larger per-worker batch the model says matters."""
    top = rows[-1]
    alts = {
        "faster_link_4x": project_point(**{**base, "scenario": _faster(base["scenario"], 4.0)}),
        "compression_4x": project_point(**{**base, "bytes_scale": 0.25}),
        "batch_2x": project_point(**{**base, "per_worker_batch": 2 * base["per_worker_batch"],
                                     "reference_batch": 2 * (base.get("reference_batch")
                                                             or base["per_worker_batch"])}),
    }
    # What counts is the images per second of the whole job at the largest N.
    gain = {k: (a.workers * a.per_worker_batch / a.step_time_s) / (top.workers * top.per_worker_batch /
                                                                 top.step_time_s) - 1 for k, a in alts.items()}
    exposed_share = top.exposed_comm_s / top.step_time_s
    names = {"faster_link_4x": "a 4× faster link", "compression_4x": "4× gradient compression",
             "batch_2x": "a 2× larger per-worker batch"}
    best = max(gain, key=lambda k: gain[k])
    if gain[best] < 0.02:
        line = (f"At N = {top.workers} the step is compute-bound ({exposed_share * 100:.0f} % exposed communication): "
                "neither a faster link, compression nor a larger batch gains more than 2 % throughput.")
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
        gamma_note += f"; re-solved to {gamma_fit:.3f} from the single-host DDP run(s) (model.reconcile_overlap)"
        gamma = gamma_fit
    if overlap_phi is not None:
        phi, phi_note = overlap_phi, "given with --overlap"
    single_host = linktest_for(inputs, 1)
    if intra is None:
        intra = link_of(single_host, "linktest (this host)") if single_host else link
    if global_batch is None:
        per_worker_batch = per_worker_batch or max(b for b, _ in fit.points)
    rows: list[Projected] = []
    bases: list[dict[str, Any]] = []
    for n in sorted(set(workers)):
        k = layout(n, nodes, per_node)
        b = per_worker_batch if global_batch is None else max(1, global_batch // n)
        base = {"scenario": Scenario(n, k, link, intra), "per_worker_batch": b, "compute": fit,
                "buckets": buckets, "contention": gamma, "skew_s": skew_s,
                "reference_batch": None if global_batch is None else global_batch, "overlap": phi}
        rows.append(project_point(**base))
        bases.append(base)
    help_line, alternatives = _what_would_help(rows, bases[-1])
    measured = measured_errors(inputs=inputs, fit=fit, buckets=buckets, gamma=gamma, skew_s=skew_s, phi=phi)
    for m in measured:  # φ from this very run: its error is not an independent check
        m["overlap_from_this_run"] = any(x["run"] == m["run"] and x["overlap"] is not None for x in phi_runs)
    return {
        "kind": "projection", "version": PROJECTION_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "root": str(inputs.root), "model": inputs.model, "framework": inputs.framework,
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
            "contention": {"gamma": gamma, "note": gamma_note, "runs": [r["path"] for r in inputs.pairs]},
            "overlap": {"phi": phi, "note": phi_note, "runs": phi_runs},
            "skew_s": skew_s,
            "skew": {"skew_s": skew_s, "note": skew_note, "runs": skew_runs},
            "comm_hook": comm_hook_check(inputs, buckets),
        },
        "rows": [r.row() for r in rows],
        "measured": measured,
        "what_would_help": help_line,
        "alternatives": alternatives,
    }


def comm_hook_check(inputs: Inputs, buckets: list[Bucket]) -> list[dict[str, Any]]:
    """The DDP runs' comm-hook all-reduce time per step beside the ring model over their linktest."""
    out = []
    for r in inputs.ddp:
        record = linktest_for(inputs, _nodes(r))
        hook = r.get("hook_comm_per_step_s")
        if hook is None:
            continue
        modelled = (sum(ring_allreduce_s(b.bytes, r["workers"], link_of(record)) for b in buckets)
                    if record else None)
        out.append({"run": r["path"], "workers": r["workers"], "hook_comm_per_step_s": hook,
                    "modelled_ring_per_step_s": modelled})
    return out


def measured_errors(inputs: Inputs, fit: ComputeFit, buckets: list[Bucket], gamma: float,
                    skew_s: float, phi: float = 1.0) -> list[dict[str, Any]]:
    """Every DDP run in ROOT projected over the link its linktest measured: measured vs projected."""
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
        p = project_point(Scenario(r["workers"], k, link, intra), b, fit, buckets, contention=gamma, skew_s=skew_s,
                          overlap=phi)
        m = step_s(r)
        out.append({"run": r["path"], "workers": r["workers"], "nodes": k, "per_worker_batch": b,
                    "measured_step_s": m, "projected_step_s": p.step_time_s, "step_time_low_s": p.step_time_low_s,
                    "step_time_high_s": p.step_time_high_s, "error": p.step_time_s / m - 1,
                    "within_band": p.step_time_low_s <= m <= p.step_time_high_s,
                    "link": link.as_dict()})
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
