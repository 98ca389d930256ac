"""ROOT/explain/compare.json: written by `pvision explain ROOT` (compare.py), read by the report (without the
explain machinery, which starts framework children)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COMPARE_FILE = "compare.json"
COMPARE_VERSION = 1


def read_compare(root: str | Path) -> dict[str, Any] | None:
    """ROOT/explain/compare.json, or None (none, unreadable, or not a comparison)."""
    try:
        doc = json.loads((Path(root) / "explain" / COMPARE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "explain-compare" else None
