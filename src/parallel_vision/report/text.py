"""`pvision report ROOT --format text`: the report's tables and comparison in the terminal (rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parallel_vision.report import compare, sharding, sharding_tables, tables
from parallel_vision.report.data import ReportData, build_report_data
from parallel_vision.report.memory_budget import budget_lines, size_text

#: Shorter column names for the terminal (the HTML and Markdown keep the long ones).
SHORT = {
    "Threads / worker": "thr/w", "Batch global / worker": "batch g/w", "Steady epoch T (s)": "T (s)",
    "Warm-up epoch (s)": "warm-up (s)", "Total time (s)": "total (s)", "Images/s": "img/s",
    "Test accuracy (%)": "acc (%)", "Test loss": "loss", "Test images": "test n",
    "Same threads / worker": "same thr", "Baseline (1 worker)": "baseline", "Speedup S(N)": "S(N)",
    "Efficiency E(N) (%)": "E(N) (%)", "S vs best single-process": "S vs best single",
    "Steady epoch (s)": "T (s)", "Communication (s)": "comm (s)", "Data share (%)": "data %",
    # the sharding section's (all MiB)
    "Parameters (MiB)": "params", "Gradients (MiB)": "grads", "Optimizer (MiB)": "optim",
    "Unsharded peak (MiB)": "unsharded", "State / worker (MiB)": "state", "State vs ddp": "vs ddp",
    "Activations (MiB)": "acts", "Peak RSS (MiB)": "RSS", "Images/s vs ddp": "vs ddp",
    "all-reduce (MiB / step)": "AR/step", "all-gather (MiB / step)": "AG/step",
    "reduce-scatter (MiB / step)": "RS/step", "broadcast (MiB / step)": "bcast/step",
    "Formula (B / parameter)": "formula (B/param)",
    "Predicted: params + grads + optimizer (+ unit), MiB": "predicted p + g + o (+ unit)",
    "Measured, MiB": "measured", "Predicted total (MiB)": "pred. total", "Measured total (MiB)": "meas. total",
    "Measured B / parameter": "B/param",
}


def make_console() -> Any:
    """A rich console: the terminal's width, or 160 columns when the output is not a terminal."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _rich_table(table: tables.Table, title: str) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold", show_lines=False, pad_edge=False)
    align = table.alignment()
    for i, h in enumerate(table.headers):
        t.add_column(SHORT.get(h, h), justify="right" if align[i] == "r" else "left", overflow="fold")
    for ri, row in enumerate(table.rows):
        color = table.colors[ri] if ri < len(table.colors) else None
        cells = list(row)
        if ri in table.sections:
            t.add_row(f"[bold]{cells[0]}[/]", *cells[1:])
            continue
        if color and cells:
            c = table.swatch_col
            cells[c] = f"[{color}]■[/] {cells[c]}"
        t.add_row(*cells)
    return t


def print_text(root: str | Path | None = None, *, data: ReportData | None = None, console: Any = None,
               full: bool = True) -> None:
    data = data or build_report_data(root)  # type: ignore[arg-type]
    console = console or make_console()
    console.print(_rich_table(tables.run_table(data), "Runs (medians over repeats)"))
    console.print(tables.run_table_note(data), highlight=False)
    if data.skipped:
        console.print(_rich_table(tables.skipped_table(data), "Skipped / failed"))
    for rows, mode in ((data.strong, "strong"), (data.weak, "weak")):
        if rows:
            console.print(_rich_table(tables.scaling_table(rows, mode), f"{mode.capitalize()} scaling"))
    if full:
        console.print(_rich_table(tables.split_table(data), "Time split per steady epoch"))
        console.print(_rich_table(tables.paper_table(data), "The paper's numbers beside ours"))
    _print_sharding(data, console)
    console.print(compare.noise_rule(data), highlight=False)
    for heading, sentences in compare.comparison(data):
        if not full and heading not in ("Scaling", "Against the best single-process run",
                                        "Single-process speed"):
            continue
        console.print(f"[bold]{heading}[/]")
        for s in sentences:
            console.print(f"  • {s}", highlight=False)
    for w in data.warnings:
        console.print(f"[yellow]! {w}[/]", highlight=False)


def _print_sharding(data: ReportData, console: Any) -> None:
    """The sharding section's tables and sentences (none without sharded runs), and the budget's lines whenever
    one was declared."""
    comps = sharding.comparisons(data.groups)
    if comps:
        console.print(_rich_table(sharding_tables.side_by_side_table(comps), f"{sharding.TITLE} (MiB)"))
        console.print(_rich_table(sharding_tables.formula_table(comps), "Measured vs the ZeRO paper's formulas (MiB)"))
        for s in sharding_tables.explanations(comps) + sharding.advice_sentences(comps):
            console.print(f"  • {s}", highlight=False)
    if data.memory_per_worker is not None:
        console.print(f"[bold]The largest model each strategy would fit in {size_text(data.memory_per_worker)} per "
                      "worker[/]")
        for line in budget_lines(sharding.state_rows(data.groups), data.memory_per_worker):
            console.print(f"  • {line}", highlight=False)
