"""CLI command: predict — a run's saved model on image files (docs/predict.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.errors import ConfigError
from parallel_vision.predict import images, model, output


def predict(
    run: Path = typer.Argument(..., help="A run folder (the --out of `pvision train`): config.json and its model."),
    paths: list[Path] = typer.Argument(..., help="Image files, or folders of them (not recursive)."),
    top_k: int = typer.Option(3, "--top-k", help="Classes listed per image, most probable first."),
    fmt: str = typer.Option("table", "--format", help=f"Output: {', '.join(output.FORMATS)}."),
    out: Path | None = typer.Option(None, "--out", help="Write the output to FILE (atomically), not stdout."),
    invert: str = typer.Option("auto", "--invert", help="Digit datasets: invert a light background: auto "
                               "(judged from the border pixels), yes or no."),
    save_inputs: Path | None = typer.Option(None, "--save-inputs",
                                            help="Write what the model saw, as PNGs, into DIR."),
) -> None:
    """Predict the class of each image with a run's saved model (any framework, any strategy).

    A file that cannot be read is one line on stderr and the others are still predicted; exit 1 if any failed.
    """
    if fmt not in output.FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(output.FORMATS)}; got {fmt!r}")
    if invert not in images.INVERT_CHOICES:
        raise ConfigError(f"--invert must be one of {', '.join(images.INVERT_CHOICES)}; got {invert!r}")
    saved_run = model.open_run(run)
    classes = saved_run.shape.classes
    if not 1 <= top_k <= classes:
        raise ConfigError(f"--top-k must be between 1 and {classes} (the run's classes); got {top_k}")

    files, failed = images.expand(paths)
    prepared = []
    for path in files:
        try:
            prepared.append(images.load_image(path, saved_run.target, invert))
        except images.UnreadableImage as exc:
            failed.append((path, str(exc)))
    for path, why in failed:
        print(f"pvision: error: {path}: {why}", file=sys.stderr)

    saved = _save_inputs(save_inputs, prepared) if save_inputs else None
    logits = model.logits(saved_run, model.normalised(saved_run, [p.pixels for p in prepared])) if prepared else None
    rows = output.records(saved_run, prepared, logits, top_k, saved) if logits is not None else []
    doc = output.document(saved_run, rows, failed, invert, top_k)
    if fmt == "table" and out is None:
        if rows:  # nothing predicted: the error lines say it all
            output.table_text(doc, sys.stdout)
    else:
        text = {"csv": output.as_csv, "json": output.as_json, "table": output.table_text}[fmt](doc)
        if out is None:
            sys.stdout.write(text)
        else:
            atomic_write_bytes(out, text.encode())
    if failed:
        raise typer.Exit(1)


def _save_inputs(folder: Path, prepared: list[images.Prepared]) -> dict[Path, Path]:
    """Each model input as DIR/NNNN-<name>.png (numbered in input order, so two files of one name never clash)."""
    saved = {}
    for index, item in enumerate(prepared):
        target = folder / f"{index:04d}-{item.path.stem}.png"
        atomic_write_bytes(target, images.png_bytes(item.pixels))
        saved[item.path] = target
    return saved


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
