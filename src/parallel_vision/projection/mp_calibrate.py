"""From a ROOT's runs to projection.json for the model-parallel strategies (docs/projection.md, *Model
parallelism*): `pipeline` (stage times from the runs' summary.pipeline, or the blocks' times split over p stages)
and `tensor` (the 1-worker compute split N ways for the sharded layers, plus the forward all-reduce). Every run
of the strategy whose link a linktest in ROOT describes is projected over that link with its error, as for DDP.
Reads the store only; imports no framework.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from parallel_vision.errors import ConfigError
from parallel_vision.models.catalog import WIDE_MLP_WIDTH, layer_specs, pipeline_blocks
from parallel_vision.projection import records
from parallel_vision.projection.calibrate import TOLERANCE, compute_fit, linktest_for
from parallel_vision.projection.linktest import link_of
from parallel_vision.projection.model import ComputeFit, Link
from parallel_vision.projection.mp_model import (
    ACTIVATION_BYTES,
    PipelineStep,
    TensorStep,
    balanced_split,
    cut_elements,
    tensor_sharded_share,
)
from parallel_vision.projection.root_inputs import BYTES_TRUST, Inputs
from parallel_vision.projection.store import PROJECTION_VERSION

#: All-reduces of the activations per step that tensor parallelism was measured to issue on wide_mlp (forward
#: only: fc2's partial outputs; backward needs none, fc1's input gradient is never asked for).
TENSOR_ALLREDUCES = 1


def _pipe(run: dict[str, Any]) -> dict[str, Any]:
    return (run.get("summary") or {}).get("pipeline") or {}


def _block_costs(inputs: Inputs, fit: ComputeFit, micro: float) -> tuple[list[float], str]:
    """Seconds of one micro-batch's forward + backward per pipeline block: the shares a pipeline run timed at
    start-up (summary.pipeline.split.block_ms), else each block's forward FLOPs, times T_c(micro-batch) of the
    1-worker fit."""
    c, s, _ = inputs.input_shape
    blocks = pipeline_blocks(inputs.model)
    timed = [_pipe(r).get("split", {}).get("block_ms") for r in inputs.ddp]
    timed = [t for t in timed if isinstance(t, list) and len(t) == len(blocks) and sum(t) > 0]
    if timed:
        shares = [statistics.median(t[j] for t in timed) for j in range(len(blocks))]
        how = f"the blocks' start-up times of {len(timed)} pipeline run(s) (summary.pipeline.split.block_ms)"
    else:
        flops = {x.name: x.forward_flops for x in layer_specs(inputs.model, c, s, inputs.classes)}
        shares = [float(sum(flops[n] for n in block)) for block in blocks]
        how = "each block's forward FLOPs (no pipeline run in ROOT timed its blocks)"
    total = sum(shares)
    step = fit.step_s(micro)
    return [step * x / total for x in shares], (f"the 1-worker T_c(micro-batch {micro:g}) = {step * 1e3:.2f} ms "
                                                f"split over the blocks by {how}")


def stage_time(inputs: Inputs, fit: ComputeFit, stages: int, microbatches: int,
               batch: int) -> tuple[float, str, list[str]]:
    """(the slowest stage's forward + backward seconds per micro-batch, how it was found, the runs it came from):
    the median over pipeline runs of this p, m and batch of their slowest stage's measured (forward + backward
    ms) ÷ m (summary.pipeline.per_stage), else the balanced split of the blocks' costs (`_block_costs`)."""
    same = [r for r in inputs.ddp if _pipe(r).get("stages") == stages and _pipe(r).get("microbatches") == microbatches
            and int(r["summary"]["per_worker_batch"]) == batch
            and all(s for s in _pipe(r).get("per_stage") or [None])]
    if same:
        slowest = [max((s["forward_ms"] + s["backward_ms"]) / 1e3 / microbatches for s in _pipe(r)["per_stage"])
                   for r in same]
        how = (f"measured: the slowest stage's forward + backward ÷ m, median over {len(same)} pipeline run(s) of "
               f"{stages} stages (summary.pipeline.per_stage)")
        return statistics.median(slowest), how, [r["path"] for r in same]
    costs, how = _block_costs(inputs, fit, batch / microbatches)
    split = balanced_split(costs, stages)
    return max(sum(costs[j] for j in part) for part in split), f"modelled: {how}, cut as the engine cuts", []


