"""Where and with what the runs were measured: hosts, CPUs, packages, devices, code versions, dates."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from parallel_vision.report.groups import FRAMEWORK_NAMES, ConfigGroup


def environment(groups: list[ConfigGroup]) -> dict[str, Any]:
    """The environment block of the report: each field over every reported run, distinct values joined."""
    runs = [r for g in groups for r in g.runs]
    envs = [r["environment"] for r in runs]

    def values(key: str) -> list[Any]:
        return sorted({json.dumps(e.get(key), sort_keys=True) for e in envs if e.get(key) is not None})

    def plain(key: str) -> str:
        vals = [json.loads(v) for v in values(key)]
        return ", ".join(str(v) for v in vals) if vals else "—"

    packages: dict[str, set[str]] = {}
    for e in envs:
        for name, version in (e.get("packages") or {}).items():
            if version:
                packages.setdefault(name, set()).add(version)
    for e in envs:
        if e.get("torch_version"):
            packages.setdefault("torch (runtime)", set()).add(e["torch_version"])
        if e.get("tf_version"):
            packages.setdefault("tensorflow (runtime)", set()).add(e["tf_version"])
        if e.get("keras_version"):
            packages.setdefault("keras (runtime)", set()).add(e["keras_version"])
    devices: dict[str, set[str]] = {}
    for r in runs:
        e = r["environment"]
        fw = FRAMEWORK_NAMES.get(r["framework"], r["framework"])
        gpus = e.get("gpus") or []
        if gpus:
            devices.setdefault(fw, set()).update(str(x) for x in gpus)
        elif e.get("device"):
            devices.setdefault(fw, set()).add(str(e["device"]))
        for d in e.get("devices") or []:
            devices.setdefault(fw, set()).add(str(d))
    created = sorted(r["created_at"] for r in runs if r.get("created_at"))
    codes = Counter(r.get("code_version") or "unknown" for r in runs)
    commits = sorted({(r["environment"].get("git") or {}).get("commit") or "unknown" for r in runs})
    return {
        "host": plain("host"),
        "cpu_model": plain("cpu_model"),
        "cpu_flags": " ".join(sorted({f for e in envs for f in (e.get("cpu_flags") or [])})) or "—",
        "logical_cores": plain("logical_cores"),
        "usable_cores": plain("usable_cores"),
        "memory_gib": plain("memory_gib"),
        "platform": plain("platform"),
        "python": plain("python"),
        "packages": {k: ", ".join(sorted(v)) for k, v in sorted(packages.items())},
        "devices": {k: ", ".join(sorted(v)) for k, v in devices.items()},
        "code_versions": dict(codes),
        "commits": commits,
        "first_run": created[0] if created else None,
        "last_run": created[-1] if created else None,
        "runs": len(runs),
        "configurations": len(groups),
        "repeats": sorted({g.repeats for g in groups}),
        "datasets": sorted({g.config["dataset"] for g in groups}),
    }
