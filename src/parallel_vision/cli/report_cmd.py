"""`pvision report ROOT`: the comparative report from a results folder (never trains)."""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.errors import ConfigError
from parallel_vision.report import write_report


def report(
    root: Path = typer.Argument(..., help="Results folder: a bench ROOT (holding results.sqlite and runs/)."),
    fmt: str = typer.Option("all", "--format", "-f", help="html, md, text (print tables here) or all "
                            "(html + md files, then the tables)."),
    peak_gflops: float | None = typer.Option(None, "--peak-gflops", help="Declared peak GFLOP/s of one worker "
                                             "(e.g. from benchmarks/ceiling.py): adds model FLOPs utilisation."),
) -> None:
    """Write ROOT/report.html (self-contained) and ROOT/report.md (+ figures/), or print the tables."""

    formats = ("html", "md", "text") if fmt == "all" else tuple(f.strip() for f in fmt.split(","))
    if peak_gflops is not None and not peak_gflops > 0:
        raise ConfigError(f"--peak-gflops must be a positive number; got {peak_gflops}")
    written = write_report(root, formats=formats, peak_gflops=peak_gflops)
    for path in written:
        if path.suffix in (".html", ".md"):
            typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("report")(report)
