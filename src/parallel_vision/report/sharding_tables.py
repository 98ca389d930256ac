"""The tables of the section "Beyond data parallelism" (report/sharding.py has its rows and words): each strategy
side by side per model, the ZeRO formulas against the measurements, and the numbers for report.json."""

from __future__ import annotations

from typing import Any

from parallel_vision.report.sharding import (
    COLLECTIVE_KINDS,
    COMPONENTS,
    Comparison,
    ShardRow,
    advice,
    explain,
    mib,
    pct,
)
from parallel_vision.report.state_formulas import StateBytes, formula_text, optimizer_words
from parallel_vision.report.tables import Table
from parallel_vision.strategies import FRAMEWORK_TITLES


def _parts(s: StateBytes, with_unit: bool) -> str:
    parts = [s.parameters, s.gradients, s.optimizer] + ([s.unsharded] if with_unit else [])
    return " + ".join(mib(v) for v in parts)


def _ratio(value: float | None, of: float | None) -> str:
    return f"{100 * value / of:.0f} %" if value is not None and of else "—"


def side_by_side_table(comps: list[Comparison]) -> Table:
    """Per model and N: each strategy's state per worker by component, activations, peak RSS, images/s and bytes
    per optimiser step by collective kind."""
    headers = ["Configuration", "Parameters (MiB)", "Gradients (MiB)", "Optimizer (MiB)", "Unsharded peak (MiB)",
               "State / worker (MiB)", "State vs ddp", "Activations (MiB)", "Peak RSS (MiB)", "Images/s",
               "Images/s vs ddp"] + [f"{k.replace('_', '-')} (MiB / step)" for k in COLLECTIVE_KINDS] + [
               "Bubble (measured / formula)"]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    sections: set[int] = set()
    for c in comps:
        sections.add(len(rows))
        rows.append([f"{c.model} at {c.workers} workers, {FRAMEWORK_TITLES[c.rows[0].group.framework]} "
                     f"({c.rows[0].n_parameters:,} parameters)"]
                    + [""] * (len(headers) - 1))
        colors.append(None)
        ddp = c.of("ddp")
        for r in c.rows:
            m = r.measured
            grads = mib(m.gradients) if r.gradients_held else "—"
            rows.append([r.variant, mib(m.parameters), grads, mib(m.optimizer),
                         mib(m.unsharded) if r.strategy == "fsdp" else "—", mib(m.total),
                         _ratio(m.total, ddp.measured.total if ddp else None), mib(r.activations),
                         f"{r.rss_mib:,.0f}" if r.rss_mib is not None else "—",
                         f"{r.images_per_s:,.0f}" if r.images_per_s is not None else "—",
                         _ratio(r.images_per_s, ddp.images_per_s if ddp else None)]
                        + [mib(r.comm[k], 3) for k in COLLECTIVE_KINDS] + [_bubble(r)])
            colors.append(r.group.color)
    return Table(headers, rows, colors, "l" + "r" * (len(headers) - 1), sections=sections)


def _bubble(r: ShardRow) -> str:
    if r.bubble is None:
        return "—"
    return f"{pct(r.bubble)} / {pct(r.bubble_formula)}" if r.bubble_formula is not None else pct(r.bubble)


def formula_table(comps: list[Comparison]) -> Table:
    """Per configuration: the ZeRO paper's prediction beside the measurement, by component and in total."""
    headers = ["Configuration", "Optimizer", "Formula (B / parameter)",
               "Predicted: params + grads + optimizer (+ unit), MiB", "Measured, MiB", "Predicted total (MiB)",
               "Measured total (MiB)", "Measured B / parameter", "Difference"]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    sections: set[int] = set()
    for c in comps:
        sections.add(len(rows))
        rows.append([f"{c.model}: P = {c.rows[0].n_parameters:,} parameters, N = {c.workers}"]
                    + [""] * (len(headers) - 1))
        colors.append(None)
        for r in c.rows:
            if r.predicted is None:
                continue  # a strategy that splits the model: no ZeRO formula (its note says what it holds)
            unit = r.strategy == "fsdp"
            diff = r.measured.total - r.predicted.total
            rows.append([r.variant, optimizer_words(r.group.config), formula_text(r.strategy, r.workers, r.k),
                         _parts(r.predicted, unit), _parts(r.measured, unit), mib(r.predicted.total),
                         mib(r.measured.total), f"{r.bytes_per_parameter:.2f}",
                         f"{'+' if diff >= 0 else '−'}{mib(abs(diff))} MiB ({_ratio(abs(diff), r.predicted.total)})"])
            colors.append(r.group.color)
    return Table(headers, rows, colors, "lllllrrrr", sections=sections)


def explanations(comps: list[Comparison]) -> list[str]:
    """Why each row differs from its formula (or what a model-splitting worker holds); non-torch rows say whose."""
    def whose(r: ShardRow) -> str:
        return "" if r.group.framework == "torch" else f" ({FRAMEWORK_TITLES[r.group.framework]})"

    return [f"{c.model}{whose(r)}, {r.variant}: {explain(r)}" for c in comps for r in c.rows]


def as_dict(comps: list[Comparison]) -> list[dict[str, Any]]:
    """The section's numbers for report.json."""
    def state(s: StateBytes) -> dict[str, float]:
        return {**{c: s.get(c) for c in COMPONENTS}, "total": s.total}

    return [{"model": c.model, "workers": c.workers, "advice": advice(c), "rows": [
        {"configuration": r.variant, "strategy": r.strategy, "run_ids": [x["run_id"] for x in r.group.runs],
         "n_parameters": r.n_parameters, "optimizer_bytes_per_parameter": r.k,
         "formula": None if r.predicted is None else formula_text(r.strategy, r.workers, r.k),
         "predicted": None if r.predicted is None else state(r.predicted), "bubble_fraction": r.bubble,
         "bubble_formula": r.bubble_formula,
         "measured": state(r.measured), "bytes_per_parameter": r.bytes_per_parameter,
         "activation_bytes": r.activations, "peak_rss_mib": r.rss_mib, "images_per_s": r.images_per_s,
         "comm_bytes_by_op": r.comm, "zero1_partition": r.partition, "explanation": explain(r)}
        for r in c.rows]} for c in comps]
