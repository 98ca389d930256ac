"""Link presets (links.json, each number with its source) and the links a projection can use.

A preset is a vendor line rate or peak times a stated efficiency: the bus bandwidth an all-reduce
really reaches is lower, so a `pvision linktest` over the real link beats any preset.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from parallel_vision.errors import ConfigError
from parallel_vision.projection.model import Link

PRESETS_FILE = Path(__file__).with_name("links.json")


@lru_cache(maxsize=1)
def presets() -> dict[str, dict[str, Any]]:
    return dict(json.loads(PRESETS_FILE.read_text())["links"])


def preset(name: str) -> Link:
    table = presets()
    key = name.lower().replace("-", "").replace(" ", "")
    aliases = {k.replace("_", ""): k for k in table}
    found = table.get(key) or table.get(aliases.get(key.replace("_", ""), ""))
    if found is None:
        raise ConfigError(f"unknown link {name!r}; choose one of {', '.join(table)} "
                          "or give --bandwidth-gbps and --latency-us")
    return Link(key if key in table else aliases[key.replace("_", "")], found["bandwidth_GBps"] * 1e9,
                found["latency_us"] * 1e-6, found["source"])


def custom(bandwidth_gbps: float, latency_us: float) -> Link:
    if not bandwidth_gbps > 0 or not latency_us >= 0:
        raise ConfigError(f"--bandwidth-gbps must be > 0 and --latency-us ≥ 0; got {bandwidth_gbps}, {latency_us}")
    return Link(f"{bandwidth_gbps:g} Gb/s, {latency_us:g} us", bandwidth_gbps * 1e9 / 8, latency_us * 1e-6,
                "given on the command line")


def presets_markdown() -> str:
    """The presets table of docs/projection.md."""
    rows = ["| name | link | bandwidth each way (GB/s) | latency (µs) | source |", "|---|---|---:|---:|---|"]
    for name, p in presets().items():
        rows.append(f"| `{name}` | {p['label']} | {p['bandwidth_GBps']:g} | {p['latency_us']:g} | {p['source']} |")
    return "\n".join(rows) + "\n"
