"""One configuration and its repeats: how runs are grouped, labelled, ordered and summarised.

A `ConfigGroup` holds the runs of one configuration from the newest code version: the runs of one identity, the
seed aside (`pvision bench --seeds`: a seed is a replicate of the configuration, so its spread counts seed
variation as well as timing noise); `group_runs` builds them from the store's rows, superseded runs aside.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from parallel_vision import strategies
from parallel_vision.models.catalog import model_costs
from parallel_vision.report.scaling import Spread, spread
from parallel_vision.results.store import identity_hash

FRAMEWORK_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX"}
STRATEGY_NAMES = strategies.titles()
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
    def seeds(self) -> list[int]:
        """The seeds of its runs (one unless the bench ran --seeds)."""
        return sorted({int(r["config"].get("seed") or 0) for r in self.runs})

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


def framework_order(fw: str) -> int:
    return {"torch": 0, "tensorflow": 1, "jax": 2}.get(fw, 3)


def group_runs(
    runs: list[dict[str, Any]], epochs: dict[str, list[dict[str, Any]]]
) -> tuple[list[ConfigGroup], list[dict[str, Any]]]:
    """The configurations of `runs` (by identity), sorted and labelled, and the superseded runs left out."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_key.setdefault(configuration_key(r), []).append(r)
    groups = []
    superseded: list[dict[str, Any]] = []
    for key, members in by_key.items():
        # A code change makes older measurements of the same configuration stale (the bench re-runs
        # them): report the newest code version's runs, list the others as superseded.
        newest = max(members, key=lambda r: r.get("created_at") or "").get("code_version")
        superseded += [r for r in members if r.get("code_version") != newest]
        members = [r for r in members if r.get("code_version") == newest]
        members.sort(key=lambda r: (r["config"].get("seed") or 0, r.get("repeat") or 0, r.get("created_at") or ""))
        g = ConfigGroup(key=key, runs=members, epochs=[epochs[r["run_id"]] for r in members])
        g.stats = {k: spread(r["summary"].get(k) for r in members) for k in STAT_KEYS}
        groups.append(g)
    groups.sort(key=_sort_key)
    _label_groups(groups)
    return groups, superseded


def configuration_key(run: dict[str, Any]) -> str:
    """The run's identity with the seed left out: runs that differ only by seed are one configuration."""
    if not run["config"].get("seed"):
        return str(run["identity_hash"])
    try:
        return identity_hash({**run["config"], "seed": 0})
    except Exception:  # a config this version cannot read back: the run stays a configuration of its own
        return str(run["identity_hash"])


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
        if len(g.seeds) > 1:
            parts.append(f"{len(g.seeds)} seeds")
        g.label = " · ".join(parts)
        g.color = PALETTE[i % len(PALETTE)]


def _sort_key(g: ConfigGroup) -> tuple[Any, ...]:
    return (g.model != "paper_cnn", g.model, g.dataset, framework_order(g.framework), g.role == "reference",
            g.workers, g.strategy, g.global_batch,
            -(g.threads or 0), g.optimizer_text)


def target_stats(g: ConfigGroup) -> tuple[Spread | None, int | None]:
    """Time to target over the repeats that reached it, and how many never did (None: no target declared)."""
    summaries = [r["summary"] for r in g.runs if "target_reached" in r["summary"]]
    if not summaries:
        return None, None
    reached = [s["time_to_target_s"] for s in summaries if s.get("target_reached")]
    return spread(reached), len(summaries) - len(reached)
