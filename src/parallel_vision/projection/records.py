"""What the projection reads from one stored run record (result.json as the store returns it): steady step
time, measured collective bytes and ZeRO-1's partition, the control label, nodes, device and backend. Plain
dictionary reading, kept apart from the calibration that uses it.
"""

from __future__ import annotations

import statistics
from typing import Any

from parallel_vision.errors import ConfigError
from parallel_vision.projection.collectives import BACKENDS, OPS, STRATEGIES

#: The model-parallel strategies `pvision project` models apart (projection/mp_calibrate.py).
MODEL_PARALLEL = ("pipeline", "tensor")


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


def hook_per_step(epochs: list[dict[str, Any]], run: dict[str, Any]) -> float | None:
    """The comm hook's all-reduce seconds per step over the steady epochs (None where not measured)."""
    steady = epochs[1:] or epochs
    comm = [e["comm_time_s"] for e in steady if e.get("comm_time_s") is not None]
    if not comm or len(comm) != len(steady):
        return None
    return sum(comm) / (len(comm) * max(1, int(run["summary"]["steps_per_epoch"])))


def control(run: dict[str, Any]) -> str | None:
    return (run["config"].get("extra") or {}).get("control")


def nodes(run: dict[str, Any]) -> int:
    extra = run["config"].get("extra") or {}
    return int(extra.get("nodes") or 1)


def check_strategy(strategy: str | None) -> None:
    if strategy is not None and strategy not in STRATEGIES + MODEL_PARALLEL:
        raise ConfigError(f"pvision project: unknown strategy {strategy!r}; choose one of "
                          f"{', '.join(STRATEGIES + MODEL_PARALLEL)}")


def check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"pvision project: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def reshard_of(run: dict[str, Any]) -> bool:
    value = run["config"].get("reshard_after_forward")
    return True if value is None else bool(value)


def device_of(runs: list[dict[str, Any]]) -> str:
    devices = [str((r.get("environment") or {}).get("device") or "") for r in runs]
    return "cuda" if any(d.startswith("cuda") for d in devices) else "cpu"


def backend_of(runs: list[dict[str, Any]], linktests: list[dict[str, Any]]) -> str:
    """The runs' process-group backend (environment.backend), else the linktest's, else by device."""
    found = [(r.get("environment") or {}).get("backend") for r in runs]
    found = [b for b in found if b in BACKENDS] or [t.get("backend") for t in linktests if t.get("backend") in BACKENDS]
    if found:
        return max(set(found), key=found.count)
    devices = [str((r.get("environment") or {}).get("device") or "") for r in runs]
    return "nccl" if any(d.startswith("cuda") for d in devices) else "gloo"


def default_strategy(runs: list[dict[str, Any]]) -> str:
    """The strategy of a ROOT's multi-worker runs when they have one (of ddp, zero1, fsdp, pipeline, tensor),
    else ddp."""
    found = sorted({r["strategy"] for r in runs if r["workers"] > 1 and r["strategy"] in STRATEGIES + MODEL_PARALLEL})
    return found[0] if len(found) == 1 else "ddp"
