"""Everything the report shows, computed once from the results store (never from training).

`build_report_data(root)` opens ROOT/results.sqlite (syncing it with the
result.json files), groups runs by configuration identity (repeats of one
configuration share it), takes medians with min–max, pairs configurations for
speedup and efficiency, and lines our numbers up with the paper's.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.bench.machine import BUSY_CORES
from parallel_vision.models.catalog import model_costs
from parallel_vision.report import paper
from parallel_vision.report.scaling import (
    STRONG,
    WEAK,
    Point,
    ScalingRow,
    Spread,
    scaling_rows,
    spread,
)
from parallel_vision.results.store import open_store, require_runs

FRAMEWORK_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX"}
STRATEGY_NAMES = {"single": "single", "dp": "DataParallel", "ddp": "DDP", "mirrored": "Mirrored",
                  "multiworker": "MultiWorker"}
STAT_KEYS = (
    "mean_epoch_time_excl_warmup_s",
    "mean_epoch_time_s",
    "warmup_epoch_time_s",
    "total_time_s",
    "train_time_s",
    "images_per_s_excl_warmup",
    "images_per_s",
    "test_accuracy",
    "test_loss",
)
#: Identity fields that tell the configurations of one scaling comparison apart; every other field
#: (epochs, data, optimiser, precision, …) is the "family" and must be equal to compare.
_VARYING = ("framework", "strategy", "workers", "batch_size", "threads_per_worker")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


@dataclass
class ConfigGroup:
    """One configuration (one identity) and its repeats."""

    key: str
    runs: list[dict[str, Any]]
    epochs: list[list[dict[str, Any]]]
    label: str = ""
    color: str = "#1f77b4"
    stats: dict[str, Spread | None] = field(default_factory=dict)

    @property
    def first(self) -> dict[str, Any]:
        return self.runs[0]

    @property
    def config(self) -> dict[str, Any]:
        return self.first["config"]

    @property
    def framework(self) -> str:
        return str(self.config["framework"])

    @property
    def strategy(self) -> str:
        return str(self.config["strategy"])

    @property
    def workers(self) -> int:
        return int(self.config["workers"])

    @property
    def model(self) -> str:
        return str(self.config.get("model") or "paper_cnn")  # runs from before the zoo trained the paper's CNN

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset") or "mnist")

    @property
    def workload(self) -> dict[str, Any]:
        """The result's workload block (model FLOPs, gradient bytes); computed from the config for results
        written before the block existed (all of them the paper's CNN on a 28×28 grey dataset)."""
        recorded = self.first.get("workload")
        if recorded:
            return dict(recorded)
        costs = model_costs(self.model, 1, 28, 10)
        return {"model": self.model, "dataset": self.dataset, "parameters": costs.parameters,
                "forward_flops_per_image": costs.forward_flops_per_image,
                "train_flops_per_image": costs.train_flops_per_image, "gradient_bytes": costs.gradient_bytes,
                "accuracy_meaningful": self.dataset != "synthetic"}

    @property
    def accuracy_meaningful(self) -> bool:
        return bool(self.workload.get("accuracy_meaningful", True))

    @property
    def global_batch(self) -> int:
        return int(self.config["batch_size"])

    @property
    def per_worker_batch(self) -> int:
        return self.global_batch // self.workers

    @property
    def threads(self) -> float | None:
        values = [r["threads_per_replica"] for r in self.runs if r.get("threads_per_replica") is not None]
        return statistics.median(values) if values else None

    @property
    def process_threads(self) -> int | None:
        values = [r["process_threads"] for r in self.runs if r.get("process_threads") is not None]
        return int(statistics.median(values)) if values else None

    @property
    def role(self) -> str:
        return str((self.config.get("extra") or {}).get("role") or "")

    @property
    def protocol(self) -> str:
        return str((self.config.get("extra") or {}).get("protocol") or "")

    @property
    def optimizer_text(self) -> str:
        c = self.config
        if c["optimizer"] == "sgd":
            return f"SGD {c['lr']:g}" + (f", m {c['momentum']:g}" if c.get("momentum") else "")
        return f"Adam {c['lr']:g}"

    @property
    def init(self) -> str:
        """`framework` (each framework's default weight init and Adam epsilon; runs from before the field
        existed) or `aligned` (the same initial weights and optimiser constants in every engine)."""
        return str(self.config.get("init") or "framework")

    @property
    def repeats(self) -> int:
        return len(self.runs)

    @property
    def n_test(self) -> int:
        return int(self.first["summary"].get("n_test_evaluated") or 0)

    @property
    def n_train(self) -> int:
        return int(self.first["summary"].get("n_train") or 0)

    @property
    def family(self) -> tuple[Any, ...]:
        ident = self.first["identity"]
        return tuple(sorted((k, json.dumps(v)) for k, v in ident.items() if k not in _VARYING))

    def curve(self, key: str) -> list[float | None]:
        """Median over repeats of `key` per epoch (epochs every repeat completed)."""
        length = min(len(e) for e in self.epochs)
        out = []
        for i in range(length):
            vals = [e[i][key] for e in self.epochs if e[i].get(key) is not None]
            out.append(statistics.median(vals) if vals else None)
        return out

    def time_split(self) -> dict[str, float | None]:
        """Median over repeats of the mean per-epoch data / compute / comm seconds, warm-up excluded."""
        parts: dict[str, list[float]] = {"data_time_s": [], "compute_time_s": [], "comm_time_s": [],
                                         "epoch_time_s": []}
        comm_missing = False
        for records in self.epochs:
            steady = records[1:] or records
            for key in parts:
                vals = [r.get(key) for r in steady]
                if any(v is None for v in vals):
                    if key == "comm_time_s":
                        comm_missing = True
                    continue
                parts[key].append(sum(vals) / len(vals))
        out: dict[str, float | None] = {k: (statistics.median(v) if v else None) for k, v in parts.items()}
        if comm_missing:
            out["comm_time_s"] = None
        return out


@dataclass
class ReportData:
    root: Path
    generated_at: str
    groups: list[ConfigGroup]
    skipped: list[dict[str, Any]]
    incomplete: list[dict[str, Any]]
    superseded: list[dict[str, Any]]
    strong: list[ScalingRow]
    weak: list[ScalingRow]
    environment: dict[str, Any]
    manifest: dict[str, Any] | None
    warnings: list[str]
    paper_rows: list[dict[str, Any]]
    paper_checks: list[dict[str, Any]]
    protocol_rows: list[dict[str, Any]]
    peak_gflops: float | None = None
    """A declared peak per worker (GFLOP/s) for model FLOPs utilisation; None: MFU is not shown."""

    def group(self, key: str) -> ConfigGroup:
        for g in self.groups:
            if g.key == key:
                return g
        raise KeyError(key)

    @property
    def frameworks(self) -> list[str]:
        return sorted({g.framework for g in self.groups}, key=_framework_order)


def _framework_order(fw: str) -> int:
    return {"torch": 0, "tensorflow": 1, "jax": 2}.get(fw, 3)


def _label_groups(groups: list[ConfigGroup]) -> None:
    """Labels that show what distinguishes configurations: batch, threads, optimiser only when they vary."""
    batches = {g.global_batch for g in groups}
    threads = {g.threads for g in groups}
    opts = {g.optimizer_text for g in groups}
    epochs = {g.config["epochs"] for g in groups}
    data = {(g.n_train, g.n_test) for g in groups}
    inits = {g.init for g in groups}
    models = {g.model for g in groups}
    datasets = {g.dataset for g in groups}
    for i, g in enumerate(groups):
        name = f"{FRAMEWORK_NAMES.get(g.framework, g.framework)} {STRATEGY_NAMES.get(g.strategy, g.strategy)}"
        parts = [f"{name} ×{g.workers}"]
        if len(models) > 1 or len(datasets) > 1:
            parts.insert(0, g.model if len(datasets) == 1 else f"{g.model} on {g.dataset}")
        if len(batches) > 1:
            parts.append(f"b{g.global_batch}")
        if len(threads) > 1 and g.threads is not None:
            parts.append(f"{g.threads:g} thr/worker")
        if len(opts) > 1:
            parts.append(g.optimizer_text)
        if len(epochs) > 1:
            parts.append(f"{g.config['epochs']} ep")
        if len(data) > 1:
            parts.append(f"{g.n_train} train")
        if len(inits) > 1:
            parts.append(f"{g.init} init")
        g.label = " · ".join(parts)
        g.color = PALETTE[i % len(PALETTE)]


def _sort_key(g: ConfigGroup) -> tuple[Any, ...]:
    return (g.model != "paper_cnn", g.model, g.dataset, _framework_order(g.framework), g.role == "reference",
            g.workers, g.strategy, g.global_batch,
            -(g.threads or 0), g.optimizer_text)


def _environment(groups: list[ConfigGroup]) -> dict[str, Any]:
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


def _point(g: ConfigGroup) -> Point | None:
    t, x = g.stats.get("mean_epoch_time_excl_warmup_s"), g.stats.get("images_per_s_excl_warmup")
    if t is None or x is None:
        return None
    target, missed = target_stats(g)
    return Point(key=g.key, label=g.label, framework=g.framework, strategy=g.strategy, workers=g.workers,
                 global_batch=g.global_batch, per_worker_batch=g.per_worker_batch, threads=g.threads,
                 family=g.family, time=t, throughput=x, target=target, target_missed=missed)


def target_stats(g: ConfigGroup) -> tuple[Spread | None, int | None]:
    """Time to target over the repeats that reached it, and how many never did (None: no target declared)."""
    summaries = [r["summary"] for r in g.runs if "target_reached" in r["summary"]]
    if not summaries:
        return None, None
    reached = [s["time_to_target_s"] for s in summaries if s.get("target_reached")]
    return spread(reached), len(summaries) - len(reached)


def _paper_rows(groups: list[ConfigGroup], strong: list[ScalingRow]) -> list[dict[str, Any]]:
    rows = []
    for pc in paper.configurations():
        ours = [g for g in groups if g.framework == pc["framework"] and g.strategy == pc["strategy"]
                and g.workers == pc["workers"]]
        # Prefer the scaling series (same threads per worker) over the all-cores reference.
        ours.sort(key=lambda g: (g.role == "reference", g.optimizer_text != _paper_optimizer_text(pc, g)))
        matches = []
        for g in ours:
            srow = next((r for r in strong if r.point.key == g.key), None)
            total_eff = None
            if srow is not None:
                base_total = srow.baseline.key
                bt = next(x for x in groups if x.key == base_total).stats.get("total_time_s")
                nt = g.stats.get("total_time_s")
                if bt and nt:
                    total_eff = 100.0 * bt.median / (g.workers * nt.median)
            matches.append({"group": g, "scaling": srow, "total_time_efficiency_pct": total_eff})
        rows.append({"paper": pc, "ours": matches})
    return rows


def _paper_optimizer_text(pc: dict[str, Any], g: ConfigGroup) -> str:
    return g.optimizer_text if g.config["optimizer"] == pc["optimizer"] else "?"


def _protocol_rows(groups: list[ConfigGroup]) -> list[dict[str, Any]]:
    """Pairs of configurations that differ only in the optimiser: what the paper's protocol changes."""
    rows = []
    for g in groups:
        if g.config["optimizer"] != "sgd":
            continue
        for h in groups:
            if h.config["optimizer"] == "adam" and _without_optimiser(h) == _without_optimiser(g):
                rows.append({"sgd": g, "adam": h})
    return rows


def _without_optimiser(g: ConfigGroup) -> dict[str, Any]:
    return {k: v for k, v in g.first["identity"].items() if k not in ("optimizer", "lr", "momentum")}


def _manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "bench.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def build_report_data(root: str | Path, peak_gflops: float | None = None) -> ReportData:
    root = Path(root)
    with open_store(root) as store:
        require_runs(store)
        runs = store.runs()
        epochs = {r["run_id"]: store.epochs(r["run_id"]) for r in runs}
        skipped = store.skipped()
        incomplete = store.runs(status="incomplete")
        unreadable = list(store.last_sync.unreadable) if store.last_sync else []

    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_key.setdefault(r["identity_hash"], []).append(r)
    groups = []
    superseded: list[dict[str, Any]] = []
    for key, members in by_key.items():
        # A code change makes older measurements of the same configuration stale (the bench re-runs
        # them): report the newest code version's runs, list the others as superseded.
        newest = max(members, key=lambda r: r.get("created_at") or "").get("code_version")
        superseded += [r for r in members if r.get("code_version") != newest]
        members = [r for r in members if r.get("code_version") == newest]
        members.sort(key=lambda r: (r.get("repeat") or 0, r.get("created_at") or ""))
        g = ConfigGroup(key=key, runs=members, epochs=[epochs[r["run_id"]] for r in members])
        g.stats = {k: spread(r["summary"].get(k) for r in members) for k in STAT_KEYS}
        groups.append(g)
    groups.sort(key=_sort_key)
    _label_groups(groups)

    points = [p for p in (_point(g) for g in groups) if p is not None]
    strong = scaling_rows(points, STRONG)
    weak = scaling_rows(points, WEAK)

    warnings: list[str] = []
    codes = sorted({str(r.get("code_version")) for g in groups for r in g.runs})
    if len(codes) > 1:
        warnings.append(f"the configurations were measured with {len(codes)} code versions "
                        f"({', '.join(codes)}); see the code version of each run under 'All runs'")
    if superseded:
        warnings.append(f"{len(superseded)} older run(s) of the same configurations, from earlier code "
                        "versions, are left out (listed under 'All runs' as superseded)")

    for g in groups:
        for r in g.runs:
            others = r.get("other_cores")
            if others is not None and others >= BUSY_CORES:
                warnings.append(f"{r['name']}: other processes on this machine used {others:.2f} cores on "
                                "average while it trained; its timing may be skewed")
        if g.config["epochs"] < 2:
            warnings.append(f"{g.label}: a single epoch, so its steady epoch time includes the warm-up")
    manifest = _manifest(root)
    if manifest:
        measured = {r["path"] for g in groups for r in g.runs if r.get("other_cores") is not None}
        used = {r["path"] for g in groups for r in g.runs}
        for entry in manifest.get("runs", []):
            folder = entry.get("folder")
            if folder not in used or folder in measured:
                continue  # not reported, or its own bench_run.json says how busy the machine was
            others = entry.get("other_cores")
            if others is not None and others >= BUSY_CORES:  # runs from before bench_run.json existed
                warnings.append(f"{entry['name']}: other processes on this machine used {others:.2f} cores on "
                                "average while it trained; its timing may be skewed")
            elif entry.get("other_engines"):  # benches before the whole-machine meter
                warnings.append(f"{entry['name']}: other engine processes ran on this machine during the run "
                                f"(pids {entry['other_engines']}); its timing may be skewed")
        if manifest.get("status") != "complete":
            warnings.append(f"the last bench is {manifest.get('status')}: not every planned run finished")
    for row in strong + weak:
        if not row.same_threads:
            warnings.append(
                f"{row.point.label}: no 1-worker run with the same threads per worker "
                f"({row.point.threads:g}); the {row.mode} baseline uses {row.baseline.threads:g} threads"
                if row.point.threads is not None and row.baseline.threads is not None else
                f"{row.point.label}: the baseline's threads per worker are unknown")
    warnings += [f"unreadable: {u}" for u in unreadable]

    return ReportData(
        root=root,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        groups=groups,
        skipped=skipped,
        incomplete=incomplete,
        superseded=superseded,
        strong=strong,
        weak=weak,
        environment=_environment(groups),
        manifest=manifest,
        warnings=warnings,
        paper_rows=_paper_rows(groups, strong),
        paper_checks=paper.published_scaling_checks(),
        protocol_rows=_protocol_rows(groups),
        peak_gflops=peak_gflops,
    )
