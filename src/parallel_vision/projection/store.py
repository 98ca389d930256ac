"""projection.json in a ROOT: written atomically by `pvision project`, read by the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes

PROJECTION_FILE = "projection.json"
PROJECTION_VERSION = 1


def write_projection(doc: dict[str, Any], root: str | Path) -> Path:
    path = Path(root) / PROJECTION_FILE
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
    return path


def read_projection(root: str | Path) -> dict[str, Any] | None:
    """ROOT/projection.json, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads((Path(root) / PROJECTION_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "projection" else None
