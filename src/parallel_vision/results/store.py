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

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parallel_vision.atomic import disk_full
from parallel_vision.config import RunConfig
from parallel_vision.errors import PVisionError, ResultsError
from parallel_vision.results.schema import EPOCH_KEYS, REQUIRED_SUMMARY_KEYS, RESULT_FILE, read_result

DB_FILE = "results.sqlite"
SKIPPED_DIR = "skipped"
#: Bump when the table layout changes: an older database is then rebuilt from the JSON.
STORE_VERSION = 2

#: Summary fields copied into their own columns (the rest stays in summary_json): every complete result has them.
SUMMARY_COLUMNS = REQUIRED_SUMMARY_KEYS
#: Config fields copied into their own columns.
CONFIG_COLUMNS = (
    "framework",
    "strategy",
    "workers",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "dropout",
    "seed",
    "dataset",
    "limit_train",
    "limit_test",
    "threads_per_worker",
    "device",
    "precision",
    "memory_format",
    "compile",
    "jit_compile",
)

_TEXT_CONFIG_COLUMNS = (
    "framework", "strategy", "optimizer", "dataset", "device", "precision", "memory_format",
)
_CONFIG_DDL = ",\n    ".join(f"{c} {'TEXT' if c in _TEXT_CONFIG_COLUMNS else 'REAL'}" for c in CONFIG_COLUMNS)
_SUMMARY_DDL = ",\n    ".join(f"{c} REAL" for c in SUMMARY_COLUMNS)
_EPOCH_DDL = ",\n    ".join(f"{k} REAL" for k in EPOCH_KEYS)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT,
    code_version TEXT,
    host TEXT,
    identity_hash TEXT NOT NULL,
    identity_json TEXT NOT NULL,
    preset TEXT,
    protocol TEXT,
    scaling TEXT,
    repeat INTEGER,
    process_threads INTEGER,
    threads_per_replica REAL,
    other_cores REAL,
    bench_json TEXT,
    @CONFIG@,
    @SUMMARY@,
    config_json TEXT NOT NULL,
    environment_json TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    timing_json TEXT NOT NULL,
    classification_report_json TEXT NOT NULL,
    confusion_matrix_json TEXT NOT NULL,
    result_mtime_ns INTEGER,
    result_size INTEGER,
    inserted_at REAL
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    @EPOCH@,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS skipped (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    framework TEXT,
    strategy TEXT,
    workers INTEGER,
    identity_hash TEXT,
    config_json TEXT NOT NULL,
    code_version TEXT,
    recorded_at TEXT
);
CREATE INDEX IF NOT EXISTS runs_identity ON runs(identity_hash, code_version);
""".replace("@CONFIG@", _CONFIG_DDL).replace("@SUMMARY@", _SUMMARY_DDL).replace("@EPOCH@", _EPOCH_DDL)

_INT_COLUMNS = {"workers", "epochs", "batch_size", "seed", "limit_train", "limit_test", "threads_per_worker",
                "n_test_evaluated", "epochs_completed", "world_size", "global_batch", "per_worker_batch",
                "steps_per_epoch", "n_train", "epoch", "n_train_images"}


#: SQLite's result codes for a full disk, and for an I/O error (its -shm index failing to grow) that a
#: nearly full disk explains.
_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_NEARLY_FULL_BYTES = 1 << 20
#: Roughly what a write needs beyond its rows: WAL frames of whole 4 kB pages, and the 32 kB -shm index.
_WAL_OVERHEAD_BYTES = 64 * 1024
_DB_KEPT = "the database is left as it was (every result.json is kept; `pvision runs rebuild` recreates it)"


def _is_disk_full(exc: sqlite3.Error, db: Path) -> bool:
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
def _disk_full_is_one_line(db: Path, size: int = 0, kept: str = _DB_KEPT) -> Iterator[None]:
    """SQLite's "database or disk is full" becomes the one-line DiskFullError naming the .sqlite file."""
    try:
        yield
    except sqlite3.Error as exc:
        if _is_disk_full(exc, db):
            raise disk_full(db, size + _WAL_OVERHEAD_BYTES, kept) from None
        raise


