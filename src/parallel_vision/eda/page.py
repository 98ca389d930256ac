"""Assembly: run the analyses in order, save their figures, write eda.json and a self-contained eda.html.

Nothing here computes a statistic; each section is one analysis function's result. For colour datasets
each section carries the analysis's one-sentence note on what it ran on (colour, luminance, or a refusal
of part of it), shown above its caption and stored in eda.json.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.eda.base import AnalysisResult, Table, jsonable

#: (key, heading) of the 14 sections, in page order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("samples", "Sample images per class"),
    ("descriptive", "Descriptive statistics"),
    ("boxplots", "Pixel intensity box plots"),
    ("correlation", "Pixel correlation"),
    ("normality", "Normality tests"),
    ("edges", "Edge detection"),
    ("hog", "Histogram of oriented gradients (HOG)"),
    ("rotation", "Rotation"),
    ("augmentation", "Data augmentation"),
    ("class_means", "Mean image of each class"),
    ("pca", "Principal component analysis (PCA)"),
    ("tsne", "t-SNE embedding"),
    ("reconstruction", "PCA reconstruction"),
)

#: How the page names the entries of eda.json's "samples".
SAMPLE_LABELS = {
    "train_images": "training split",
    "test_images": "test split",
    "correlation": "pixel correlation",
    "pca_fit": "PCA fit",
    "pca_scatter": "PCA scatter",
    "tsne": "t-SNE",
    "normality_nonzero_pixel_images": "normality: nonzero-pixel images",
    "shapiro_wilk_max": "Shapiro–Wilk (at most)",
    "edge_stats": "edge statistics",
    "rotation_stats": "rotation statistics",
    "augmentation_stats": "augmentation statistics",
    "reconstruction_test_images": "PCA reconstruction (test)",
}

DEFAULT_TSNE_SAMPLE = 5000
DEFAULT_CORRELATION_SAMPLE = 10_000


@dataclass
class EdaOptions:
    dataset: str = "mnist"
    out_dir: str | os.PathLike | None = None
    tsne_sample: int = DEFAULT_TSNE_SAMPLE
    seed: int = 0
    data_dir: str | os.PathLike | None = None
    correlation_sample: int = DEFAULT_CORRELATION_SAMPLE
    pca_fit_sample: int | None = None
    """None: fit PCA on the whole training split (exact covariance eigh; ~1 s for 60k × 784)."""
    n_jobs: int | None = None


@dataclass
class EdaReport:
    out_dir: Path
    html_path: Path
    json_path: Path
    figures: list[Path]
    results: dict[str, AnalysisResult]
    timings: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)


def heading(index: int, title: str) -> str:
    return f"{index}. {title}"


# --------------------------------------------------------------------------- checks
def check_dataset(dataset: str) -> Any:
    """The dataset's spec from the data layer, or a one-line DataError naming the ones it can explore.

    `synthetic` (the engines' random-pixel dataset) is refused by name: there is nothing to explore.
    """
    from parallel_vision.errors import DataError

    try:
        from parallel_vision.data import DATASETS
    except ImportError as exc:  # pragma: no cover - the data layer is part of the package
        raise DataError(f"the data layer is not available: {exc}") from None
    known = ", ".join(DATASETS)
    if dataset == "synthetic":
        raise DataError(
            f"pvision eda cannot explore 'synthetic': its images are random pixels with nothing to find; "
            f"choose from {known}"
        )
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose from {known}")
    return DATASETS[dataset]


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    """Create `out_dir` and prove it is writable, or raise ConfigError with a one-line reason."""
    from parallel_vision.errors import ConfigError

    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".pvision-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write the EDA output directory {str(path)!r}: {exc.strerror or exc}") from None
    return path


def check_options(opts: EdaOptions) -> None:
    from parallel_vision.errors import ConfigError

    for name, label in (("tsne_sample", "t-SNE sample (--sample)"), ("correlation_sample", "correlation sample")):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 10:
            raise ConfigError(f"{label} must be an integer >= 10; got {value!r}")
    if opts.pca_fit_sample is not None and opts.pca_fit_sample < 10:
        raise ConfigError(f"PCA fit sample must be >= 10; got {opts.pca_fit_sample!r}")
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) or opts.seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {opts.seed!r}")


# --------------------------------------------------------------------------- running
class _NoProgress:
    def advance(self, label: str) -> None:  # noqa: D401 - tiny protocol
        pass

    def start(self, label: str) -> None:
        pass


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield _NoProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]EDA[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as progress:
        task = progress.add_task("loading data", total=total)

        class _Bar:
            def start(self, label: str) -> None:
                progress.update(task, description=label)

            def advance(self, label: str) -> None:
                progress.update(task, advance=1, description=label)

        yield _Bar()


def run_eda(opts: EdaOptions, progress: bool = True) -> EdaReport:
    """Load the dataset, run the 14 analyses, write figures, eda.json and eda.html into `opts.out_dir`."""
    from parallel_vision.eda import augment, correlation, embedding, features, normality, overview, stats

    check_options(opts)
    spec = check_dataset(opts.dataset)
    out = prepare_out_dir(opts.out_dir or f"eda-{opts.dataset}")
    class_names = [str(c) for c in spec.class_names]
    from parallel_vision.config import usable_cores
    from parallel_vision.data import load

    n_jobs = opts.n_jobs or usable_cores()
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    def rng(i: int) -> np.random.Generator:
        # One independent stream per section: results do not depend on which other sections ran.
        return np.random.default_rng([opts.seed, i])

    results: dict[str, AnalysisResult] = {}
    # One BLAS thread: every BLAS call here is small (784×784 covariance, 10k×784 correlation) and
    # measured faster single-threaded, much faster when the cores are shared (PCA fit on 60k images:
    # 0.5 s on one thread vs 2.6-4.9 s on two busy-waiting ones). t-SNE sets its own OpenMP threads.
    with threadpool_limits(limits=1, user_api="blas"), _progress(progress, total=len(SECTIONS) + 2) as bar:
        t = time.perf_counter()
        bar.start("loading data")
        xtr, ytr = load(opts.dataset, "train", data_dir=opts.data_dir)
        xte, yte = load(opts.dataset, "test", data_dir=opts.data_dir)
        timings["load"] = time.perf_counter() - t
        bar.advance(SECTIONS[0][1])

        steps: dict[str, Callable[[], AnalysisResult]] = {
            "overview": lambda: overview.overview(xtr, ytr, xte, yte, class_names),
            "samples": lambda: overview.sample_grid(xtr, ytr, class_names, rng(2)),
            "descriptive": lambda: stats.descriptive_stats(xtr, ytr, xte, class_names),
            "boxplots": lambda: stats.intensity_boxplots(xtr, ytr, class_names),
            "correlation": lambda: correlation.pixel_correlation(xtr, rng(5), sample=opts.correlation_sample),
            "normality": lambda: normality.normality_tests(xtr, rng(6)),
            "edges": lambda: features.edge_detection(xtr, ytr, class_names, rng(7)),
            "hog": lambda: features.hog_features(xtr, ytr, class_names, rng(8)),
            "rotation": lambda: augment.rotation_examples(xtr, ytr, class_names, rng(9)),
            "augmentation": lambda: augment.augmentation_examples(xtr, ytr, class_names, rng(10)),
            "class_means": lambda: stats.class_means(xtr, ytr, class_names),
            "pca": lambda: embedding.pca_analysis(xtr, ytr, class_names, rng(12), fit_sample=opts.pca_fit_sample),
            "tsne": lambda: embedding.tsne_embedding(
                xtr,
                ytr,
                class_names,
                rng(13),
                sample=opts.tsne_sample,
                pca=results["pca"].extras["pca"],
                seed=opts.seed,
                n_jobs=n_jobs,
            ),
            "reconstruction": lambda: embedding.pca_reconstruction(
                xtr, xte, yte, class_names, rng(14), pca=results["pca"].extras["pca"]
            ),
        }
        figures: list[Path] = []
        images: dict[str, list[tuple[str, str]]] = {}
        for i, (key, _title) in enumerate(SECTIONS):
            t = time.perf_counter()
            result = steps[key]()
            assert result.key == key, (result.key, key)
            results[key] = result
            images[key] = []
            for name, fig in result.figures.items():
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", facecolor="white")
                data = buf.getvalue()
                path = out / f"{i + 1:02d}_{name}.png"
                atomic_write_bytes(path, data)  # a full disk: one line naming the file
                figures.append(path)
                images[key].append((path.name, base64.b64encode(data).decode("ascii")))
                fig.clear()
            result.figures.clear()
            timings[key] = time.perf_counter() - t
            bar.advance(SECTIONS[i + 1][1] if i + 1 < len(SECTIONS) else "writing report")

        t = time.perf_counter()
        samples = {
            "train_images": int(len(xtr)),
            "test_images": int(len(xte)),
            "correlation": results["correlation"].numbers["sample_size"],
            "pca_fit": results["pca"].numbers["fit_images"],
            "pca_scatter": results["pca"].numbers["scatter_sample"],
            "tsne": results["tsne"].numbers["sample_size"],
            "normality_nonzero_pixel_images": results["normality"].numbers["pixel_sample_images"],
            "shapiro_wilk_max": results["normality"].numbers["shapiro_max_n"],
            "edge_stats": results["edges"].numbers["stats_sample"],
            "rotation_stats": results["rotation"].numbers["stats_sample"],
            "augmentation_stats": results["augmentation"].numbers["stats_sample"],
            "reconstruction_test_images": results["reconstruction"].numbers["n_images"],
        }
        timings["total_before_write"] = time.perf_counter() - t_start
        colour = xtr.ndim == 4
        doc = {
            "dataset": opts.dataset,
            "image_shape": list(xtr.shape[1:]),
            "channels": int(xtr.shape[3]) if colour else 1,
            "colour": colour,
            "class_names": class_names,
            "seed": opts.seed,
            "samples": samples,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "sections": {
                key: {"number": i + 1, "heading": heading(i + 1, title), **results[key].to_json()}
                for i, (key, title) in enumerate(SECTIONS)
            },
        }
        json_path = out / "eda.json"
        atomic_write_bytes(json_path, (json.dumps(jsonable(doc), indent=1, allow_nan=False) + "\n").encode())
        html_path = out / "eda.html"
        atomic_write_bytes(html_path, render_html(doc, results, images, tables_of(results)).encode())
        bar.advance("done")
    timings["total"] = time.perf_counter() - t_start
    return EdaReport(out_dir=out, html_path=html_path, json_path=json_path, figures=figures, results=results,
                     timings=timings, summary=samples)


def tables_of(results: dict[str, AnalysisResult]) -> dict[str, list[Table]]:
    return {k: r.tables for k, r in results.items()}


# --------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;margin:0;color:#1d2330;
background:#f5f6f8;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px;background:#fff;box-shadow:0 0 12px #0001}
h1{font-size:1.7em;margin:.2em 0 .1em}
h2{font-size:1.25em;margin:1.8em 0 .4em;padding-top:.6em;border-top:1px solid #e3e6ea}
.meta{color:#555;font-size:.92em}
nav ol{columns:2;font-size:.93em;padding-left:1.4em}
nav a{color:#1f5fa8;text-decoration:none}
p.caption{margin:.3em 0 .8em;max-width:68em}
p.note{margin:.3em 0;max-width:68em;padding:.3em .6em;background:#fff8e1;border-left:3px solid #e0a800;
font-size:.93em}
figure{margin:.6em 0 1em;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.8em;color:#777}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
caption{text-align:left;font-weight:600;padding:.2em 0}
th,td{border:1px solid #dde1e6;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f2f5}
.body{display:flex;flex-wrap:wrap;gap:6px 28px;align-items:flex-start}
.body figure,.body table{margin:0 0 .6em}
"""


_NUMERIC = re.compile(r"^[-+−]?[\d,]*\.?\d+(e[-+]?\d+)?\s*[%°]?$")


def _cell(value: Any) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    cls = ' class="n"' if _NUMERIC.match(text) else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def _table_html(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    cap = f"<caption>{esc(table.title)}</caption>" if table.title else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _format_text(doc: dict[str, Any]) -> str:
    """'28×28 grey images' or '32×32 RGB colour images (per-section notes say what each analysis ran on)'."""
    shape = doc.get("image_shape") or []
    size = "×".join(str(v) for v in shape[:2])
    if doc.get("colour"):
        return f"{size} RGB colour images (each section's note says how it treats colour)"
    return f"{size} grey images"


def render_html(
    doc: dict[str, Any],
    results: dict[str, AnalysisResult],
    images: dict[str, list[tuple[str, str]]],
    tables: dict[str, list[Table]],
) -> str:
    """One self-contained page: CSS inline, figures as base64 PNG data URIs."""
    esc = html.escape
    toc = "".join(f'<li><a href="#{key}">{esc(title)}</a></li>' for key, title in SECTIONS)
    items = [
        f"<td>{esc(SAMPLE_LABELS.get(k, k.replace('_', ' ')))}</td>{_cell('not run' if v is None else v)}"
        for k, v in doc["samples"].items()
    ]
    per_row = 3
    sample_rows = "".join("<tr>" + "".join(items[i : i + per_row]) + "</tr>" for i in range(0, len(items), per_row))
    timing_rows = "".join(
        f"<tr><td>{esc(k.replace('_', ' '))}</td>{_cell(f'{v:.2f}')}</tr>" for k, v in doc["timings_s"].items()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>EDA — {esc(doc['dataset'])}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>Exploratory data analysis: {esc(doc['dataset'])}</h1>",
        f'<p class="meta">Generated by <code>pvision eda</code> · seed {doc["seed"]} · '
        f"{esc(_format_text(doc))} · every number on this page "
        f"is in <code>eda.json</code> next to it; figures are also saved as PNG files.</p>",
        f"<nav><ol>{toc}</ol></nav>",
        '<table class="samples"><caption>Images used by each analysis</caption>'
        f"<thead><tr>{'<th>analysis</th><th>images</th>' * per_row}</tr></thead>"
        f"<tbody>{sample_rows}</tbody></table>",
    ]
    for i, (key, title) in enumerate(SECTIONS):
        r = results[key]
        parts.append(f'<section id="{key}"><h2>{esc(heading(i + 1, title))}</h2>')
        if r.note:
            parts.append(f'<p class="note">{esc(r.note)}</p>')
        parts.append(f'<p class="caption">{esc(r.caption)}</p><div class="body">')
        for name, data in images.get(key, []):
            parts.append(
                f'<figure><img alt="{esc(title)}: {esc(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(name)}</figcaption></figure>"
            )
        for table in tables.get(key, []):
            parts.append(_table_html(table))
        parts.append("</div></section>")
    parts.append(
        '<h2 id="timings">Timings</h2><table><thead><tr><th>step</th><th>seconds</th></tr></thead>'
        f"<tbody>{timing_rows}</tbody></table>"
    )
    parts.append("</main></body></html>\n")
    return "\n".join(parts)
