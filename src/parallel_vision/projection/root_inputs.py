"""What a ROOT offers the projection for one model, framework, strategy and threads per worker (`Inputs`), read
from the store once (`load_inputs`), with the collectives' plan at any N, rescaled to the bytes the runs counted.
Reads the store only; imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parallel_vision.errors import ConfigError, ResultsError
from parallel_vision.models.catalog import layer_specs, model_costs
from parallel_vision.projection import records
from parallel_vision.projection.collectives import OPS, Plan, fsdp_layout, zero1_broadcasts
from parallel_vision.projection.model import Bucket, ddp_buckets
from parallel_vision.results.store import open_store, require_runs


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


def load_inputs(root: str | Path, model: str | None = None, framework: str = "torch",
                threads: float | None = None, strategy: str | None = None, reshard: bool | None = None,
                backend: str | None = None) -> Inputs:
    """A ROOT's runs for projecting `strategy` (None: the one strategy of ROOT's multi-worker runs, else ddp)."""
    records.check_strategy(strategy)
    records.check_backend(backend)
    root = Path(root)
    with open_store(root) as store:
        require_runs(store)
        runs = [r for r in store.runs() if r["framework"] == framework]
        linktests = store.linktests()
        for r in runs:
            if r["workers"] > 1:
                r["hook_comm_per_step_s"] = records.hook_per_step(store.epochs(r["run_id"]), r)
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
    strategy = strategy or records.default_strategy(runs)
    ddp = [r for r in runs if r["strategy"] == strategy and r["workers"] > 1]
    if strategy == "fsdp":
        if reshard is None:
            settings = [records.reshard_of(r) for r in ddp] or [True]
            reshard = max(set(settings), key=lambda v: (settings.count(v), v))
        ddp = [r for r in ddp if records.reshard_of(r) == reshard]
    one = [r for r in runs if r["workers"] == 1 and r["strategy"] in ("single", "ddp")]
    if threads is None:
        pool = ddp or [r for r in one if records.control(r) is None]
        counts = [r["threads_per_replica"] for r in pool if r["threads_per_replica"] is not None]
        threads = min(set(counts), key=lambda t: (-counts.count(t), t)) if counts else None
    if threads is not None:
        one = [r for r in one if r["threads_per_replica"] == threads]
        ddp = [r for r in ddp if r["threads_per_replica"] == threads]
    singles = [r for r in one if records.control(r) is None]
    pairs = [r for r in one if records.control(r) == "pair"]
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
                  backend=backend or records.backend_of(ddp or singles, linktests),
                  device=records.device_of(ddp or singles))
