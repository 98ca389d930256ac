"""The `pvision` command line: parse, call, print. No training logic lives here.

Each area registers its commands from its own module; `main()` is the one place
that turns expected failures into a one-line message and an exit code.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from parallel_vision import envvars
from parallel_vision.cli import (
    bench_cmd,
    data_cmd,
    eda_cmd,
    explain_cmd,
    info_cmd,
    linktest_cmd,
    predict_cmd,
    project_cmd,
    report_cmd,
    runs_cmd,
    train_cmd,
)
from parallel_vision.data.paths import absolutize_environment
from parallel_vision.errors import PVisionError

app = typer.Typer(
    name="pvision",
    help="Parallel Vision: how much faster does data-parallel training really get on your hardware?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": os.environ.get(envvars.DEBUG, "") not in ("", "0")}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    """Train the paper's CNN under data-parallel strategies and compare them honestly."""
    if debug:
        _state["debug"] = True


def _register() -> None:
    # None of the command modules imports a framework: the engines do, in their own processes.

    for module in (info_cmd, data_cmd, train_cmd, predict_cmd, explain_cmd, bench_cmd, report_cmd, runs_cmd, eda_cmd):
        module.register(app)
    for module in (linktest_cmd, project_cmd):  # the scaling projection (docs/projection.md)
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of `pvision` and `python -m parallel_vision`."""

    absolutize_environment()  # relative folders mean the user's working directory, in every child too
    try:
        app(args=argv, prog_name="pvision")
    except PVisionError as exc:
        if _state["debug"]:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pvision: error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("pvision: interrupted", file=sys.stderr)
        sys.exit(130)
