"""What a bench ROOT holds for each planned run: its folder, its finished result, or why it was skipped.

A run already finished for the same configuration identity, code version and repeat is reused;
a folder without a complete result.json (a crash, Ctrl-C) is deleted and run again; a finished
run of another configuration or code version is never touched. Configurations that cannot run
here are recorded in ROOT/skipped/<name>.json with the reason, for the report.
"""

from __future__ import annotations

import json
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.bench.matrix import PlannedRun
from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError, PVisionError
from parallel_vision.results.schema import RESULT_FILE
from parallel_vision.results.store import SKIPPED_DIR, Store, identity_hash


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def complete_result(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("status") == "complete" else None


def same_run(data: dict[str, Any], cfg: RunConfig, code_version: str | None, repeat: int) -> bool:
    try:
        same_identity = identity_hash(data["config"]) == identity_hash(cfg)
    except (PVisionError, KeyError, TypeError):
        return False
    extra = data["config"].get("extra") or {}
    return (same_identity and (data.get("environment") or {}).get("code_version") == code_version
            and extra.get("repeat", 1) == repeat)


def run_folder(root: Path, planned: PlannedRun, code_version: str | None) -> tuple[Path, bool]:
    """The folder for this run and whether it already holds it, finished.

    A folder with a complete result of another config or code version is never
    touched: the run goes to `<name>-r<k>-2`, `-3`, …. A folder without a
    complete result (a run that was interrupted or crashed) is deleted.
    """
    assert planned.cfg is not None
    base = root / "runs" / planned.run_name
    for suffix in range(1, 1000):
        folder = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
        if not folder.exists():
            return folder, False
        data = complete_result(folder)
        if data is None:
            shutil.rmtree(folder)
            return folder, False
        if same_run(data, planned.cfg, code_version, planned.repeat):
            return folder, True
    raise ConfigError(f"too many runs named {planned.run_name} under {root / 'runs'}")


def write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def skip_record(planned: PlannedRun, reason: str, kind: str, code_version: str | None) -> dict[str, Any]:
    cfg = planned.cfg.to_dict() if planned.cfg is not None else dict(planned.describe)
    return {
        "name": planned.name,
        "kind": kind,
        "reason": reason,
        "config": cfg,
        "identity_hash": identity_hash(planned.cfg) if planned.cfg is not None else None,
        "code_version": code_version,
        "host": socket.gethostname(),
        "recorded_at": now(),
    }


def record_skip(store: Store, root: Path, record: dict[str, Any]) -> None:
    path = root / SKIPPED_DIR / f"{record['name']}.json"
    write_json(path, record)
    store.insert_skip(record, path)


def known_skip(root: Path, planned: PlannedRun, code: str | None, host: str) -> str | None:
    """The reason recorded when this same configuration could not run here with this code, if any."""
    try:
        record = json.loads((root / SKIPPED_DIR / f"{planned.name}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if planned.cfg is None or record.get("kind") != "skipped":
        return None  # failures are retried; impossible configs are re-derived from the matrix
    same = (record.get("identity_hash") == identity_hash(planned.cfg) and record.get("code_version") == code
            and record.get("host") == host)
    return str(record.get("reason")) if same else None


def clear_skip(store: Store, root: Path, name: str) -> None:
    (root / SKIPPED_DIR / f"{name}.json").unlink(missing_ok=True)
    store.delete_skip(name)
