"""Reports across machines: several bench ROOTs read where they are, one machine each.

`build_machines_data(roots)` builds each ROOT's own `ReportData` (report/data.py: its groups, and its speedup
and efficiency against that ROOT's own 1-worker baseline: never a speedup across machines), labels each ROOT
with the machine its runs were measured on (from the provenance stored in result.json) and lines the same
configuration up across machines: the throughput ratio against the first ROOT that has it, and the time to the
target accuracy where one was recorded. Nothing is copied: the report names each run's result.json where it is.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.errors import ConfigError
from parallel_vision.report.data import ReportData, build_report_data
from parallel_vision.report.groups import ConfigGroup, target_stats
from parallel_vision.report.scaling import ScalingRow, Spread, ratio_spread

#: Identity fields that are a machine's choice, not the configuration's: left out when the same configuration
#: is matched across machines (a laptop's 4 threads per worker and a server's 16 are the same experiment).
MACHINE_FIELDS = ("threads_per_worker", "pin_threads")


@dataclass
class Machine:
    """One ROOT: the machine its runs were measured on, and its own report data."""

    root: Path
    label: str
    """Short and stable: the host and its hardware in brief, plus the ROOT's name when two ROOTs share both."""
    host: str
    hardware: str
    """CPU model and cores; the GPUs when there are any."""
    code_versions: list[str]
    data: ReportData
    other_hosts: list[str]
    """Hosts other than `host` that some of this ROOT's runs name (a multi-node run, or a mixed ROOT)."""

    def scaling(self, g: ConfigGroup) -> list[ScalingRow]:
        """This machine's strong/weak rows for configuration `g` (each against this machine's 1-worker run)."""
        return [r for r in self.data.strong + self.data.weak if r.point.key == g.key]


@dataclass
class CrossEntry:
    machine: Machine
    group: ConfigGroup
    throughput_ratio: Spread | None
    """X on this machine ÷ X on the reference machine (the first ROOT that has the configuration)."""
    target: Spread | None
    target_missed: int | None
    target_ratio: Spread | None
    """Time to target on the reference machine ÷ on this one (> 1: this machine gets there sooner)."""


@dataclass
class CrossRow:
    """One configuration measured on two or more machines."""

    label: str
    entries: list[CrossEntry]

    @property
    def reference(self) -> CrossEntry:
        return self.entries[0]


@dataclass
class MachinesData:
    machines: list[Machine]
    cross: list[CrossRow]
    generated_at: str
    warnings: list[str]


def match_key(g: ConfigGroup) -> str:
    """The configuration's identity without the fields a machine chooses (threads per worker)."""
    ident = {k: v for k, v in g.first["identity"].items() if k not in MACHINE_FIELDS}
    return json.dumps(ident, sort_keys=True)


