"""The results store: a SQLite index of the result.json files under one ROOT.

The JSON files are the source of truth; `ROOT/results.sqlite` is a cache that
can be rebuilt from them at any time (`pvision runs rebuild ROOT`, or by
itself when it is missing). Each result is inserted in one transaction, keyed
by its run_id, so inserting the same result twice changes nothing.

Layout it understands (up to two folders deep, hidden folders ignored)::

    ROOT/results.sqlite            this index (WAL mode)
    ROOT/runs/<name>/result.json   runs made by `pvision bench`
    ROOT/<name>/result.json        runs made by `pvision train --out ROOT/<name>`
    ROOT/skipped/<name>.json       configurations a bench could not run, with the reason
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parallel_vision.atomic import disk_full
from parallel_vision.config import RunConfig
from parallel_vision.errors import PVisionError, ResultsError
from parallel_vision.projection.linktest import LINKTEST_FILE, read_record
from parallel_vision.results.files import BENCH_RUN_FILE as BENCH_RUN_FILE  # re-exported: the bench writes it
from parallel_vision.results.files import (
    SyncReport,
    bench_record,
    combined_mtime,
    find_result_files,
    is_sqlite,
    rel_path,
)
from parallel_vision.results.rows import (
    CONFIG_COLUMNS,
    SCHEMA,
    STORE_VERSION,
    SUMMARY_COLUMNS,
    decode_run,
    identity_hash,
    int_if,
    num,
    process_threads,
    threads_per_replica,
)
from parallel_vision.results.schema import EPOCH_KEYS, RESULT_FILE, read_result
from parallel_vision.results.sqlite_full import DB_KEPT, WAL_OVERHEAD_BYTES, disk_full_is_one_line, is_disk_full

DB_FILE = "results.sqlite"
SKIPPED_DIR = "skipped"


class Store:
    """An open results database for one ROOT. Use `open_store()` rather than the constructor."""

    def __init__(self, root: Path, conn: sqlite3.Connection) -> None:
        self.root = root
        self.conn = conn
        self.last_sync: SyncReport | None = None

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.root / DB_FILE

    @contextmanager
    def transaction(self, size: int = 0) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error: all of it or none of it.

        A full disk (`size`: about the bytes the rows take) is a one-line DiskFullError.
        """
        with disk_full_is_one_line(self.path, size):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite may have rolled back already (e.g. on a full disk)
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    # ------------------------------------------------------------------ writing
    def insert_result(self, data: dict[str, Any], run_dir: Path) -> str:
        """Insert (or replace) one validated result and its epochs, in one transaction."""
        run_dir = Path(run_dir)
        cfg = data["config"]
        summary = data.get("summary") or {}
        env = data.get("environment") or {}
        extra = cfg.get("extra") or {}
        result_file = run_dir / RESULT_FILE
        try:
            stat = result_file.stat()
            mtime, size = combined_mtime(run_dir, stat.st_mtime_ns), stat.st_size
        except OSError:
            mtime, size = None, None
        bench = bench_record(run_dir)
        row: dict[str, Any] = {
            "run_id": data["run_id"],
            "name": run_dir.name,
            "path": rel_path(run_dir, self.root),
            "status": data["status"],
            "created_at": data.get("created_at"),
            "code_version": env.get("code_version"),
            "host": env.get("host"),
            "identity_hash": identity_hash(cfg),
            "identity_json": json.dumps(RunConfig.from_dict(cfg).identity(), sort_keys=True),
            "preset": extra.get("preset"),
            "protocol": extra.get("protocol"),
            "scaling": extra.get("scaling"),
            "repeat": extra.get("repeat"),
            "process_threads": process_threads(data),
            "threads_per_replica": threads_per_replica(data),
            "other_cores": bench.get("other_cores"),
            "bench_json": json.dumps(bench, sort_keys=True) if bench else None,
            "config_json": json.dumps(cfg, sort_keys=True),
            "environment_json": json.dumps(env, sort_keys=True),
            "summary_json": json.dumps(summary, sort_keys=True),
            "timing_json": json.dumps(data.get("timing") or {}, sort_keys=True),
            "workload_json": json.dumps(data.get("workload") or {}, sort_keys=True),
            "classification_report_json": json.dumps(data.get("classification_report") or {}),
            "confusion_matrix_json": json.dumps(data.get("confusion_matrix") or []),
            "result_mtime_ns": mtime,
            "result_size": size,
            "inserted_at": time.time(),
        }
        for key in CONFIG_COLUMNS:
            row[key] = num(cfg.get(key))
        for key in SUMMARY_COLUMNS:
            row[key] = num(summary.get(key))
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        size = sum(len(v) for v in row.values() if isinstance(v, str)) + 8 * len(EPOCH_KEYS) * len(data["epochs"])
        with self.transaction(size) as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (data["run_id"],))
            conn.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", row)
            conn.executemany(
                f"INSERT INTO epochs (run_id, {', '.join(EPOCH_KEYS)}) VALUES (?{', ?' * len(EPOCH_KEYS)})",
                [(data["run_id"], *(num(e.get(k)) for k in EPOCH_KEYS)) for e in data["epochs"]],
            )
        return str(data["run_id"])

    def insert_skip(self, record: dict[str, Any], path: Path) -> None:
        try:
            rel = str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            rel = str(path)
        cfg = record.get("config") or {}
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO skipped (name, path, reason, framework, strategy, workers,"
                " identity_hash, config_json, code_version, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record["name"], rel, record["reason"], cfg.get("framework"), cfg.get("strategy"),
                    cfg.get("workers"), record.get("identity_hash"), json.dumps(cfg, sort_keys=True),
                    record.get("code_version"), record.get("recorded_at"),
                ),
            )

    def delete_run(self, run_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def delete_skip(self, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM skipped WHERE name = ?", (name,))

    def sync(self) -> SyncReport:
        """Bring the index in line with the files: add new or changed results, drop vanished ones."""
        report = SyncReport()
        known = {r["path"]: r for r in self.conn.execute(
            "SELECT run_id, path, result_mtime_ns, result_size FROM runs")}
        seen_paths: set[str] = set()
        for result_file in find_result_files(self.root):
            run_dir = result_file.parent
            rel = rel_path(run_dir, self.root)
            seen_paths.add(rel)
            stat = result_file.stat()
            mtime = combined_mtime(run_dir, stat.st_mtime_ns)
            row = known.get(rel)
            unchanged = row is not None and (row["result_mtime_ns"], row["result_size"]) == (mtime, stat.st_size)
            if unchanged:
                continue
            try:
                data = read_result(result_file)
                RunConfig.from_dict(data["config"])
            except PVisionError as exc:
                report.unreadable.append(f"{rel_path(result_file, self.root)}: {str(exc).splitlines()[0]}")
                continue
            if row is not None and row["run_id"] != data["run_id"]:
                self.delete_run(row["run_id"])
            self.insert_result(data, run_dir)
            report.added += 1
        for rel, row in known.items():
            if rel not in seen_paths:
                self.delete_run(row["run_id"])
                report.removed += 1
        skip_names = set()
        for skip_file in sorted((self.root / SKIPPED_DIR).glob("*.json")):
            try:
                record = json.loads(skip_file.read_text())
                self.insert_skip(record, skip_file)
                skip_names.add(record["name"])
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
                report.unreadable.append(f"{rel_path(skip_file, self.root)}: {exc}")
        for (name,) in self.conn.execute("SELECT name FROM skipped").fetchall():
            if name not in skip_names:
                self.delete_skip(name)
        self._sync_linktests(report)
        return report

    def _sync_linktests(self, report: SyncReport) -> None:
        """Index ROOT/linktest.json and ROOT/*/linktest.json (`pvision linktest`, docs/projection.md)."""
        rows = []
        for path in sorted([self.root / LINKTEST_FILE, *self.root.glob(f"*/{LINKTEST_FILE}")]):
            if not path.is_file():
                continue
            try:
                rec = read_record(path)
                rows.append((rel_path(path, self.root), rec.get("backend"), rec.get("world_size"), rec.get("nodes"),
                             rec.get("label"), rec.get("created_at"), rec["fit"]["a_s"], rec["fit"]["bandwidth_Bps"],
                             json.dumps(rec, sort_keys=True)))
            except (PVisionError, KeyError, TypeError) as exc:
                report.unreadable.append(f"{rel_path(path, self.root)}: {str(exc).splitlines()[0]}")
        with self.transaction() as conn:
            conn.execute("DELETE FROM linktests")
            conn.executemany("INSERT INTO linktests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def linktests(self) -> list[dict[str, Any]]:
        """Every indexed linktest record, newest first, with its path relative to ROOT."""
        rows = self.conn.execute("SELECT path, record_json FROM linktests ORDER BY created_at DESC, path")
        return [dict(json.loads(r["record_json"]), path=r["path"]) for r in rows]

    # ------------------------------------------------------------------ reading
    def runs(self, *, status: str | None = "complete") -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        sql += " ORDER BY framework, workers, strategy, batch_size, created_at, name"
        return [decode_run(r) for r in self.conn.execute(sql, args)]

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))
        return [{k: int_if(k, r[k]) for k in EPOCH_KEYS} for r in rows]

    def skipped(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM skipped ORDER BY framework, workers, strategy, name")
        return [dict(r, config=json.loads(r["config_json"])) for r in rows]

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def find(self, key: str) -> dict[str, Any]:
        """One run by run_id, a unique run_id prefix, or its folder name.

        The prefix is matched literally (`%` and `_` are characters, not LIKE wildcards), ignoring ASCII case.
        """
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE run_id = ? OR name = ? OR lower(substr(run_id, 1, ?)) = lower(?) "
            "ORDER BY created_at",
            (key, key, len(key), key),
        ).fetchall()
        exact = [r for r in rows if r["run_id"] == key or r["name"] == key]
        rows = exact or rows
        if not rows:
            raise ResultsError(f"no run {key!r} in {self.path}")
        if len(rows) > 1:
            raise ResultsError(f"{key!r} matches {len(rows)} runs in {self.path}; give more of the run_id")
        return decode_run(rows[0])

    def done(self, ident: str, code_version: str | None, repeat: int) -> dict[str, Any] | None:
        """A complete run of this identity, code version and repeat index, if stored."""
        row = self.conn.execute(
            "SELECT * FROM runs WHERE identity_hash = ? AND code_version IS ? AND repeat = ? "
            "AND status = 'complete' ORDER BY created_at DESC LIMIT 1",
            (ident, code_version, repeat),
        ).fetchone()
        return decode_run(row) if row else None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def open_store(
    root: str | os.PathLike[str], *, create_empty: bool = False, sync: bool = True
) -> Store:
    """Open ROOT's database and sync it with the result files; build it from them when missing.

    Raises a one-line ResultsError when the database is corrupt, or when there is
    neither a database nor any result under ROOT (unless `create_empty`, which the
    bench uses to start a new ROOT). A database that exists but holds no runs is
    reported by `require_runs`, which the report and `runs` commands call.
    """
    root = Path(root)
    db = root / DB_FILE
    if create_empty:
        root.mkdir(parents=True, exist_ok=True)
    if not root.exists():
        raise ResultsError(f"{root}: no such folder (no results database and no runs)")
    if not root.is_dir():
        raise ResultsError(f"{root}: not a folder; give the folder that holds {DB_FILE}")
    if not db.exists() and not create_empty and not find_result_files(root):
        raise ResultsError(f"{root}: no results database ({DB_FILE}) and no run results to build one from")
    if db.exists() and not is_sqlite(db):
        raise ResultsError(
            f"{db}: corrupt results database (not SQLite); `pvision runs rebuild {root}` recreates it from"
            " the result.json files"
        )
    try:
        conn = _connect(db)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and version != STORE_VERSION:
            conn.close()
            return rebuild(root)
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {STORE_VERSION}")
        conn.execute("SELECT COUNT(*) FROM runs").fetchone()
    except sqlite3.DatabaseError as exc:
        if is_disk_full(exc, db):
            raise disk_full(db, WAL_OVERHEAD_BYTES, DB_KEPT) from None
        raise ResultsError(
            f"{db}: corrupt results database ({exc}); `pvision runs rebuild {root}` recreates it from the"
            " result.json files"
        ) from None
    store = Store(root, conn)
    if sync:
        try:
            store.last_sync = store.sync()
        except sqlite3.DatabaseError as exc:
            store.close()
            if is_disk_full(exc, db):
                raise disk_full(db, WAL_OVERHEAD_BYTES, DB_KEPT) from None
            raise ResultsError(f"{db}: corrupt results database ({exc}); try `pvision runs rebuild {root}`") \
                from None
    return store


def require_runs(store: Store) -> None:
    """Raise a one-line ResultsError when the store holds no complete run."""
    if not store.runs():
        incomplete = len(store.runs(status="incomplete"))
        more = f" ({incomplete} incomplete)" if incomplete else ""
        raise ResultsError(f"{store.path}: empty results database, no complete runs{more}")


def rebuild(root: str | os.PathLike[str]) -> Store:
    """Recreate ROOT/results.sqlite from the result.json files; a corrupt database is moved aside."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"{root}: no such folder")
    db = root / DB_FILE
    if db.exists():
        if is_sqlite(db) and db.stat().st_size:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
        else:
            aside = db.with_name(f"{DB_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(db, aside)
            for suffix in ("-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
    with disk_full_is_one_line(db, kept="every result.json is kept; run the rebuild again once space is freed"):
        conn = _connect(db)
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {STORE_VERSION}")
        store = Store(root, conn)
        store.last_sync = store.sync()
    return store
