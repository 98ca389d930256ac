"""CLI commands: `pvision data verify | info | fetch`.

The data layer is framework-free; rich tables are drawn by each command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.data import DATASETS, dataset_info, get_dataset, resolve_data_dir
from parallel_vision.data import fetch as fetch_files
from parallel_vision.data import verify as verify_files
from parallel_vision.data.verify import hash_file
from parallel_vision.errors import DataError

_DATA_DIR_HELP = "Datasets root holding <dataset>/raw/*.gz (default: $PVISION_DATA_DIR, else the user cache)."
_NAMES = ", ".join(DATASETS)


def _fmt(values: tuple[float, ...]) -> str:
    """(0.1307,) -> '0.1307'; (0.4914, 0.4822, 0.4465) -> '(0.4914, 0.4822, 0.4465)'."""
    return f"{values[0]}" if len(values) == 1 else "(" + ", ".join(f"{v}" for v in values) + ")"


def register(app: typer.Typer) -> None:
    """Add the `data` sub-command group to the root app."""
    data_app = typer.Typer(
        help=f"Verify, inspect and download the datasets ({_NAMES}).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    data_app.command("verify")(verify)
    data_app.command("info")(info)
    data_app.command("fetch")(fetch)
    app.add_typer(data_app, name="data")


def verify(
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Dataset to check (default: every dataset with a file present)."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
) -> None:
    """Check every file's presence, size and digest (SHA-256, else MD5); exit 2 unless all are good.

    Without --dataset, a dataset none of whose files is present counts as not downloaded
    (listed, not a failure), unless no dataset at all is present.
    """
    from rich.console import Console
    from rich.table import Table

    names = [get_dataset(dataset).name] if dataset else list(DATASETS)
    root = resolve_data_dir(data_dir)
    by_name = {name: verify_files(name, root) for name in names}
    absent = [n for n, found in by_name.items() if not any(s.present for s in found)]
    if dataset or len(absent) == len(names):
        absent = []  # a named dataset, or an empty folder: every missing file is a failure
    statuses = [s for name in names if name not in absent for s in by_name[name]]
    table = Table(title=f"Datasets in {root}")
    for column in ("dataset", "split", "file", "present", "size", "digest", "status"):
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
    for name in absent:
        table.add_row(name, "", "(all files)", "no", "", "", "not downloaded (skipped)")
    Console().print(table)
    bad = [s for s in statuses if not s.ok]
    if bad:
        first = bad[0]
        raise DataError(
            f"{len(bad)} of {len(statuses)} dataset files failed verification"
            f" (first: {first.path}: {first.problem})"
        )


def info(
    name: str = typer.Argument(..., help=f"Dataset name: {_NAMES}."),
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
        f" catalogue normalisation mean {_fmt(spec.mean)} std {_fmt(spec.std)}"
    )
    colour = spec.channels > 1
    splits = Table(title="Splits")
    columns = ["split", "images", "dtype", "labels dtype", "pixel mean", "pixel std"]
    for column in columns + (["channel means", "channel stds"] if colour else []):
        splits.add_column(column)
    for s in summary.splits:
        per_channel = [_fmt4(s.channel_mean), _fmt4(s.channel_std)] if colour else []
        splits.add_row(
            s.split,
            " x ".join(map(str, s.images_shape)),
            s.images_dtype,
            s.labels_dtype,
            f"{s.pixel_mean:.4f} ({s.pixel_mean * 255:.3f}/255)",
            f"{s.pixel_std:.4f} ({s.pixel_std * 255:.3f}/255)",
            *per_channel,
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
    name: str = typer.Argument(..., help=f"Dataset name: {_NAMES}."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=_DATA_DIR_HELP),
    mirror: list[str] | None = typer.Option(
        None, "--mirror", help="Base URL to try instead of the catalogue's mirrors (repeatable)."
    ),
) -> None:
    """Download missing or damaged files, each verified (SHA-256, else MD5) before it is put in place.

    For a file the catalogue knows only by MD5, the SHA-256 of the verified download is
    printed, to be recorded in docs/datasets.md.
    """
    spec = get_dataset(name)
    root = resolve_data_dir(data_dir)
    downloaded = fetch_files(spec, root, mirrors=mirror)
    print(f"{spec.name}: all {len(spec.files)} files verified in {root} ({len(downloaded)} downloaded)")
    by_name = {f.name: f for f in spec.files}
    for path in downloaded:
        f = by_name.get(path.name)
        if f is not None and f.sha256 is None:
            print(
                f"{spec.name}/{path.name}: verified by MD5 {f.md5}; SHA-256 {hash_file(path, 'sha256')}"
                f" (size {path.stat().st_size} bytes; not in the catalogue yet, record both in docs/datasets.md)"
            )


def _fmt4(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)
