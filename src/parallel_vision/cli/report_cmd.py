"""`pvision report ROOT`: the comparative report from a results folder (never trains).

`pvision report ROOT_A ROOT_B … --out DIR`: the report across machines (report/machines.py), written to DIR.
"""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.errors import ConfigError
from parallel_vision.report import write_report
from parallel_vision.report.memory_budget import parse_size


def report(
    roots: list[Path] = typer.Argument(..., metavar="ROOT", help="Results folder(s): bench ROOTs (each holding "
                                       "results.sqlite and runs/). Several: the report across machines, in --out."),
    fmt: str = typer.Option("all", "--format", "-f", help="html, md, text (print tables here) or all "
                            "(html + md files, then the tables)."),
    peak_gflops: float | None = typer.Option(None, "--peak-gflops", help="Declared peak GFLOP/s of one worker "
                                             "(e.g. from benchmarks/ceiling.py): adds model FLOPs utilisation."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the report across machines (required "
                                    "with several ROOTs; the ROOTs themselves are only read)."),
    memory_per_worker: str | None = typer.Option(None, "--memory-per-worker", metavar="SIZE", help="A memory "
                                                 "budget per worker (16GiB, 512MiB, 8GB): the sharding section says "
                                                 "the largest model each strategy would fit in it, from the measured "
                                                 "bytes per parameter and activations (docs/parallelism.md)."),
) -> None:
    """Write ROOT/report.html (self-contained) and ROOT/report.md (+ figures/), or print the tables; with several
    ROOTs, the runs of each machine side by side and the same configuration across machines, in DIR."""

    formats = ("html", "md", "text") if fmt == "all" else tuple(f.strip() for f in fmt.split(","))
    if peak_gflops is not None and not peak_gflops > 0:
        raise ConfigError(f"--peak-gflops must be a positive number; got {peak_gflops}")
    budget = parse_size(memory_per_worker) if memory_per_worker is not None else None
    if budget is not None and len(roots) > 1:
        raise ConfigError("--memory-per-worker applies to one ROOT's report; give one ROOT")
    if len(roots) > 1 and out is None:
        raise ConfigError(f"{len(roots)} ROOTs give a report across machines: name its folder with --out DIR")
    if out is None:
        written = write_report(roots[0], formats=formats, peak_gflops=peak_gflops, memory_per_worker=budget)
    else:
        from parallel_vision.report.machines_page import write_machines_report

        written = write_machines_report(roots, out, formats=formats, peak_gflops=peak_gflops)
    for path in written:
        if path.suffix in (".html", ".md"):
            typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("report")(report)