def _short_gpu(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' → 'H100 80GB HBM3'."""
    return re.sub(r"^(NVIDIA|AMD)\s+(GeForce\s+)?", "", name.strip()) or name


def _short_cpu(model: str) -> str:
    """'11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz' → '11th Gen Intel Core i7-1165G7'."""
    text = re.sub(r"\((R|TM|r|tm)\)", "", model)
    text = re.sub(r"\s*@.*$", "", text)
    text = re.sub(r"\s+(CPU|Processor)\b", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _most_common(values: list[Any]) -> Any:
    values = [v for v in values if v not in (None, "", [])]
    return Counter(values).most_common(1)[0][0] if values else None


def describe(runs: list[dict[str, Any]]) -> tuple[str, str, str, list[str]]:
    """(host, hardware in brief, hardware in full, other hosts) of a ROOT's runs, from their environment."""
    envs = [r.get("environment") or {} for r in runs]
    hosts = [str(e["host"]) for e in envs if e.get("host")]
    host = _most_common(hosts) or "unknown host"
    short_host = host.split(".")[0]
    mine = [e for e in envs if (e.get("host") or "unknown host") == host] or envs
    cpu = _most_common([e.get("cpu_model") for e in mine]) or "unknown CPU"
    cores = _most_common([e.get("logical_cores") for e in mine])
    gpus = _most_common([tuple(str(x) for x in (e.get("gpus") or [])) for e in mine]) or ()
    core_text = f"{cores} cores" if cores else "cores unknown"
    if gpus:
        kinds = Counter(_short_gpu(x) for x in gpus)
        gpu_text = ", ".join(f"{n}× {name}" for name, n in kinds.items())
        brief = gpu_text
    else:
        gpu_text = "no GPU"
        brief = f"{core_text}, CPU"
    full = f"{_short_cpu(cpu)}, {core_text}; {gpu_text}"
    return short_host, brief, full, sorted(set(hosts) - {host})


def label_machines(described: list[tuple[str, str, Path]]) -> list[str]:
    """One label per ROOT from (host, hardware in brief, root): 'host (hardware)'; two ROOTs of the same
    machine are told apart by the ROOT's folder name (and its parent's, then its position, if those agree)."""
    labels = [f"{host} ({brief})" for host, brief, _ in described]
    for attempt in ("name", "parent", "index"):
        counts = Counter(labels)
        if all(n == 1 for n in counts.values()):
            break
        base = [f"{host} ({brief})" for host, brief, _ in described]
        for i, (_, _, root) in enumerate(described):
            if counts[labels[i]] > 1:
                tail = {"name": root.name, "parent": f"{root.parent.name}/{root.name}",
                        "index": f"{root.name} #{i + 1}"}[attempt]
                labels[i] = f"{base[i]} · {tail}"
    return labels


def _code_versions(data: ReportData) -> list[str]:
    return [k for k, _ in Counter(r.get("code_version") or "unknown"
                                  for g in data.groups for r in g.runs).most_common()]


def _cross_rows(machines: list[Machine]) -> list[CrossRow]:
    order: list[str] = []
    found: dict[str, list[tuple[Machine, ConfigGroup]]] = {}
    for m in machines:
        for g in m.data.groups:
            key = match_key(g)
            if key not in found:
                order.append(key)
            found.setdefault(key, []).append((m, g))
    rows = []
    for key in order:
        pairs = found[key]
        if len({id(m) for m, _ in pairs}) < 2:
            continue
        ref_m, ref = pairs[0]
        x_ref = ref.stats.get("images_per_s_excl_warmup")
        t_ref, _ = target_stats(ref)
        entries = []
        for m, g in pairs:
            x = g.stats.get("images_per_s_excl_warmup")
            target, missed = target_stats(g)
            reached = target is not None and not missed
            ref_reached = t_ref is not None and not target_stats(ref)[1]
            entries.append(CrossEntry(
                machine=m, group=g,
                throughput_ratio=ratio_spread(x, x_ref) if x and x_ref else None,
                target=target, target_missed=missed,
                target_ratio=ratio_spread(t_ref, target) if reached and ref_reached and t_ref and target else None,
            ))
        rows.append(CrossRow(label=ref.label, entries=entries))
    return rows


def build_machines_data(roots: list[Path], peak_gflops: float | None = None) -> MachinesData:
    """Each ROOT's own report data, its machine label, and the configurations measured on several machines."""
    seen: dict[Path, Path] = {}
    for root in roots:
        resolved = Path(root).resolve()
        if resolved in seen:
            raise ConfigError(f"{root}: the same ROOT is given twice (as {seen[resolved]} too)")
        seen[resolved] = Path(root)
    datas = [build_report_data(root, peak_gflops) for root in roots]  # a missing/empty ROOT: one line naming it
    described = [describe([r for g in d.groups for r in g.runs]) for d in datas]
    labels = label_machines([(host, brief, Path(root))
                             for (host, brief, _, _), root in zip(described, roots, strict=True)])
    machines = [Machine(root=Path(root), label=label, host=host, hardware=full, code_versions=_code_versions(d),
                        data=d, other_hosts=others)
                for root, d, label, (host, _, full, others) in zip(roots, datas, labels, described, strict=True)]
    warnings = []
    for m in machines:
        if m.other_hosts:
            warnings.append(f"{m.label}: some runs of {m.root} name other hosts too ({', '.join(m.other_hosts)}); "
                            "they are reported with this machine")
        warnings += [f"{m.label}: {w}" for w in m.data.warnings]
    return MachinesData(machines=machines, cross=_cross_rows(machines),
                        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), warnings=warnings)
