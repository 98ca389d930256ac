"""SQLite's "database or disk is full" as the package's one-line DiskFullError naming the .sqlite file."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from parallel_vision.atomic import disk_full

#: SQLite's result codes for a full disk, and for an I/O error (its -shm index failing to grow) that a
#: nearly full disk explains.
_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_NEARLY_FULL_BYTES = 1 << 20
#: Roughly what a write needs beyond its rows: WAL frames of whole 4 kB pages, and the 32 kB -shm index.
WAL_OVERHEAD_BYTES = 64 * 1024
DB_KEPT = "the database is left as it was (every result.json is kept; `pvision runs rebuild` recreates it)"


def is_disk_full(exc: sqlite3.Error, db: Path) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    text = str(exc)
    if code == _SQLITE_FULL or "database or disk is full" in text:
        return True
    if (code is not None and code & 0xFF == _SQLITE_IOERR) or "disk I/O error" in text:
        try:
            return shutil.disk_usage(db.parent).free < _NEARLY_FULL_BYTES
        except OSError:
            return False
    return False


@contextmanager
def disk_full_is_one_line(db: Path, size: int = 0, kept: str = DB_KEPT) -> Iterator[None]:
    """SQLite's "database or disk is full" becomes the one-line DiskFullError naming the .sqlite file."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_disk_full(exc, db):
            raise disk_full(db, size + WAL_OVERHEAD_BYTES, kept) from None
        raise