def check_stages(model: str, stages: Sequence[int]) -> None:
    blocks = len(pipeline_blocks(model))
    too_many = [p for p in stages if p > blocks]
    if too_many:
        raise ConfigError(f"pvision project: {model} has {blocks} pipeline blocks, so it cannot be cut into "
                          f"{max(too_many)} stages (give --workers up to {blocks})")


def send_scale(inputs: Inputs, batch_of: dict[str, int]) -> tuple[float, str]:
    """Measured ÷ modelled bytes of rank 0's sends and receives per step (summary.comm_bytes_by_op.send_recv;
    modelled 2 × batch × the width of its first cut (summary.pipeline.split.cuts) × 4 bytes), median over the
    pipeline runs, within BYTES_TRUST."""
    c, s, _ = inputs.input_shape
    widths = cut_elements(inputs.model, c, s, inputs.classes)
    ratios = []
    for r in inputs.ddp:
        got = ((r.get("summary") or {}).get("comm_bytes_by_op") or {}).get("send_recv")
        cuts = _pipe(r).get("split", {}).get("cuts")
        if got and cuts:
            ratios.append(float(got) / (2 * batch_of[r["path"]] * widths[int(cuts[0]) - 1] * ACTIVATION_BYTES))
    return _scale(ratios, "the model's activation bytes", "send_recv", "pipeline")


def pipeline_step(inputs: Inputs, fit: ComputeFit, stages: int, *, link: Link, microbatches: int, batch: int,
                  send_scale: float = 1.0) -> tuple[PipelineStep, str, list[str]]:
    """The projected pipeline step at `stages` over `link`, with how its stage time was found."""
    c, s, _ = inputs.input_shape
    stage_s, how, runs = stage_time(inputs, fit, stages, microbatches, batch)
    micro = batch / microbatches
    cuts = balanced_split(_block_costs(inputs, fit, micro)[0], stages)
    widths = cut_elements(inputs.model, c, s, inputs.classes)
    sends = tuple(widths[part[-1]] * micro * ACTIVATION_BYTES * send_scale for part in cuts[:-1])
    step = PipelineStep(stages=stages, microbatches=microbatches, stage_s=stage_s, send_bytes=sends, link=link)
    return step, how, runs


def tensor_step(inputs: Inputs, fit: ComputeFit, workers: int, *, link: Link, batch: int,
                bytes_scale: float = 1.0) -> TensorStep:
    c, s, _ = inputs.input_shape
    return TensorStep(workers=workers, compute_1_s=fit.step_s(batch),
                      sharded_share=tensor_sharded_share(inputs.model, c, s, inputs.classes),
                      allreduce_bytes=batch * WIDE_MLP_WIDTH * ACTIVATION_BYTES * bytes_scale,
                      allreduces=TENSOR_ALLREDUCES, link=link)


def _tensor_scale(inputs: Inputs) -> tuple[float, str]:
    ratios = []
    for r in inputs.ddp:
        got = ((r.get("summary") or {}).get("comm_bytes_by_op") or {}).get("all_reduce")
        if got:
            ratios.append(float(got) / (int(r["summary"]["per_worker_batch"]) * WIDE_MLP_WIDTH * ACTIVATION_BYTES))
    return _scale(ratios, "the model's bytes: batch × 4096 × 4", "all_reduce", "tensor")


def _scale(ratios: list[float], modelled: str, kind: str, strategy: str) -> tuple[float, str]:
    """The runs' median measured ÷ modelled bytes of `kind`, with how it was found; 1 without runs, or when the
    runs are further than BYTES_TRUST from the model (a different counting convention)."""
    if not ratios:
        return 1.0, f"{modelled} (no {strategy} run counted its {kind} bytes)"
    ratio = statistics.median(ratios)
    if not 1 / BYTES_TRUST <= ratio <= BYTES_TRUST:
        return 1.0, f"{modelled} (the runs' {kind} is ×{ratio:.2f} of them: not used)"
    return ratio, f"{modelled} × {ratio:.3f}, the runs' median summary.comm_bytes_by_op.{kind}"


