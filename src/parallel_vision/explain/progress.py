"""Progress of an explain child, shown by its parent with an ETA (IG and occlusion take minutes on a CPU).

The child (explain/child.py) declares its tasks up front, then advances them chunk by chunk; each change goes to
FOLDER/progress.json (written whole, then renamed, so the parent never reads half a file). The parent
(explain/run.py) polls that file from a thread and draws one rich progress bar per task on stderr, with the time
left estimated from the chunks done so far. Framework-free; nothing here decides what is computed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PROGRESS_FILE = "progress.json"
#: The child writes at most this often (a write per chunk would be fine too; this keeps the file quiet).
WRITE_EVERY_S = 0.2
#: The parent reads this often.
POLL_S = 0.3


class Reporter:
    """The child's side: tasks declared once (name -> units of work), then advanced."""

    def __init__(self, folder: Path, tasks: dict[str, int]) -> None:
        self.path = folder / PROGRESS_FILE
        self.state: dict[str, Any] = {"tasks": [{"name": n, "total": t, "done": 0} for n, t in tasks.items()]}
        self._written = 0.0
        self._write(force=True)

    def advance(self, name: str, units: int = 1) -> None:
        task = next(t for t in self.state["tasks"] if t["name"] == name)
        task["done"] = min(task["total"], task["done"] + units)
        self._write(force=task["done"] == task["total"])

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < WRITE_EVERY_S:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)
        self._written = now


def read(folder: Path) -> list[dict[str, Any]]:
    """The tasks as last written ([] before the child wrote any, or if the file is unreadable)."""
    try:
        return list(json.loads((folder / PROGRESS_FILE).read_text())["tasks"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def bars(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("left"), TimeRemainingColumn(), console=console, transient=False)


def show(progress: Progress, shown: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
    """Bring the bars up to the tasks read (a bar per task, created the first time it is seen)."""
    for t in tasks:
        if t["name"] not in shown:
            shown[t["name"]] = progress.add_task(t["name"], total=t["total"])
        progress.update(shown[t["name"]], completed=t["done"])


@contextmanager
def watching(folder: Path, console: Console | None = None) -> Iterator[None]:
    """While the body runs, draw the child's progress from FOLDER on stderr (nothing where stderr is not a
    terminal, unless a console is given)."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    stop = threading.Event()
    shown: dict[str, Any] = {}

    def poll(progress: Progress) -> None:
        while not stop.wait(POLL_S):
            show(progress, shown, read(folder))

    with bars(console) as progress:
        thread = threading.Thread(target=poll, args=(progress,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            show(progress, shown, read(folder))
