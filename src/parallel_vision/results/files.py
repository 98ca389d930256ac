"""The files under ROOT that the results store indexes: where they are, how they are named, whether
they changed. The store (results/store.py) reads them; nothing here touches the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parallel_vision.results.schema import RESULT_FILE

#: Written by `pvision bench` beside result.json: how busy the machine was while the run trained.
BENCH_RUN_FILE = "bench_run.json"


def bench_record(run_dir: Path) -> dict[str, Any]:
    """The run folder's bench_run.json, or {} when it has none (or an unreadable one)."""
    try:
        record = json.loads((Path(run_dir) / BENCH_RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


class SyncReport:
    """What a sync changed, and the files it could not read."""

    def __init__(self) -> None:
        self.added = 0
        self.removed = 0
        self.unreadable: list[str] = []


def combined_mtime(run_dir: Path, result_mtime_ns: int) -> int:
    """result.json's mtime, or bench_run.json's when newer: a change to either re-indexes the run."""
    try:
        return max(result_mtime_ns, (Path(run_dir) / BENCH_RUN_FILE).stat().st_mtime_ns)
    except OSError:
        return result_mtime_ns


def rel_path(path: Path, root: Path) -> str:
    """`path` relative to ROOT (both resolved), else absolute: how the store names files."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def find_result_files(root: Path) -> list[Path]:
    """result.json files at ROOT, ROOT/*/ and ROOT/*/*/ (hidden folders skipped)."""
    root = Path(root)
    found: list[Path] = []
    for pattern in (RESULT_FILE, f"*/{RESULT_FILE}", f"*/*/{RESULT_FILE}"):
        for path in root.glob(pattern):
            if any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
                continue
            if path.is_file():
                found.append(path)
    return sorted(found)


def is_sqlite(path: Path) -> bool:
    """True for an empty file or one that starts with SQLite's header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return head == b"" or head == b"SQLite format 3\x00"
