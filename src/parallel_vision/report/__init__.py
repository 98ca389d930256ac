"""The comparative report: reads the results store, never trains.

`write_report(ROOT)` writes ROOT/report.html (self-contained) and ROOT/report.md
(+ ROOT/figures/*.png); `pvision report ROOT --format text` prints the tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes  # 0644 files; a full disk is a one-line error
from parallel_vision.errors import ConfigError
from parallel_vision.report import compare, html, markdown, sharding, sharding_tables
from parallel_vision.report.data import build_report_data
from parallel_vision.report.figures import all_figures
from parallel_vision.report.memory_budget import budget_lines
from parallel_vision.report.text import print_text

FORMATS = ("html", "md", "text")


def write_report(root: str | Path, formats: Sequence[str] = ("html", "md"), data: Any = None,
                 peak_gflops: float | None = None, memory_per_worker: int | None = None) -> list[Path]:
    """Build the report for ROOT in the given file formats; return the files written. `peak_gflops`: a
    declared peak per worker, for the model FLOPs utilisation column; `memory_per_worker`: a declared budget in
    bytes, for the largest model each strategy would fit (the sharding section)."""

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown report format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    root = Path(root)
    data = data or build_report_data(root, peak_gflops, memory_per_worker)
    file_formats = [f for f in formats if f != "text"]
    written: list[Path] = []
    if file_formats:
        figures = all_figures(data)
        if "html" in file_formats:

            path = root / "report.html"
            atomic_write_bytes(path, html.render(data, figures).encode())
            written.append(path)
        if "md" in file_formats:

            fig_dir = root / markdown.FIGURE_DIR
            for fig in figures:
                atomic_write_bytes(fig_dir / f"{fig.name}.png", fig.png)
            path = root / "report.md"
            atomic_write_bytes(path, markdown.render(data, figures).encode())
            written.append(path)
        summary = root / "report.json"
        atomic_write_bytes(summary, (json.dumps(report_summary(data), indent=2) + "\n").encode())
        written.append(summary)
    if "text" in formats:

        print_text(data=data)
    return written


def report_summary(data: Any) -> dict[str, Any]:
    """The report's numbers in machine-readable form (report.json)."""
    from dataclasses import asdict


    def spread(s: Any) -> Any:
        return asdict(s) if s is not None else None

    return {
        "root": str(data.root),
        "generated_at": data.generated_at,
        "configurations": [
            {
                "key": g.key, "label": g.label, "framework": g.framework, "strategy": g.strategy,
                "workers": g.workers, "global_batch": g.global_batch, "threads_per_worker": g.threads,
                "repeats": g.repeats, "run_ids": [r["run_id"] for r in g.runs],
                "stats": {k: spread(v) for k, v in g.stats.items()}, "time_split": g.time_split(),
            }
            for g in data.groups
        ],
        "scaling": [
            {
                "mode": r.mode, "configuration": r.point.label, "workers": r.workers,
                "baseline": r.baseline.label, "same_threads": r.same_threads, "speedup": spread(r.speedup),
                "efficiency": spread(r.efficiency), "best_single": r.best.label,
                "speedup_vs_best_single": spread(r.speedup_vs_best),
            }
            for r in data.strong + data.weak
        ],
        "skipped": [{k: s[k] for k in ("name", "framework", "strategy", "workers", "reason")}
                    for s in data.skipped],
        "comparison": compare.as_dict(data),
        "sharding": sharding_tables.as_dict(sharding.comparisons(data.groups)),
        "memory_per_worker": None if data.memory_per_worker is None else {
            "bytes": data.memory_per_worker,
            "lines": budget_lines(sharding.state_rows(data.groups), data.memory_per_worker)},
        "warnings": data.warnings,
    }
