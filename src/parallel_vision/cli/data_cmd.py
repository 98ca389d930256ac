"""CLI commands: `pvision data verify | info | fetch`.

The data layer is framework-free; rich tables are drawn by each command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.data import DATASETS, dataset_info, get_dataset, resolve_data_dir
from parallel_vision.data import fetch as fetch_files
from parallel_vision.data import verify as verify_files
from parallel_vision.errors import DataError

_DATA_DIR_HELP = "Datasets root holding <dataset>/raw/*.gz (default: $PVISION_DATA_DIR, else the user cache)."


def register(app: typer.Typer) -> None:
    """Add the `data` sub-command group to the root app."""
    data_app = typer.Typer(
        help="Verify, inspect and download the MNIST-family datasets.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    data_app.command("verify")(verify)
    data_app.command("info")(info)
    data_app.command("fetch")(fetch)
    app.add_typer(data_app, name="data")


def verify(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset to check (default: all)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
) -> None:
    """Check every file's presence, size and SHA-256; exit 2 unless all are good."""
    from rich.console import Console
    from rich.table import Table


    names = [get_dataset(dataset).name] if dataset else list(DATASETS)
    root = resolve_data_dir(data_dir)
    statuses = [s for name in names for s in verify_files(name, root)]
    table = Table(title=f"Datasets in {root}")
    for column in ("dataset", "split", "file", "present", "size", "sha256", "status"):
        table.add_column(column)
    mark = {True: "yes", False: "NO"}
    for s in statuses:
        table.add_row(
            s.dataset,
            s.split,
            s.file,
            mark[s.present],
            mark[s.size_ok],
            mark[s.sha256_ok],
            "ok" if s.ok else s.problem or "failed",
        )
    Console().print(table)
    bad = [s for s in statuses if not s.ok]
    if bad:
        first = bad[0]
        raise DataError(
            f"{len(bad)} of {len(statuses)} dataset files failed verification"
            f" (first: {first.path}: {first.problem})"
        )


def info(
    name: str = typer.Argument(..., help="Dataset name, e.g. mnist or fashion-mnist."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
) -> None:
    """Print shapes, dtypes, class counts per split and pixel mean/std (never downloads)."""
    from rich.console import Console
    from rich.table import Table


    summary = dataset_info(name, data_dir)
    spec = summary.spec
    console = Console()
    console.print(
        f"{spec.name} in {summary.data_dir}: {spec.num_classes} classes, {spec.channels} channel(s),"
        f" catalogue normalisation mean {spec.mean} std {spec.std}"
    )
    splits = Table(title="Splits")
    for column in ("split", "images", "dtype", "labels dtype", "pixel mean", "pixel std"):
        splits.add_column(column)
    for s in summary.splits:
        splits.add_row(
            s.split,
            " x ".join(map(str, s.images_shape)),
            s.images_dtype,
            s.labels_dtype,
            f"{s.pixel_mean:.4f} ({s.pixel_mean * 255:.3f}/255)",
            f"{s.pixel_std:.4f} ({s.pixel_std * 255:.3f}/255)",
        )
    console.print(splits)
    counts = Table(title="Examples per class")
    counts.add_column("label")
    counts.add_column("class")
    for s in summary.splits:
        counts.add_column(s.split, justify="right")
    for label, class_name in enumerate(spec.class_names):
        counts.add_row(str(label), class_name, *(str(s.class_counts[label]) for s in summary.splits))
    console.print(counts)


def fetch(
    name: str = typer.Argument(..., help="Dataset name, e.g. mnist or fashion-mnist."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    mirror: list[str] | None = typer.Option(
        None, "--mirror", help="Base URL to try instead of the catalogue's mirrors (repeatable)."
    ),
) -> None:
    """Download missing or damaged files, each verified by SHA-256 before it is put in place."""

    spec = get_dataset(name)
    root = resolve_data_dir(data_dir)
    downloaded = fetch_files(spec, root, mirrors=mirror)
    print(f"{spec.name}: all {len(spec.files)} files verified in {root} ({len(downloaded)} downloaded)")
