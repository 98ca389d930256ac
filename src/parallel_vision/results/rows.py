"""How a RunResult becomes rows of the results database, and back: the table layout and the codecs.

The columns copy what the report filters and sorts on (config fields, the required summary
keys, per-epoch numbers); everything else stays in JSON columns. Bump STORE_VERSION when the
layout changes: an older database is then rebuilt from the JSON files.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from parallel_vision.config import RunConfig
from parallel_vision.results.schema import EPOCH_KEYS, REQUIRED_SUMMARY_KEYS

#: Bump when the table layout changes: an older database is then rebuilt from the JSON.
STORE_VERSION = 3

#: Summary fields copied into their own columns (the rest stays in summary_json): every complete result has them.
SUMMARY_COLUMNS = REQUIRED_SUMMARY_KEYS
#: Config fields copied into their own columns.
CONFIG_COLUMNS = (
    "framework",
    "strategy",
    "model",
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

TEXT_CONFIG_COLUMNS = (
    "framework", "strategy", "model", "optimizer", "dataset", "device", "precision", "memory_format",
)
CONFIG_DDL = ",\n    ".join(f"{c} {'TEXT' if c in TEXT_CONFIG_COLUMNS else 'REAL'}" for c in CONFIG_COLUMNS)
SUMMARY_DDL = ",\n    ".join(f"{c} REAL" for c in SUMMARY_COLUMNS)
EPOCH_DDL = ",\n    ".join(f"{k} REAL" for k in EPOCH_KEYS)
SCHEMA = """
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
    workload_json TEXT,
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
CREATE TABLE IF NOT EXISTS linktests (
    path TEXT PRIMARY KEY,
    backend TEXT,
    world_size INTEGER,
    nodes INTEGER,
    label TEXT,
    created_at TEXT,
    a_s REAL,
    bandwidth_Bps REAL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_identity ON runs(identity_hash, code_version);
""".replace("@CONFIG@", CONFIG_DDL).replace("@SUMMARY@", SUMMARY_DDL).replace("@EPOCH@", EPOCH_DDL)

INT_COLUMNS = {"workers", "epochs", "batch_size", "seed", "limit_train", "limit_test", "threads_per_worker",
                "n_test_evaluated", "epochs_completed", "world_size", "global_batch", "per_worker_batch",
                "steps_per_epoch", "n_train", "epoch", "n_train_images"}


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


def num(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def int_if(key: str, value: Any) -> Any:
    if key in INT_COLUMNS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def decode_run(row: sqlite3.Row) -> dict[str, Any]:
    d = {k: int_if(k, row[k]) for k in row.keys()}
    d["config"] = json.loads(d.pop("config_json"))
    d["environment"] = json.loads(d.pop("environment_json"))
    d["summary"] = json.loads(d.pop("summary_json"))
    d["timing"] = json.loads(d.pop("timing_json"))
    d["workload"] = json.loads(d.pop("workload_json") or "{}")
    d["classification_report"] = json.loads(d.pop("classification_report_json"))
    d["confusion_matrix"] = json.loads(d.pop("confusion_matrix_json"))
    d["identity"] = json.loads(d.pop("identity_json"))
    d["bench"] = json.loads(d.pop("bench_json") or "{}")
    for key in ("compile", "jit_compile"):
        if d.get(key) is not None:
            d[key] = bool(d[key])
    return d
