"""Why models scale differently: each model's compute and gradient traffic beside its measured speedup.

Data parallelism pays when a worker's compute per step dwarfs the gradient bytes it must all-reduce.
Each row puts the model's declared costs (result.json's `workload` block: forward FLOPs per image,
gradient bytes) beside what was measured for it (speedup, efficiency, the share of the step spent in
all-reduce), so the reader sees the cause next to the effect; `verdict` says it in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from parallel_vision.report.data import ReportData
from parallel_vision.report.groups import FRAMEWORK_NAMES, STRATEGY_NAMES, ConfigGroup
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
    baseline_gflops: float | None
    """The same for the 1-worker baseline: what one worker computes when it has the machine to itself."""
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
        base = data.group(srow.baseline.key).stats.get("images_per_s_excl_warmup")
        rows.append(ModelRow(
            group=g, scaling=srow, parameters=int(w["parameters"]),
            forward_gflop=w["forward_flops_per_image"] / 1e9, gradient_mb=w["gradient_bytes"] / 1e6,
            bytes_per_kflop=1e3 * w["gradient_bytes"] / step_flops,
            comm_share=comm / epoch if comm is not None and epoch else None,
            gflops_per_worker=per_worker,
            baseline_gflops=base.median * train_flops / 1e9 if base else None,
            mfu=per_worker / peak_gflops if per_worker is not None and peak_gflops else None,
        ))
    return rows


def verdict(rows: list[ModelRow]) -> str | None:
    """One sentence, from the measurements, on why the best- and worst-scaling models differ (None with
    fewer than two models). Each model is represented by a run whose all-reduce time was measured where
    there is one (PyTorch DDP), so the cause can be read from measured times, not only declared costs."""
    by_model: dict[str, ModelRow] = {}
    for r in rows:
        best = by_model.get(r.group.model)
        if best is None or (r.comm_share is not None, r.scaling.efficiency.median) > (
                best.comm_share is not None, best.scaling.efficiency.median):
            by_model[r.group.model] = r
    if len(by_model) < 2:
        return None
    ranked = sorted(by_model.values(), key=lambda r: r.scaling.efficiency.median, reverse=True)
    top, bottom = ranked[0], ranked[-1]

    def eff(r: ModelRow) -> str:
        return (f"{r.group.model} {100 * r.scaling.efficiency.median:.0f} % "
                f"({FRAMEWORK_NAMES.get(r.group.framework, r.group.framework)} "
                f"{STRATEGY_NAMES.get(r.group.strategy, r.group.strategy)} ×{r.group.workers})")

    head = f"Efficiency: {eff(top)} vs {eff(bottom)}"
    if top.comm_share is not None and bottom.comm_share is not None and bottom.comm_share > top.comm_share:
        return (f"{head}. {bottom.group.model} spends {100 * bottom.comm_share:.0f} % of its step in all-reduce "
                f"against {100 * top.comm_share:.0f} % for {top.group.model}: it sends {bottom.bytes_per_kflop:.2f} "
                f"bytes of gradient per kFLOP of compute against {top.bytes_per_kflop:.2f}, so backward has too "
                "little work to hide the transfer.")
    if bottom.gflops_per_worker and bottom.baseline_gflops:
        comm = (f"only {100 * bottom.comm_share:.0f} % of its step is all-reduce; "
                if bottom.comm_share is not None else "")
        return (f"{head}. Communication does not explain the order here: for {bottom.group.model} {comm}each "
                f"worker computed {bottom.gflops_per_worker:.1f} GFLOP/s with {bottom.group.workers} workers against "
                f"{bottom.baseline_gflops:.1f} alone, so the workers slowed each other down (shared cores, memory "
                "bandwidth or a busy machine) more than the gradients did.")
    return f"{head}; the measured times do not separate compute from communication for these runs."
