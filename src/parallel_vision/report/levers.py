"""What each lever buys (docs/levers.md): every run that pulled a lever beside the plain run it changes.

A lever run is compared with its *reference*: the configuration identical to it except for the levers (LR
scaling and warm-up, gradient accumulation, gradient compression, precision). Each row shows what the lever
moves — steady epoch time, all-reduce time and bytes, time to the declared target, final accuracy — and
`sentences` says it in one sentence per lever, every number and direction filled in from the runs.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from parallel_vision.bench.machine import BUSY_CORES
from parallel_vision.report.data import ReportData
from parallel_vision.report.groups import ConfigGroup, target_stats
from parallel_vision.report.scaling import Spread

#: Config fields that are levers; a lever run differs from its reference in these only.
LEVER_FIELDS = ("lr_scaling", "base_batch", "warmup_epochs", "grad_accum", "grad_compression", "precision")
_DEFAULTS = {"lr_scaling": "none", "base_batch": None, "warmup_epochs": 0, "grad_accum": 1,
             "grad_compression": "none", "precision": "fp32"}
#: Slow-link recommendation without a projection in ROOT: how to get one.
NO_PROJECTION = ("Which lever suits a slow link is a question for the projection: run `pvision project ROOT --link "
                 "1gbe` (or your link) and the report adds its recommendation here (docs/projection.md).")


def slow_link_line(data: ReportData) -> str:
    """The projection's recommendation for the link it was asked about, beside what compression did in the
    measured runs (whose link is this machine's, usually much faster): the two are never mixed up."""
    projection = data.projection
    if projection is None or not projection.get("what_would_help"):
        return NO_PROJECTION
    link = (projection.get("link") or {}).get("name", "the projected link")
    line = f"Projection over {link} (docs/projection.md): {projection['what_would_help']}"
    for r in lever_rows(data):
        ref = _row(r.reference, None) if r.reference is not None else None
        if ref and ref.epoch_time and r.epoch_time and r.group.config.get("grad_compression", "none") != "none":
            line += (f" Measured here, over this machine's own link, {r.group.config['grad_compression']} "
                     f"compression changed the steady epoch {_change(ref.epoch_time, r.epoch_time)}; a projection "
                     "for a slower link and a measurement on a fast one answer different questions.")
            break
    return line


def levers_of(config: dict[str, Any]) -> dict[str, Any]:
    """The levers a configuration pulls (fields away from their default)."""
    return {k: config.get(k, _DEFAULTS[k]) for k in LEVER_FIELDS if config.get(k, _DEFAULTS[k]) != _DEFAULTS[k]}


def describe(config: dict[str, Any]) -> str:
    """The levers in words, e.g. 'linear LR scaling (lr 0.002) with 1-epoch warm-up + fp16 compression'."""
    pulled = levers_of(config)
    parts = []
    if "lr_scaling" in pulled:
        ratio = config["batch_size"] / config["base_batch"]
        factor = ratio if pulled["lr_scaling"] == "linear" else ratio ** 0.5
        parts.append(f"{pulled['lr_scaling']} LR scaling (lr {config['lr'] * factor:.3g})")
    if "warmup_epochs" in pulled:
        warmup = f"{pulled['warmup_epochs']}-epoch warm-up"
        parts[-1:] = [f"{parts[-1]} with {warmup}"] if "lr_scaling" in pulled else [warmup]
    if "grad_accum" in pulled:
        micro = config["batch_size"] // (config["workers"] * pulled["grad_accum"])
        parts.append(f"gradient accumulation ×{pulled['grad_accum']} (micro-batch {micro})")
    if "grad_compression" in pulled:
        kind, _, rank = str(pulled["grad_compression"]).partition(":")
        parts.append(f"PowerSGD rank {rank or 1} compression" if kind == "powersgd" else f"{kind} compression")
    if "precision" in pulled:
        parts.append(f"{pulled['precision']} precision")
    return " + ".join(parts) or "no lever"


def _without_levers(g: ConfigGroup) -> str:
    return json.dumps({k: v for k, v in g.first["identity"].items() if k not in LEVER_FIELDS}, sort_keys=True)


@dataclass(frozen=True)
class LeverRow:
    group: ConfigGroup
    reference: ConfigGroup | None
    lever: str
    epoch_time: float | None
    comm_time: float | None
    """Median all-reduce seconds per steady epoch (torch DDP)."""
    comm_bytes: float | None
    """Median bytes one worker hands to all-reduce per optimiser step (torch DDP)."""
    target: Spread | None
    target_missed: int | None
    epochs_to_target: float | None
    accuracy: float | None


def _row(g: ConfigGroup, reference: ConfigGroup | None) -> LeverRow:
    t = g.stats.get("mean_epoch_time_excl_warmup_s")
    acc = g.stats.get("test_accuracy")
    split = g.time_split()
    sent = [r["summary"]["comm_bytes_per_step"] for r in g.runs if r["summary"].get("comm_bytes_per_step") is not None]
    epochs = [r["summary"]["epochs_to_target"] for r in g.runs if r["summary"].get("target_reached")]
    target, missed = target_stats(g)
    return LeverRow(group=g, reference=reference, lever=describe(g.config), epoch_time=t.median if t else None,
                    comm_time=split.get("comm_time_s"), comm_bytes=statistics.median(sent) if sent else None,
                    target=target, target_missed=missed, epochs_to_target=statistics.median(epochs) if epochs else None,
                    accuracy=acc.median if acc else None)


def lever_rows(data: ReportData) -> list[LeverRow]:
    """Each configuration that pulls a lever, after the reference it is compared with (which comes first)."""
    levered = [g for g in data.groups if levers_of(g.config)]
    rows: list[LeverRow] = []
    seen: set[str] = set()
    for g in levered:
        key = _without_levers(g)
        reference = next((r for r in data.groups if not levers_of(r.config) and _without_levers(r) == key), None)
        if reference is not None and reference.key not in seen:
            seen.add(reference.key)
            rows.append(_row(reference, None))
        rows.append(_row(g, reference))
    # the lever-free runs first within each reference, and the references in the groups' order
    order = {g.key: i for i, g in enumerate(data.groups)}
    rows.sort(key=lambda r: (order[(r.reference or r.group).key], r.reference is not None, order[r.group.key]))
    return rows


def target_text(row: LeverRow) -> str:
    if row.target_missed is None:
        return "—"
    if row.target is None or row.target_missed:
        return "not reached"
    epochs = f" ({row.epochs_to_target:g} ep.)" if row.epochs_to_target is not None else ""
    return f"{row.target.median:.1f}{epochs}"


def _change(before: float, after: float) -> str:
    return f"{(after / before - 1) * 100:+.0f} %" if before else "n/a"


def sentence(row: LeverRow, target: float | None) -> str:
    """One sentence: what the lever changed against its reference, from the numbers of both."""
    ref = _row(row.reference, None) if row.reference is not None else None
    if ref is None:
        return f"{row.lever}: no lever-free run with the same settings to compare it with."
    what = f"{row.lever} on {row.group.label}, against the same run without levers"
    facts = []
    goal = f"{target * 100:.1f} %" if target is not None else "the target"
    if row.target_missed is not None and ref.target_missed is not None:
        if row.target is not None and not row.target_missed and ref.target is not None and not ref.target_missed:
            delta = ref.target.median - row.target.median
            facts.append(f"{'buys' if delta > 0 else 'costs'} {abs(delta):.1f} s to {goal} "
                         f"({ref.target.median:.1f} → {row.target.median:.1f} s)")
        elif row.target is not None and not row.target_missed:
            facts.append(f"reaches {goal} in {row.target.median:.1f} s where the reference never does")
        elif ref.target is not None and not ref.target_missed:
            facts.append(f"never reaches {goal}, which the reference reaches in {ref.target.median:.1f} s")
        else:
            facts.append(f"neither run reaches {goal}")
    if row.epoch_time and ref.epoch_time:
        facts.append(f"steady epoch {ref.epoch_time:.2f} → {row.epoch_time:.2f} s "
                     f"({_change(ref.epoch_time, row.epoch_time)})")
    if row.comm_bytes is not None and ref.comm_bytes is not None:
        facts.append(f"all-reduce {ref.comm_bytes / 1e6:.3g} → {row.comm_bytes / 1e6:.3g} MB per step per worker "
                     f"(×{row.comm_bytes / ref.comm_bytes:.3g})")
    if row.comm_time is not None and ref.comm_time is not None:
        facts.append(f"all-reduce time {ref.comm_time:.2f} → {row.comm_time:.2f} s per epoch")
    if row.accuracy is not None and ref.accuracy is not None:
        facts.append(f"final accuracy {ref.accuracy * 100:.2f} → {row.accuracy * 100:.2f} %")
    loaded = [name for name, g in (("this run", row.group), ("the run without levers", ref.group)) if _busy(g)]
    caveat = (f" Timing caveat: other processes used ≥ {BUSY_CORES:g} cores during "
              + ("both runs" if len(loaded) == 2 else loaded[0]) + ", so the time differences may be the machine's, "
              "not the lever's." if loaded else "")
    return f"{what}: " + "; ".join(facts) + "." + caveat


def _busy(g: ConfigGroup) -> bool:
    """Whether another process loaded the machine while one of this configuration's runs trained."""
    return any((r.get("other_cores") or 0) >= BUSY_CORES for r in g.runs)


def sentences(data: ReportData) -> list[str]:
    rows = [r for r in lever_rows(data) if r.reference is not None or levers_of(r.group.config)]
    targets = {r["summary"].get("target_accuracy") for g in data.groups for r in g.runs} - {None}
    target = next(iter(targets)) if len(targets) == 1 else None
    return [sentence(r, target) for r in rows if levers_of(r.group.config)] + [slow_link_line(data)]
