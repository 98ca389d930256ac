"""`pvision runs`: list, show, export and rebuild the results database of a folder.

Every subcommand takes the folder as its last argument, ROOT, as `pvision report ROOT` does
(`list`, `show` and `export` default to $PVISION_RESULTS_DIR, else the working directory).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import typer

from parallel_vision import envvars
from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.errors import ConfigError
from parallel_vision.report.text import make_console
from parallel_vision.results.store import open_store, require_runs
from parallel_vision.results.store import rebuild as rebuild_store

runs_app = typer.Typer(help="The results database (ROOT/results.sqlite), rebuilt from result.json files.",
                       no_args_is_help=True)

#: Columns of `runs list` and `runs export --csv`.
EXPORT_COLUMNS = (
    "run_id", "name", "path", "status", "created_at", "code_version", "framework", "strategy", "workers",
    "threads_per_replica", "batch_size", "per_worker_batch", "epochs", "optimizer", "lr", "limit_train",
    "limit_test", "repeat", "preset", "protocol", "mean_epoch_time_excl_warmup_s", "mean_epoch_time_s",
    "warmup_epoch_time_s", "total_time_s", "train_time_s", "images_per_s_excl_warmup", "images_per_s",
    "test_accuracy", "test_loss", "n_test_evaluated", "n_train", "host",
)


def _g(value: float | None) -> str:
    return "—" if value is None else format(value, "g")


#: Help for the optional ROOT argument of `list`, `show` and `export`.
_ROOT_HELP = "Results folder (default $PVISION_RESULTS_DIR or .)."


def _root(root: Path | None) -> Path:
    return root or Path(os.environ.get(envvars.RESULTS_DIR, "."))


def _old_root_option(root: Path | None, option: Path | None, command: str) -> Path | None:
    """ROOT from the argument, or from the deprecated `--root ROOT` option (one notice on stderr).
    `command`: the subcommand and its other arguments, to show the new form."""
    if option is None:
        return root
    if root is not None and root != option:
        raise ConfigError(f"two results folders given ({root} and --root {option}); give one, as the last "
                          f"argument: pvision runs {command} ROOT")
    typer.echo(f"pvision: warning: --root is deprecated; give the results folder as the last argument: "
               f"pvision runs {command} {option}", err=True)
    return option


def _open(root: Path | None):  # type: ignore[no-untyped-def]

    store = open_store(_root(root))
    try:
        require_runs(store)
    except BaseException:
        store.close()
        raise
    return store


@runs_app.command("list")
def list_runs(
    root: Path | None = typer.Argument(None, help=_ROOT_HELP),
    all_runs: bool = typer.Option(False, "--all", help="Include incomplete runs."),
) -> None:
    """One line per stored run."""
    from rich.table import Table


    with _open(root) as store:
        rows = store.runs(status=None if all_runs else "complete")
        table = Table(title=f"{len(rows)} run(s) in {store.path}", title_justify="left", header_style="bold")
        for col, justify in (("run_id", "left"), ("folder", "left"), ("framework", "left"),
                             ("strategy", "left"), ("N", "right"), ("thr/w", "right"), ("batch", "right"),
                             ("epochs", "right"), ("T steady (s)", "right"), ("total (s)", "right"),
                             ("img/s", "right"), ("test acc (%)", "right"), ("status", "left")):
            table.add_column(col, justify=justify, no_wrap=col in ("run_id", "folder"))  # type: ignore[arg-type]
        for r in rows:
            def num(value: float | None, fmt: str) -> str:
                return "—" if value is None else format(value, fmt)

            table.add_row(
                r["run_id"][:8], r["name"], r["framework"], r["strategy"], str(r["workers"]),
                num(r["threads_per_replica"], "g"), str(r["batch_size"]), str(r["epochs"]),
                num(r["mean_epoch_time_excl_warmup_s"], ".2f"), num(r["total_time_s"], ".1f"),
                num(r["images_per_s_excl_warmup"], ",.0f"),
                num(None if r["test_accuracy"] is None else 100 * r["test_accuracy"], ".2f"), r["status"],
            )
        make_console().print(table)


@runs_app.command("show")
def show(
    run: str = typer.Argument(..., help="run_id (or a unique prefix, matched literally) or run folder name."),
    root: Path | None = typer.Argument(None, help=_ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the stored row as JSON."),
    root_option: Path | None = typer.Option(None, "--root", hidden=True, help="Deprecated: give ROOT as the "
                                            "argument."),
) -> None:
    """Configuration, summary and epochs of one run."""
    from rich.table import Table

    root = _old_root_option(root, root_option, f"show {run}")
    with _open(root) as store:
        r = store.find(run)
        epochs = store.epochs(r["run_id"])
    if as_json:
        typer.echo(json.dumps(dict(r, epochs=epochs), indent=2, default=str))
        return
    console = make_console()
    info = Table(show_header=False, title=f"run {r['run_id']} · {r['path']}", title_justify="left")
    c, s = r["config"], r["summary"]
    for key, value in (
        ("configuration", f"{c['framework']} {c['strategy']} ×{c['workers']}, batch {c['batch_size']}, "
                          f"{c['epochs']} epochs, {c['optimizer']} {c['lr']:g}, threads/worker "
                          f"{_g(r['threads_per_replica'])}"),
        ("data", f"{c['dataset']}: train {s.get('n_train')}, test {s.get('n_test_evaluated')}"),
        ("steady epoch T", f"{s.get('mean_epoch_time_excl_warmup_s', 0):.3f} s (warm-up "
                           f"{s.get('warmup_epoch_time_s', 0):.3f} s)"),
        ("throughput", f"{s.get('images_per_s_excl_warmup', 0):,.0f} images/s (steady)"),
        ("total time", f"{s.get('total_time_s', 0):.1f} s"),
        ("test accuracy / loss", f"{100 * s.get('test_accuracy', 0):.2f} % / {s.get('test_loss', 0):.4f}"),
        ("code version", str(r["code_version"])),
        ("created", str(r["created_at"])),
        ("status", r["status"]),
    ):
        info.add_row(key, value)
    console.print(info)
    table = Table(title="epochs", title_justify="left", header_style="bold")
    keys = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_time_s",
            "images_per_s", "data_time_s", "compute_time_s", "comm_time_s", "eval_time_s")
    for key in keys:
        table.add_column(key, justify="right")
    for e in epochs:
        table.add_row(*("—" if e[k] is None else (str(e[k]) if k == "epoch" else f"{e[k]:.4g}")
                        for k in keys))
    console.print(table)


@runs_app.command("export")
def export(
    csv_file: Path = typer.Option(..., "--csv", help="CSV file to write (one row per run)."),
    root: Path | None = typer.Argument(None, help=_ROOT_HELP),
    all_runs: bool = typer.Option(False, "--all", help="Include incomplete runs."),
) -> None:
    """Write every stored run as one CSV row."""

    with _open(root) as store:
        rows = store.runs(status=None if all_runs else "complete")
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k in EXPORT_COLUMNS])
    atomic_write_bytes(csv_file, buffer.getvalue().encode())
    typer.echo(f"{len(rows)} run(s) → {csv_file}")


@runs_app.command("rebuild")
def rebuild(
    root: Path = typer.Argument(..., help="Results folder whose result.json files rebuild results.sqlite."),
) -> None:
    """Recreate ROOT/results.sqlite from the result.json files (a corrupt database is moved aside)."""

    with rebuild_store(root) as store:
        n = store.count()
        report = store.last_sync
    typer.echo(f"{store.path}: rebuilt from {n} result file(s)")
    for line in (report.unreadable if report else []):
        typer.echo(f"  skipped unreadable {line}", err=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(runs_app, name="runs")
