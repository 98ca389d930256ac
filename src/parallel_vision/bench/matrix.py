"""Expand a BenchSpec into the ordered list of runs it stands for.

Rules (also stated in the report):

- 1 worker → strategy `single`. N > 1 → `ddp` for torch, `mirrored` for
  tensorflow and `dp` for jax, or the multi-worker strategies named with `--strategies`
  (torch: ddp, dp; tensorflow: mirrored, multiworker; jax: dp, multiworker).
- Strong scaling keeps the global batch fixed; weak scaling keeps the
  per-worker batch fixed (global = per-worker × N). The 1-worker run is shared.
- On a CPU every run of the scaling series gets the same threads per worker
  (default: cores ÷ the largest worker count), so that S(N) compares equal
  resources per worker; `reference` adds a 1-worker run using every core,
  the "best single-process" baseline.
- Repeats are interleaved (every configuration's repeat 1, then repeat 2, …)
  so slow drifts of the machine do not bias one configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parallel_vision import strategies as table
from parallel_vision.bench.presets import AS_PUBLISHED_SGD, BenchSpec
from parallel_vision.config import KNOWN_DATASETS, KNOWN_MODELS, RunConfig
from parallel_vision.errors import ConfigError
from parallel_vision.models.init import INIT_MODES

SHORT = {"torch": "torch", "tensorflow": "tf", "jax": "jax"}


@dataclass
class PlannedRun:
    """One run of the matrix: a config (or the reason none could be made) and its labels."""

    name: str
    repeat: int
    cfg: RunConfig | None
    scaling: list[str] = field(default_factory=list)
    role: str = "scaling"
    error: str | None = None
    describe: dict[str, Any] = field(default_factory=dict)

    @property
    def run_name(self) -> str:
        return f"{self.name}-r{self.repeat}"


def multi_strategies(framework: str, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """The N>1 strategies to run for one framework: those requested that it has, else its bench default."""
    chosen = tuple(s for s in requested or () if (spec := table.lookup(framework, s)) and spec.multi)
    return chosen or table.bench_defaults(framework)


def check_spec(spec: BenchSpec) -> None:
    for fw in spec.frameworks:
        if fw not in table.frameworks():
            raise ConfigError(f"unknown framework {fw!r}; choose from {', '.join(table.frameworks())}")
    known = table.all_names()
    for s in spec.strategies or ():
        if s not in known:
            raise ConfigError(f"unknown strategy {s!r}; choose from {', '.join(sorted(known))}")
    if not spec.workers or any(n < 1 for n in spec.workers):
        raise ConfigError("workers must be a list of positive integers, e.g. 1,2")
    if spec.repeats < 1:
        raise ConfigError(f"repeats must be >= 1; got {spec.repeats}")
    if spec.seeds is not None and (not spec.seeds or any(s < 0 for s in spec.seeds)
                                   or len(set(spec.seeds)) != len(spec.seeds)):
        raise ConfigError(f"seeds must be distinct non-negative integers, e.g. 0,1,2; got {list(spec.seeds)}")
    if spec.scaling not in ("strong", "weak", "both"):
        raise ConfigError(f"scaling must be strong, weak or both; got {spec.scaling!r}")
    for model in spec.models:
        if model not in KNOWN_MODELS:
            raise ConfigError(f"unknown model {model!r}; choose from {', '.join(KNOWN_MODELS)}")
    if not spec.models:
        raise ConfigError("models must name at least one model, e.g. paper_cnn")
    if spec.dataset not in KNOWN_DATASETS:
        raise ConfigError(f"unknown dataset {spec.dataset!r}; choose from {', '.join(KNOWN_DATASETS)}")
    if spec.init not in INIT_MODES:
        raise ConfigError(f"init must be one of {', '.join(INIT_MODES)}; got {spec.init!r}")


def expand(spec: BenchSpec, *, cores: int, gpus: int = 0) -> list[PlannedRun]:
    """Every run of `spec`, de-duplicated by config identity, repeats interleaved."""
    check_spec(spec)
    on_cpu = gpus == 0 or spec.device == "cpu"
    top = max(spec.workers)
    per_worker_threads = (spec.threads or max(1, cores // top)) if on_cpu else None
    modes = ("strong", "weak") if spec.scaling == "both" else (spec.scaling,)

    templates: list[PlannedRun] = []
    by_identity: dict[str, PlannedRun] = {}

    def add(framework: str, strategy: str, workers: int, batch: int, threads: int | None,
            mode: str | None, role: str, model: str, lever: tuple[str, dict[str, Any]] | None = None) -> None:
        for seed in spec.seeds or (None,):
            add_seed(framework=framework, strategy=strategy, workers=workers, batch=batch, threads=threads,
                     mode=mode, role=role, model=model, lever=lever, seed=seed)

    def add_seed(framework: str, strategy: str, workers: int, batch: int, threads: int | None,
                 mode: str | None, role: str, model: str, lever: tuple[str, dict[str, Any]] | None,
                 seed: int | None) -> None:
        row = table.lookup(framework, strategy)
        if row is not None and model not in row.models:
            return  # the strategy does not support this model (tensor, model-parallel: wide_mlp only): not planned
        base: dict[str, Any] = {
            "framework": framework, "strategy": strategy, "workers": workers, "batch_size": batch,
            "epochs": spec.epochs, "limit_train": spec.limit_train, "limit_test": spec.limit_test,
            "data_dir": spec.data_dir, "device": spec.device, "init": spec.init, "model": model,
            "dataset": spec.dataset,
        }
        if spec.target_accuracy is not None:
            base["target_accuracy"] = spec.target_accuracy
        if seed is not None:
            base["seed"] = seed
        if lever is not None:
            base.update(lever[1])
            try:
                RunConfig(**base)  # type: ignore[arg-type]
            except ConfigError:
                return  # this framework or strategy does not honour the lever: no run (docs/levers.md)
        if threads is not None:
            # mirrored / dp replicas share one process: its pool gets threads × replicas.
            shared = table.get(framework, strategy).shares_process
            base["threads_per_worker"] = threads * workers if shared else threads
        if spec.as_published and framework == "torch" and strategy in ("single", "dp"):
            base.update(AS_PUBLISHED_SGD)
        extra: dict[str, Any] = {"preset": spec.preset or "custom", "role": role}
        if spec.as_published:
            extra["protocol"] = "as-published"
        name = f"{SHORT[framework]}-{strategy}-w{workers}-b{batch}"
        if model != "paper_cnn" or spec.dataset != "mnist":
            name = f"{model}-{spec.dataset}-{name}"
        if threads is not None:
            name += f"-t{threads}"
        if base.get("optimizer") == "sgd":
            name += "-sgd"
        if spec.init != "framework":
            name += f"-init-{spec.init}"
        if lever is not None:
            name += f"-{lever[0]}"
            extra["lever"] = lever[0]
        if seed is not None:
            name += f"-seed{seed}"
        describe = {k: base[k] for k in ("model", "framework", "strategy", "workers", "batch_size")}
        try:
            cfg = RunConfig(**base, extra=extra)  # type: ignore[arg-type]
        except ConfigError as exc:
            key = "error:" + name
            if key not in by_identity:
                planned = PlannedRun(name=name, repeat=1, cfg=None, scaling=[mode] if mode else [], role=role,
                                     error=str(exc), describe=describe)
                by_identity[key] = planned
                templates.append(planned)
            return
        key = repr(sorted(cfg.identity().items()))
        if key in by_identity:
            planned = by_identity[key]
            if mode and mode not in planned.scaling:
                planned.scaling.append(mode)
            if role == "scaling":
                planned.role = "scaling"
            return
        planned = PlannedRun(name=name, repeat=1, cfg=cfg, scaling=[mode] if mode else [], role=role, error=None,
                             describe=describe)
        by_identity[key] = planned
        templates.append(planned)

    for model in spec.models:
        for framework in spec.frameworks:
            for workers in sorted(spec.workers):
                if workers > 1 and framework in spec.single_only:
                    continue
                strategies = ("single",) if workers == 1 else multi_strategies(framework, spec.strategies)
                for strategy in strategies:
                    for mode in modes:
                        batch = spec.batch_size if mode == "strong" else spec.batch_size * workers
                        threads = max(1, cores // workers) if on_cpu and spec.every_core else per_worker_threads
                        add(framework=framework, strategy=strategy, workers=workers, batch=batch,
                            threads=threads, mode=mode, role="scaling", model=model)
            for lever in spec.levers:
                for workers in sorted(n for n in spec.workers if n > 1):
                    for strategy in multi_strategies(framework, spec.strategies):
                        add(framework=framework, strategy=strategy, workers=workers, batch=spec.batch_size,
                            threads=per_worker_threads, mode=None, role="lever", model=model,
                            lever=lever)
            chosen = spec.reference_frameworks
            wants_reference = spec.reference and (chosen is None or framework in chosen)
            if wants_reference and on_cpu and per_worker_threads is not None and per_worker_threads < cores:
                add(framework=framework, strategy="single", workers=1, batch=spec.batch_size, threads=cores, mode=None,
                    role="reference", model=model)

    plan: list[PlannedRun] = []
    for repeat in range(1, spec.repeats + 1):
        for t in templates:
            if t.cfg is None and repeat > 1:
                continue  # an impossible configuration is reported once
            cfg = t.cfg
            if cfg is not None:
                labels = dict(cfg.extra, repeat=repeat, scaling="+".join(t.scaling) or None)
                cfg = cfg.replace(extra={k: v for k, v in labels.items() if v is not None})
            plan.append(PlannedRun(name=t.name, repeat=repeat, cfg=cfg, scaling=list(t.scaling), role=t.role,
                                   error=t.error, describe=t.describe))
    return plan
