"""CLI command: eda — the paper's Section IV.A as one command and one HTML report."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from parallel_vision.data import DATASETS
from parallel_vision.errors import ConfigError

_NAMES = ", ".join(DATASETS)


def eda(
    dataset: str = typer.Option(
        "mnist",
        "--dataset",
        "-d",
        help=f"Dataset: {_NAMES} (colour images: some analyses run on luminance; see docs/eda.md). "
        "Not synthetic (random pixels: nothing to explore).",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory [default: eda-<dataset>]."),
    sample: int = typer.Option(5000, "--sample", help="Images in the stratified t-SNE sample."),
    seed: int = typer.Option(0, "--seed", help="Seed for every random sample and augmentation."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Dataset root (default: $PVISION_DATA_DIR or the data layer's default)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Exploratory data analysis: write DIR/eda.html (self-contained), DIR/eda.json and the figures as PNG."""
    # t-SNE's OpenMP threads spin while waiting by default; on a shared or small machine that spinning
    # steals the cores they wait for (measured: 300 points took 12 s spinning vs 2 s passive). Only
    # effective before the OpenMP runtime loads, i.e. before scikit-learn is imported; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import scipy.ndimage  # noqa: F401  - the analyses import these lazily; fail here, in one line
        import skimage  # noqa: F401

        from parallel_vision.eda import EdaOptions, run_eda
    except ImportError as exc:
        raise ConfigError(f"pvision eda needs the 'eda' extra (pip install 'parallel-vision[eda]'): {exc}") from None

    from parallel_vision.data.paths import absolute
    from parallel_vision.data.ready import ensure_dataset
    from parallel_vision.eda.page import check_dataset

    check_dataset(dataset)  # unknown or synthetic: one line, before any folder is made or file fetched
    opts = EdaOptions(
        dataset=dataset,
        out_dir=absolute(out if out is not None else Path(f"eda-{dataset}")),
        tsne_sample=sample,
        seed=seed,
        data_dir=ensure_dataset(dataset, data_dir).root,  # verified (or fetched) once, before any analysis
    )
    report = run_eda(opts, progress=progress)
    pca = report.results["pca"].numbers["components_needed"]
    typer.echo(
        f"wrote {report.html_path} ({len(report.figures)} "
        f"figures, eda.json) in {report.timings['total']:.1f} s; "
        f"PCA components for 90/95/99%: {pca['90']}/{pca['95']}/{pca['99']}"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("eda")(eda)