def project(inputs: Inputs, workers: Sequence[int], link: Link, *, batch: int | None = None,
            microbatches: int | None = None) -> dict[str, Any]:
    """projection.json for `pipeline` (workers = stages) or `tensor` over `link`, every worker on its own node."""
    if not workers or any(n < 1 for n in workers):
        raise ConfigError("--workers needs positive worker counts, e.g. 2,4,8")
    fit = compute_fit(inputs)
    runs_batch = [int(r["summary"]["per_worker_batch"]) for r in inputs.ddp]
    batch = batch or (max(set(runs_batch), key=runs_batch.count) if runs_batch else max(b for b, _ in fit.points))
    rows, notes = [], []
    if inputs.strategy == "pipeline":
        check_stages(inputs.model, workers)
        ms = [_pipe(r)["microbatches"] for r in inputs.ddp if _pipe(r).get("microbatches")]
        m_how = ("given with --microbatches" if microbatches else f"m = {max(set(ms), key=ms.count)}, the pipeline "
                 "runs' microbatches" if ms else "m = 4·p, the engine's default (no pipeline run in ROOT)")
        scale, bytes_note = send_scale(inputs, {r["path"]: int(r["summary"]["per_worker_batch"]) for r in inputs.ddp})
        for p in sorted(set(workers)):
            m = microbatches or (max(set(ms), key=ms.count) if ms else 4 * p)
            step, how, _ = pipeline_step(inputs, fit, p, link=link, microbatches=m, batch=batch, send_scale=scale)
            rows.append(_row(p, batch, fit, (step.step_s, step.step_s, step.high_s), exposed=step.exposed_s,
                             compute=step.compute_s,
                             stage_s=step.stage_s, microbatches=m, bubble=step.bubble, send_bytes=list(step.send_bytes),
                             stage_time_from=how, sends_per_microbatch_s=step.sends_per_microbatch_s))
        notes = [f"microbatches: {m_how}", f"bytes: {bytes_note}", stage_check(inputs, fit),
                 "the step: (m + p − 1) × the slowest stage's forward + backward per micro-batch + 2(p − 1) sends "
                 "(the first micro-batch's activation down every cut, the last one's gradient back); high: every "
                 "micro-batch's sends in series"]
    else:
        if inputs.model != "wide_mlp":
            raise ConfigError(f"pvision project: tensor splits wide_mlp only (engines/torch/tensor_parallel.py); "
                              f"ROOT's runs are {inputs.model}'s")
        scale, bytes_note = _tensor_scale(inputs)
        for n in sorted(set(workers)):
            t = tensor_step(inputs, fit, n, link=link, batch=batch, bytes_scale=scale)
            rows.append(_row(n, batch, fit, (t.step_s, t.low_s, t.high_s), exposed=t.comm_s, compute=t.compute_s,
                             sharded_share=t.sharded_share, allreduce_bytes=t.allreduce_bytes))
        notes = [f"bytes: {bytes_note}",
                 f"{TENSOR_ALLREDUCES} all-reduce of batch × 4096 activations per step, exposed: the forward one after "
                 "fc2 (row-parallel); Megatron's pair needs a second in backward for the input gradient of the "
                 "column-parallel fc1, which the images do not need, so the runs issue none (measured)"]
    measured = measured_errors(inputs, fit)
    return {
        "kind": "projection", "version": PROJECTION_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "root": str(inputs.root), "model": inputs.model, "framework": inputs.framework, "strategy": inputs.strategy,
        "backend": inputs.backend, "threads_per_worker": inputs.threads, "input_shape": list(inputs.input_shape),
        "scaling": "strong", "per_worker_batch": batch, "global_batch": batch, "layout": {"workers_per_node": 1},
        "link": link.as_dict(), "intra_link": link.as_dict(),
        "calibration": {"compute": {**fit.as_dict(), "runs": [r["path"] for r in inputs.singles]},
                        "runs": [r["path"] for r in inputs.ddp], "notes": notes},
        "rows": rows, "measured": measured, "what_would_help": _help(rows, inputs.strategy),
    }


