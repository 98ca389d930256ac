"""linktest.json: an all-reduce sweep's measurements and its fit t(S) = a + S/B (framework-free part).

The sweep itself runs in `engines/torch/linktest.py` (an engine-like process: it imports torch); this
module decides the sizes, writes and reads the record, and turns it into a `Link`.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.errors import ResultsError
from parallel_vision.projection.model import AllReduceFit, Link, fit_allreduce

LINKTEST_FILE = "linktest.json"
LINKTEST_VERSION = 1
MIN_BYTES = 4 * 1024
MAX_BYTES = 64 * 1024 * 1024


def sweep_sizes(min_bytes: int = MIN_BYTES, max_bytes: int = MAX_BYTES, factor: int = 4) -> list[int]:
    """4 KB, 16 KB, … up to max_bytes (multiples of 4 bytes: fp32 elements)."""
    sizes, s = [], max(4, min_bytes)
    while s <= max_bytes:
        sizes.append(s - s % 4)
        s *= factor
    return sizes


def make_record(samples: dict[int, list[float]], *, backend: str, device: str, world_size: int, nodes: int,
                processes_per_node: int, host: str, created_at: str, label: str | None = None,
                stopped_at: int | None = None) -> dict[str, Any]:
    points = [{"bytes": s, "seconds": statistics.median(ts), "samples": ts} for s, ts in sorted(samples.items())]
    fit = fit_allreduce([(p["bytes"], p["seconds"]) for p in points], world_size)
    link = fit.link("linktest", f"pvision linktest, {backend}, {world_size} ranks on {nodes} node(s)")
    return {
        "kind": "linktest", "version": LINKTEST_VERSION, "created_at": created_at, "host": host,
        "label": label, "backend": backend, "device": device, "world_size": world_size, "nodes": nodes,
        "processes_per_node": processes_per_node, "points": points,
        "stopped_before_bytes": stopped_at, "fit": fit.as_dict(), "link": link.as_dict(),
    }


def write_record(record: dict[str, Any], root: str | os.PathLike[str]) -> Path:
    path = Path(root) / LINKTEST_FILE
    Path(root).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode())
    return path


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / LINKTEST_FILE
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("kind") != "linktest" or not data.get("points"):
        raise ResultsError(f"{path}: not a linktest record")
    return data


def fit_of(record: dict[str, Any]) -> AllReduceFit:
    return fit_allreduce([(p["bytes"], p["seconds"]) for p in record["points"]], int(record["world_size"]))


def link_of(record: dict[str, Any], name: str = "linktest") -> Link:
    where = f"{record.get('backend')}, {record.get('world_size')} ranks on {record.get('nodes')} node(s)"
    return fit_of(record).link(name, f"pvision linktest ({where}, {record.get('created_at')})")
