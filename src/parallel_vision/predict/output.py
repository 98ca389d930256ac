"""The predictions of `pvision predict` as records, JSON, CSV or a rich table (framework-free)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.predict.images import Prepared
from parallel_vision.predict.model import SavedRun, softmax

FORMATS = ("table", "json", "csv")


def records(run: SavedRun, prepared: list[Prepared], logits: np.ndarray, k: int,
            saved: dict[Path, Path] | None = None) -> list[dict[str, Any]]:
    """One record per predicted file: its label (the logits' argmax, as the run's predictions.npy), class
    name, probability, the top-k and the preprocessing applied."""
    names = run.shape.class_names
    probabilities = softmax(logits) if len(logits) else np.zeros((0, len(names)))
    out = []
    for item, row, p in zip(prepared, logits, probabilities, strict=True):
        order = np.argsort(-row, kind="stable")[:k]  # stable: ties keep argmax's first-index choice
        top = [{"label": int(c), "class_name": names[c], "probability": float(p[c])} for c in order]
        record = {"file": str(item.path), **top[0], "top_k": top, "preprocessing": list(item.steps)}
        if saved and item.path in saved:
            record["model_input"] = str(saved[item.path])
        out.append(record)
    return out


def document(run: SavedRun, rows: list[dict[str, Any]], failed: list[tuple[Path, str]], invert: str,
             k: int) -> dict[str, Any]:
    """The JSON document: the run, the preprocessing settings, the predictions and the files that failed."""
    return {
        "run_id": run.run_id, "run": str(run.path), "framework": run.cfg.framework, "strategy": run.cfg.strategy,
        "model": run.cfg.model, "model_file": run.model_file.name, "dataset": run.cfg.dataset,
        "input_shape": [run.shape.image_size, run.shape.image_size, run.shape.channels],
        "invert": invert, "normalisation": run.normalisation, "top_k": k,
        "predictions": rows, "errors": [{"file": str(path), "error": why} for path, why in failed],
    }


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def as_csv(doc: dict[str, Any]) -> str:
    """One row per predicted file: file, label, class_name, probability, top1…topK (label, class name,
    probability), the preprocessing steps joined by '; ', and the run id."""
    k = doc["top_k"]
    ranks = [f"top{r}_{field}" for r in range(1, k + 1) for field in ("label", "class_name", "probability")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", "class_name", "probability", *ranks, "preprocessing", "run_id"])
    for row in doc["predictions"]:
        top = [value for entry in row["top_k"] for value in (entry["label"], entry["class_name"],
                                                              repr(entry["probability"]))]
        top += [""] * (len(ranks) - len(top))
        writer.writerow([row["file"], row["label"], row["class_name"], repr(row["probability"]), *top,
                         "; ".join(row["preprocessing"]), doc["run_id"]])
    return buffer.getvalue()


def table_text(doc: dict[str, Any], file: Any = None) -> str:
    """The predictions as a rich table under a line naming the run and the normalisation: printed on `file`
    (stdout: the terminal's width, else 200 columns), or returned as plain text when `file` is None."""
    from rich.console import Console
    from rich.table import Table

    title = (f"run {doc['run_id']} ({doc['framework']} {doc['strategy']}, {doc['model']} on {doc['dataset']}); "
             f"normalisation: {doc['normalisation']}")
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False)
    for name, justify in (("file", "left"), ("label", "right"), ("class", "left"), ("probability", "right"),
                          ("next", "left"), ("preprocessing", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in doc["predictions"]:
        others = ", ".join(f"{e['class_name']} {e['probability']:.3f}" for e in row["top_k"][1:])
        table.add_row(row["file"], str(row["label"]), row["class_name"], f"{row['probability']:.3f}", others,
                      "; ".join(row["preprocessing"]))
    if file is not None:
        Console(file=file, width=None if file.isatty() else 200).print(table)
        return ""
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(table)
    return buffer.getvalue()
