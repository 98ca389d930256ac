"""Why models scale differently: each model's compute and gradient traffic beside its measured speedup.

Data parallelism pays when a worker's compute per step dwarfs the gradient bytes it must all-reduce.
Each row puts the model's declared costs (result.json's `workload` block: forward FLOPs per image,
gradient bytes) beside what was measured for it (speedup, efficiency, the share of the step spent in
all-reduce), so the reader sees the cause next to the effect; `verdict` says it in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from parallel_vision.report.data import ConfigGroup, ReportData
from parallel_vision.report.scaling import ScalingRow


@dataclass(frozen=True)
class ModelRow:
    """One N-worker configuration of one model, with its 1-worker baseline's numbers."""

    group: ConfigGroup
    scaling: ScalingRow
    parameters: int
    forward_gflop: float
    """Forward GFLOP per image (a multiply-accumulate counts 2)."""
    gradient_mb: float
    """MB of fp32 gradients each worker all-reduces per step."""
    bytes_per_kflop: float
    """Gradient bytes per thousand training FLOPs of one worker's step: the communication-to-compute ratio."""
    comm_share: float | None
    """Measured all-reduce time ÷ steady epoch time (None where the engine cannot separate it)."""
    gflops_per_worker: float | None
    """Achieved training GFLOP/s per worker (3 × forward FLOPs × images/s ÷ workers)."""
    mfu: float | None
    """gflops_per_worker ÷ the declared peak per worker (None without a declared peak)."""


def model_rows(data: ReportData, peak_gflops: float | None = None) -> list[ModelRow]:
    """A row per strong-scaling configuration with N > 1 workers, ordered by model, then framework."""
    rows = []
    for srow in data.strong:
        g = data.group(srow.point.key)
        w = g.workload
        train_flops = float(w.get("train_flops_per_image") or 3 * w["forward_flops_per_image"])
        step_flops = train_flops * g.per_worker_batch
        split = g.time_split()
        epoch, comm = split.get("epoch_time_s"), split.get("comm_time_s")
        images = g.stats.get("images_per_s_excl_warmup")
        per_worker = images.median * train_flops / g.workers / 1e9 if images else None
        rows.append(ModelRow(
            group=g, scaling=srow, parameters=int(w["parameters"]),
            forward_gflop=w["forward_flops_per_image"] / 1e9, gradient_mb=w["gradient_bytes"] / 1e6,
            bytes_per_kflop=1e3 * w["gradient_bytes"] / step_flops,
            comm_share=comm / epoch if comm is not None and epoch else None,
            gflops_per_worker=per_worker,
            mfu=per_worker / peak_gflops if per_worker is not None and peak_gflops else None,
        ))
    return rows


def verdict(rows: list[ModelRow]) -> str | None:
    """One sentence, from the measurements, on why the best- and worst-scaling models differ (None with
    fewer than two models)."""
    by_model: dict[str, ModelRow] = {}
    for r in rows:  # one representative per model: its best-measured multi-worker configuration
        best = by_model.get(r.group.model)
        if best is None or (r.comm_share is not None, r.scaling.efficiency.median) > (
                best.comm_share is not None, best.scaling.efficiency.median):
            by_model[r.group.model] = r
    if len(by_model) < 2:
        return None
    ranked = sorted(by_model.values(), key=lambda r: r.scaling.efficiency.median, reverse=True)
    top, bottom = ranked[0], ranked[-1]

    def why(r: ModelRow) -> str:
        comm = f", {100 * r.comm_share:.0f} % of its step in all-reduce" if r.comm_share is not None else ""
        return (f"{r.group.model} ({100 * r.scaling.efficiency.median:.0f} % efficiency at {r.group.workers} "
                f"workers: {r.gradient_mb:.1f} MB of gradients per step against {r.forward_gflop * 3:.3g} "
                f"training GFLOP per image, {r.bytes_per_kflop:.2f} B per kFLOP{comm})")

    if top.bytes_per_kflop < bottom.bytes_per_kflop:
        cause = ("more gradient bytes per unit of compute means more of each step waits for the all-reduce, "
                 "so the model with the higher ratio scales worse")
    else:
        cause = ("here the ratio of gradient bytes to compute does not explain the order: on this machine "
                 "other costs (compute sharing cores, set-up, small batches) dominate")
    return f"{top.group.model} scales best and {bottom.group.model} worst — {why(top)} vs {why(bottom)}: {cause}."
