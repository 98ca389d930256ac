"""`pvision explain ROOT`: do parallel-trained models look at the same pixels? (docs/explain.md)

Every complete run in a bench ROOT is explained on the same seeded sample of test images (`explain/run.py`; a run
already explained with the same methods, images and seed is not explained again). Then every pair of runs that
differ in one respect is compared image by image (`similarity.py`), in groups:

- **seed band**: the same configuration, different seeds (`pvision bench --seeds`). Any nondeterminism gives a
  model a seed's worth of difference (Summers & Dinneen 2021), so this band is the yardstick;
- **strategy**: the same framework and seed, a different strategy or worker count (single vs DDP ×2, …);
- **framework**: the same seed and strategy family under `--init aligned` (the same initial weights), a different
  framework;
- **randomised floor**: each run against its own model with re-initialised weights (explain.json's check), how
  alike maps are that should have nothing in common.

Each group's per-image values (all its pairs pooled) get a median with a 95 % bootstrap interval. A group's verdict
compares that interval with the seed band's: above it, inside it, or below it (its models disagree more than two
seeds do). No verdict without a seed band: the document says which command gives one. Framework-free: it reads
the store and the explanations; the framework work happens in each run's explain child.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.config import FIELD_ENGINE, RunConfig
from parallel_vision.errors import ConfigError, PVisionError
from parallel_vision.explain import run as explain_run
from parallel_vision.explain import similarity
from parallel_vision.explain.files import COMPARE_FILE, COMPARE_VERSION
from parallel_vision.results.store import open_store, require_runs

GROUPS = ("seed band", "strategy", "framework")
#: The metric a verdict and the one-sentence answer are read from (the others are shown beside it).
HEADLINE_METRIC = "spearman_abs"
#: Identity fields a group lets differ between the two runs of a pair (besides the seed, which only the seed band
#: lets differ). threads_per_worker and batch split follow from the strategy and worker count.
_LAYOUT = ("strategy", "workers", "threads_per_worker")


@dataclass(frozen=True)
class Explained:
    """One run of ROOT and its maps on the common sample (or why it has none)."""

    record: dict[str, Any]
    folder: Path
    maps: dict[str, np.ndarray] | None
    doc: dict[str, Any] | None
    reason: str | None = None

    @property
    def cfg(self) -> dict[str, Any]:
        return self.record["config"]

    @property
    def name(self) -> str:
        return str(self.record["path"])

    def describe(self) -> str:
        c = self.cfg
        return f"{c['framework']} {c['strategy']} ×{c['workers']} seed {c.get('seed', 0)}"


def is_root(path: Path) -> bool:
    """A bench ROOT (runs under it and a store), not one run folder."""
    if not path.is_dir() or (path / "config.json").exists() or (path / "result.json").exists():
        return False
    return ((path / "results.sqlite").exists() or (path / "runs").is_dir()
            or any((child / "result.json").exists() for child in path.iterdir() if child.is_dir()))


def _identity(record: dict[str, Any], free: tuple[str, ...]) -> str:
    ident = RunConfig.from_dict(record["config"]).identity()
    return json.dumps({k: v for k, v in ident.items() if k not in free}, sort_keys=True)


def _reusable(folder: Path, methods: tuple[str, ...], images: int, seed: int) -> dict[str, Any] | None:
    try:
        doc = json.loads((folder / "explain" / "explain.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = doc.get("images") == images and doc.get("seed") == seed and set(methods) <= set(doc.get("methods", {}))
    return doc if same and (folder / "explain" / "explanations.npz").exists() else None


def explain_all(root: Path, methods: tuple[str, ...], images: int, seed: int,
                say: Any = print) -> list[Explained]:
    """Every complete run of ROOT explained on the same sample: reused where it already was, else explained now.
    A run that cannot be explained (no saved model, a method its model lacks) is kept with its reason."""
    store = open_store(root)
    require_runs(store)
    out = []
    for record in store.runs():
        folder = root / record["path"]
        doc = _reusable(folder, methods, images, seed)
        try:
            if doc is None:
                say(f"explaining {record['path']} …")
                doc = explain_run.explain(folder, methods, images, seed)
            with np.load(folder / "explain" / "explanations.npz") as npz:
                maps = {m: npz[m] for m in methods}
        except PVisionError as exc:
            say(f"not explained: {record['path']}: {exc}")
            out.append(Explained(record, folder, None, None, str(exc)))
            continue
        out.append(Explained(record, folder, maps, doc))
    return out


def pairs_of(runs: list[Explained]) -> list[tuple[str, Explained, Explained]]:
    """(group, a, b) for every two explained runs that differ in exactly what one group lets differ."""
    done = [r for r in runs if r.maps is not None]
    out = []
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            group = _group(a, b)
            if group is not None:
                out.append((group, a, b))
    return out


def _group(a: Explained, b: Explained) -> str | None:
    seed_a, seed_b = a.cfg.get("seed", 0), b.cfg.get("seed", 0)
    if seed_a != seed_b:
        return "seed band" if _identity(a.record, ("seed",)) == _identity(b.record, ("seed",)) else None
    if a.cfg["framework"] == b.cfg["framework"]:
        return "strategy" if _identity(a.record, _LAYOUT) == _identity(b.record, _LAYOUT) else None
    # Two frameworks: the same initial weights (--init aligned) and worker count; each runs its own strategy
    # for it, and fields only one engine reads (RunConfig's `only()`) may differ.
    aligned = a.cfg.get("init") == b.cfg.get("init") == "aligned" and a.cfg["workers"] == b.cfg["workers"]
    free = ("framework", *_LAYOUT, *FIELD_ENGINE)
    return "framework" if aligned and _identity(a.record, free) == _identity(b.record, free) else None


def compare(root: Path, methods: tuple[str, ...], images: int, seed: int, say: Any = print) -> dict[str, Any]:
    """Explain every run of ROOT on the same images, compare the pairs, judge each group against the seed band,
    and write ROOT/explain/compare.json (atomically); returns it."""
    runs = explain_all(root, methods, images, seed, say)
    if not any(r.maps is not None for r in runs):
        raise ConfigError(f"{root}: no run could be explained ("
                          + "; ".join(sorted({r.reason or '' for r in runs})) + ")")
    pairs = pairs_of(runs)
    values: dict[tuple[str, str], dict[str, list[np.ndarray]]] = {}
    pair_docs = []
    for group, a, b in pairs:
        assert a.doc is not None and b.doc is not None
        if a.doc["indices"] != b.doc["indices"]:
            raise ConfigError(f"{a.name} and {b.name} were explained on different test images (a different test "
                              "set?); they cannot be compared")
        for m in methods:
            assert a.maps is not None and b.maps is not None
            per = similarity.per_image(a.maps[m], b.maps[m])
            bucket = values.setdefault((group, m), {k: [] for k in similarity.METRICS})
            for k in similarity.METRICS:
                bucket[k].append(per[k])
            pair_docs.append({"group": group, "a": a.name, "b": b.name, "a_is": a.describe(), "b_is": b.describe(),
                              "method": m, **{k: similarity.median_ci(per[k], seed) for k in similarity.METRICS}})
    summary = {f"{g}|{m}": {k: similarity.median_ci(np.concatenate(v[k]), seed) for k in similarity.METRICS}
               | {"pairs": len(v[HEADLINE_METRIC])} for (g, m), v in values.items()}
    floor = _floor(runs, methods)
    verdicts = _verdicts(summary, methods)
    doc = {
        "kind": "explain-compare", "version": COMPARE_VERSION, "root": str(root), "methods": list(methods),
        "images": images, "seed": seed, "headline_metric": HEADLINE_METRIC,
        "runs": [{"run": r.name, "is": r.describe(), "explained": r.maps is not None, "reason": r.reason}
                 for r in runs],
        "seeds_per_configuration": _seed_counts(runs),
        "groups": summary, "randomised_floor": floor, "pairs": pair_docs, "verdicts": verdicts,
        "answer": answer(verdicts, summary, floor, methods),
    }
    atomic_write_bytes(root / "explain" / COMPARE_FILE, (json.dumps(doc, indent=2) + "\n").encode())
    return doc


def _seed_counts(runs: list[Explained]) -> dict[str, int]:
    counts: dict[str, set[int]] = {}
    for r in runs:
        if r.maps is not None:
            key = f"{r.cfg['framework']} {r.cfg['strategy']} ×{r.cfg['workers']}"
            counts.setdefault(key, set()).add(int(r.cfg.get("seed", 0)))
    return {k: len(v) for k, v in sorted(counts.items())}


def _floor(runs: list[Explained], methods: tuple[str, ...]) -> dict[str, Any]:
    """Per method, the runs' trained-vs-randomised Spearman (explain.json's sanity check), median over runs."""
    out = {}
    for m in methods:
        got = [r.doc["methods"][m]["randomised_model"]["spearman_median"] for r in runs
               if r.doc is not None and m in r.doc.get("methods", {})]
        out[m] = {"spearman_median": float(np.median(got)) if got else None, "runs": len(got),
                  "note": "each run's maps against its own model with re-initialised weights (Adebayo et al. 2018)"}
    return out


def _verdicts(summary: dict[str, Any], methods: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for group in GROUPS[1:]:
        for m in methods:
            got = summary.get(f"{group}|{m}")
            if got is None:
                continue
            band = summary.get(f"seed band|{m}")
            out.append({"group": group, "method": m, "metric": HEADLINE_METRIC,
                        "verdict": verdict(got[HEADLINE_METRIC], band[HEADLINE_METRIC] if band else None)})
    return out


def verdict(group: dict[str, Any], band: dict[str, Any] | None) -> str:
    """Where a group's median interval lies against the seed band's (None: no band, no verdict)."""
    if band is None or band["median"] is None:
        return ("no verdict: no seed band (train each configuration with at least 2 seeds: "
                "`pvision bench … --seeds 0,1`)")
    if group["median"] is None:
        return "no verdict: no comparable maps"
    if group["hi"] < band["lo"]:
        return "below the seed band: these models disagree more than two seeds of one configuration do"
    if group["lo"] > band["hi"]:
        return "above the seed band: these models agree more than two seeds of one configuration do"
    return "inside the seed band: they differ as much as a change of seed makes models differ, no more"


def answer(verdicts: list[dict[str, Any]], summary: dict[str, Any], floor: dict[str, Any],
           methods: tuple[str, ...]) -> str:
    """The measured answer in one sentence (for the report and the command's last line)."""
    m = methods[0]
    band = summary.get(f"seed band|{m}")
    strategy = summary.get(f"strategy|{m}")
    title = similarity.METRIC_TITLES[HEADLINE_METRIC]
    if band is None:
        return ("No answer yet: the ROOT has no two seeds of one configuration, so there is no seed band to judge "
                "against; train with `pvision bench … --seeds 0,1`.")
    b = band[HEADLINE_METRIC]
    text = f"{m}: two seeds of one configuration give maps with median {title} {b['median']:.2f} " \
           f"[{b['lo']:.2f}–{b['hi']:.2f}]"
    if strategy is not None:
        s = strategy[HEADLINE_METRIC]
        v = next(x["verdict"] for x in verdicts if x["group"] == "strategy" and x["method"] == m)
        text += f"; a different strategy at the same seed {s['median']:.2f} [{s['lo']:.2f}–{s['hi']:.2f}], " \
                f"{v.split(':')[0]}"
    if floor.get(m, {}).get("spearman_median") is not None:
        text += f" (a randomised model: Spearman {floor[m]['spearman_median']:.2f})"
    return text + "."