def stage_check(inputs: Inputs, fit: ComputeFit) -> str:
    """How far the pipeline runs' measured slowest stage is from the block model at their own p (not applied)."""
    ratios = []
    for r in inputs.ddp:
        p, m, b = _pipe(r).get("stages"), _pipe(r).get("microbatches"), int(r["summary"]["per_worker_batch"])
        if p and m and all(s for s in _pipe(r).get("per_stage") or [None]):
            costs = _block_costs(inputs, fit, b / m)[0]
            modelled = max(sum(costs[j] for j in part) for part in balanced_split(costs, p))
            ratios.append(stage_time(inputs, fit, p, m, b)[0] / modelled)
    if not ratios:
        return "stage times: no pipeline run in ROOT measured its stages; every p is modelled from the blocks"
    return (f"stage times: the pipeline runs' measured slowest stage is ×{statistics.median(ratios):.2f} the block "
            "model's at their own p (median; co-located stages contend for the cores): not applied to other p, "
            "where every stage has a node of its own")


def _row(n: int, batch: int, fit: ComputeFit, times: tuple[float, float, float], *, exposed: float,
         compute: float, **extra: Any) -> dict[str, Any]:
    """One row of projection.json; `times`: the step's point, low and high (s)."""
    step, low, high = times
    speedup = fit.step_s(batch) / step  # the same global batch: images/s over one worker's
    return {"workers": n, "nodes": n, "per_worker_batch": batch, "step_time_s": step, "step_time_low_s": low,
            "step_time_high_s": high, "speedup": speedup, "efficiency": speedup / n, "exposed_comm_s": exposed,
            "compute_s": compute, **extra}


def _help(rows: list[dict[str, Any]], strategy: str) -> str:
    top = rows[-1]
    share = top["exposed_comm_s"] / top["step_time_s"]
    if strategy == "pipeline":
        return (f"At {top['workers']} stages the bubble is {top['bubble'] * 100:.0f} % of the schedule and exposed "
                f"sends {share * 100:.0f} % of the step: more micro-batches shrink the bubble.")
    return f"At N = {top['workers']}, {share * 100:.0f} % of the step is the exposed activation all-reduce."


def measured_errors(inputs: Inputs, fit: ComputeFit) -> list[dict[str, Any]]:
    """Every run of the strategy projected over its linktest's link: measured vs projected step."""
    out = []
    for r in inputs.ddp:
        record = linktest_for(inputs, records.nodes(r))
        if record is None:
            continue
        link, b, n = link_of(record), int(r["summary"]["per_worker_batch"]), int(r["workers"])
        extra: dict[str, Any] = {}
        if inputs.strategy == "pipeline":
            m = int(_pipe(r).get("microbatches") or 4 * n)
            scale = send_scale(inputs, {x["path"]: int(x["summary"]["per_worker_batch"]) for x in inputs.ddp})[0]
            step, how, runs = pipeline_step(inputs, fit, n, link=link, microbatches=m, batch=b, send_scale=scale)
            point, low, high = step.step_s, step.step_s, step.high_s
            extra = {"stage_time_from": how, "stage_time_from_this_run": r["path"] in runs}
        else:
            t = tensor_step(inputs, fit, n, link=link, batch=b, bytes_scale=_tensor_scale(inputs)[0])
            point, low, high = t.step_s, t.low_s, t.high_s
        got = records.step_s(r)
        out.append({"run": r["path"], "strategy": inputs.strategy, "workers": n, "nodes": records.nodes(r),
                    "per_worker_batch": b, "measured_step_s": got, "projected_step_s": point, "step_time_low_s": low,
                    "step_time_high_s": high, "error": point / got - 1, "within_tolerance": abs(point / got - 1)
                    <= TOLERANCE, "link": link.as_dict(), **extra})
    return out
