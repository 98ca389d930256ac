"""`pvision report ROOT`: the comparative report from a results folder (never trains)."""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.report import write_report


def report(
    root: Path = typer.Argument(..., help="Results folder: a bench ROOT (holding results.sqlite and runs/)."),
    fmt: str = typer.Option("all", "--format", "-f", help="html, md, text (print tables here) or all "
                            "(html + md files, then the tables)."),
) -> None:
    """Write ROOT/report.html (self-contained) and ROOT/report.md (+ figures/), or print the tables."""

    formats = ("html", "md", "text") if fmt == "all" else tuple(f.strip() for f in fmt.split(","))
    written = write_report(root, formats=formats)
    for path in written:
        if path.suffix in (".html", ".md"):
            typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("report")(report)