def identity_hash(cfg: RunConfig | dict[str, Any]) -> str:
    """A short stable hash of what a configuration measures (RunConfig.identity())."""
    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    text = json.dumps(cfg.identity(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def process_threads(data: dict[str, Any]) -> int | None:
    """CPU threads one engine process used, from what the engine recorded (else the config)."""
    env = data.get("environment") or {}
    for key in ("torch_threads", "tf_intra_op_threads", "intra_op_threads"):
        value = env.get(key)
        if isinstance(value, int) and value > 0:
            return value
    thread_env = env.get("thread_env") or {}
    for key in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        try:
            return int(thread_env[key])
        except (KeyError, TypeError, ValueError):
            continue
    cfg = data.get("config") or {}
    if cfg.get("threads_per_worker"):
        return int(cfg["threads_per_worker"])
    return None


def threads_per_replica(data: dict[str, Any]) -> float | None:
    """CPU threads behind each replica: a process's threads ÷ the replicas that process hosts.

    ddp / multiworker: one replica per process; single: one; mirrored / dp: every
    replica shares the one process. This is the "threads per worker" that a fair
    1-worker baseline must match.
    """
    threads = process_threads(data)
    if threads is None:
        return None
    cfg = data.get("config") or {}
    replicas_per_process = cfg.get("workers", 1) if cfg.get("strategy") in ("mirrored", "dp") else 1
    return threads / max(1, int(replicas_per_process))


#: Written by `pvision bench` beside result.json: how busy the machine was while the run trained.
BENCH_RUN_FILE = "bench_run.json"


def _bench_record(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((Path(run_dir) / BENCH_RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _num(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


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
        with _disk_full_is_one_line(self.path, size):
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
        try:
            rel = str(run_dir.resolve().relative_to(self.root.resolve()))
        except ValueError:
            rel = str(run_dir.resolve())
        result_file = run_dir / RESULT_FILE
        try:
            stat = result_file.stat()
            mtime, size = _combined_mtime(run_dir, stat.st_mtime_ns), stat.st_size
        except OSError:
            mtime, size = None, None
        bench = _bench_record(run_dir)
        row: dict[str, Any] = {
            "run_id": data["run_id"],
            "name": run_dir.name,
            "path": rel,
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
            "classification_report_json": json.dumps(data.get("classification_report") or {}),
            "confusion_matrix_json": json.dumps(data.get("confusion_matrix") or []),
            "result_mtime_ns": mtime,
            "result_size": size,
            "inserted_at": time.time(),
        }
        for key in CONFIG_COLUMNS:
            row[key] = _num(cfg.get(key))
        for key in SUMMARY_COLUMNS:
            row[key] = _num(summary.get(key))
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        size = sum(len(v) for v in row.values() if isinstance(v, str)) + 8 * len(EPOCH_KEYS) * len(data["epochs"])
        with self.transaction(size) as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (data["run_id"],))
            conn.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", row)
            conn.executemany(
                f"INSERT INTO epochs (run_id, {', '.join(EPOCH_KEYS)}) VALUES (?{', ?' * len(EPOCH_KEYS)})",
                [(data["run_id"], *(_num(e.get(k)) for k in EPOCH_KEYS)) for e in data["epochs"]],
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
            rel = _rel(run_dir, self.root)
            seen_paths.add(rel)
            stat = result_file.stat()
            mtime = _combined_mtime(run_dir, stat.st_mtime_ns)
            row = known.get(rel)
            unchanged = row is not None and (row["result_mtime_ns"], row["result_size"]) == (mtime, stat.st_size)
            if unchanged:
                continue
            try:
                data = read_result(result_file)
                RunConfig.from_dict(data["config"])
            except PVisionError as exc:
                report.unreadable.append(f"{_rel(result_file, self.root)}: {str(exc).splitlines()[0]}")
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
                report.unreadable.append(f"{_rel(skip_file, self.root)}: {exc}")
        for (name,) in self.conn.execute("SELECT name FROM skipped").fetchall():
            if name not in skip_names:
                self.delete_skip(name)
        return report

    # ------------------------------------------------------------------ reading
    def runs(self, *, status: str | None = "complete") -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        sql += " ORDER BY framework, workers, strategy, batch_size, created_at, name"
        return [_decode_run(r) for r in self.conn.execute(sql, args)]

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))
        return [{k: _int_if(k, r[k]) for k in EPOCH_KEYS} for r in rows]

    def skipped(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM skipped ORDER BY framework, workers, strategy, name")
        return [dict(r, config=json.loads(r["config_json"])) for r in rows]

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def find(self, key: str) -> dict[str, Any]:
        """One run by run_id, a unique run_id prefix, or its folder name."""
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE run_id = ? OR name = ? OR run_id LIKE ? ORDER BY created_at",
            (key, key, key.replace("%", "").replace("_", r"\_") + "%"),
        ).fetchall()
        exact = [r for r in rows if r["run_id"] == key or r["name"] == key]
        rows = exact or rows
        if not rows:
            raise ResultsError(f"no run {key!r} in {self.path}")
        if len(rows) > 1:
            raise ResultsError(f"{key!r} matches {len(rows)} runs in {self.path}; give more of the run_id")
        return _decode_run(rows[0])

    def done(self, ident: str, code_version: str | None, repeat: int) -> dict[str, Any] | None:
        """A complete run of this identity, code version and repeat index, if stored."""
        row = self.conn.execute(
            "SELECT * FROM runs WHERE identity_hash = ? AND code_version IS ? AND repeat = ? "
            "AND status = 'complete' ORDER BY created_at DESC LIMIT 1",
            (ident, code_version, repeat),
        ).fetchone()
        return _decode_run(row) if row else None


class SyncReport:
    """What a sync changed, and the files it could not read."""

    def __init__(self) -> None:
        self.added = 0
        self.removed = 0
        self.unreadable: list[str] = []


def _combined_mtime(run_dir: Path, result_mtime_ns: int) -> int:
    """result.json's mtime, or bench_run.json's when newer: a change to either re-indexes the run."""
    try:
        return max(result_mtime_ns, (Path(run_dir) / BENCH_RUN_FILE).stat().st_mtime_ns)
    except OSError:
        return result_mtime_ns


def _int_if(key: str, value: Any) -> Any:
    if key in _INT_COLUMNS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _decode_run(row: sqlite3.Row) -> dict[str, Any]:
    d = {k: _int_if(k, row[k]) for k in row.keys()}
    d["config"] = json.loads(d.pop("config_json"))
    d["environment"] = json.loads(d.pop("environment_json"))
    d["summary"] = json.loads(d.pop("summary_json"))
    d["timing"] = json.loads(d.pop("timing_json"))
    d["classification_report"] = json.loads(d.pop("classification_report_json"))
    d["confusion_matrix"] = json.loads(d.pop("confusion_matrix_json"))
    d["identity"] = json.loads(d.pop("identity_json"))
    d["bench"] = json.loads(d.pop("bench_json") or "{}")
    for key in ("compile", "jit_compile"):
        if d.get(key) is not None:
            d[key] = bool(d[key])
    return d


def _rel(path: Path, root: Path) -> str:
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


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _is_sqlite(path: Path) -> bool:
    """True for an empty file or one that starts with SQLite's header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return head == b"" or head == b"SQLite format 3\x00"


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
    if db.exists() and not _is_sqlite(db):
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
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {STORE_VERSION}")
        conn.execute("SELECT COUNT(*) FROM runs").fetchone()
    except sqlite3.DatabaseError as exc:
        if _is_disk_full(exc, db):
            raise disk_full(db, _WAL_OVERHEAD_BYTES, _DB_KEPT) from None
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
            if _is_disk_full(exc, db):
                raise disk_full(db, _WAL_OVERHEAD_BYTES, _DB_KEPT) from None
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
        if _is_sqlite(db) and db.stat().st_size:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
        else:
            aside = db.with_name(f"{DB_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(db, aside)
            for suffix in ("-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
    with _disk_full_is_one_line(db, kept="every result.json is kept; run the rebuild again once space is freed"):
        conn = _connect(db)
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {STORE_VERSION}")
        store = Store(root, conn)
        store.last_sync = store.sync()
    return store
