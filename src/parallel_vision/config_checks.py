"""The checks of a RunConfig: one line for each thing that cannot describe a real run.

Field types (every `Literal` is a list of choices) and field metadata (the engine a field belongs to) drive
the generic checks; the strategy table (`strategies.py`) drives what each strategy refuses. The rest are the
rules between fields. Kept apart from `config.py` so the RunConfig itself reads as its list of fields.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from functools import cache
from typing import Any, Literal, get_args, get_origin

from parallel_vision import strategies
from parallel_vision.errors import ConfigError

#: Datasets whose images may be flipped and shifted without changing their class (not digits or characters).
AUGMENTABLE_DATASETS = ("cifar10", "synthetic")


def validate(cfg: Any) -> None:
    """Raise ConfigError with a one-line reason if `cfg` (a RunConfig) cannot describe a real run."""
    _check_types(cfg)
    _check_choices(cfg)
    elsewhere = strategies.ELSEWHERE.get((cfg.framework, cfg.strategy))
    if elsewhere:
        raise ConfigError(elsewhere)
    _check_choice(f"strategy for {cfg.framework}", cfg.strategy, strategies.strategies_of(cfg.framework))
    _check_choice("model", cfg.model, strategies.ALL_MODELS)
    _check_workload(cfg)
    _check_engine_only(cfg)
    for name, minimum in (("workers", 1), ("epochs", 1), ("batch_size", 1), ("eval_batch_size", 1), ("seed", 0),
                          ("checkpoint_every", 0)):
        _check_int(name, getattr(cfg, name), minimum)
    if cfg.master_port is not None:
        _check_int("master_port", cfg.master_port, 1)
        if cfg.master_port > 65535:
            raise ConfigError(f"master_port must be a TCP port (1..65535); got {cfg.master_port}")
    timeout = cfg.collective_timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise ConfigError(f"collective_timeout must be a positive number of seconds; got {timeout!r}")
    honoured = cfg.framework == "torch" or (cfg.framework, cfg.strategy) == ("jax", "multiworker")
    if timeout is not None and not honoured:
        raise ConfigError("collective_timeout applies to the torch engine and JAX multiworker only"
                          + ("; TensorFlow's coordination service heartbeats already end a run with a lost peer "
                             "within seconds" if cfg.framework == "tensorflow" else f", not JAX {cfg.strategy}"))
    for name in ("limit_train", "limit_test", "threads_per_worker"):
        value = getattr(cfg, name)
        if value is not None:
            _check_int(name, value, 1)
    _check_recipe(cfg)
    _check_strategy(cfg)
    if cfg.batch_size % cfg.workers:
        raise ConfigError(f"global batch {cfg.batch_size} does not divide evenly over {cfg.workers} workers")
    if cfg.limit_train is not None and cfg.limit_train < cfg.batch_size:
        raise ConfigError(f"limit_train {cfg.limit_train} is smaller than one global batch ({cfg.batch_size}):"
                          " not a single full step could be taken")
    if not isinstance(cfg.extra, dict):
        raise ConfigError("extra must be a mapping of labels")
    _check_levers(cfg)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; got {value}")


@cache
def _choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """Field name -> the values its Literal type allows, for every Literal-typed field of `cls`."""
    hints = typing.get_type_hints(cls)
    return {name: get_args(hint) for name, hint in hints.items() if get_origin(hint) is Literal}


def _check_choices(cfg: Any) -> None:
    for name, choices in _choices(type(cfg)).items():
        _check_choice(name, getattr(cfg, name), choices)


def _check_types(cfg: Any) -> None:
    """JSON configs can carry any type: refuse wrong ones before any comparison can crash."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind = str(f.type)
        if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{f.name} must be a number; got {value!r}")
        if kind == "float" and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number; got {value!r}")
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{f.name} must be true or false; got {value!r}")
        if kind == "str | None" and value is not None and not isinstance(value, str):
            raise ConfigError(f"{f.name} must be a path (a string); got {value!r}")
        if kind == "str" and not isinstance(value, str):
            raise ConfigError(f"{f.name} must be a string; got {value!r}")


def _check_engine_only(cfg: Any) -> None:
    """A setting one engine alone honours, set for another, is refused rather than silently ignored."""
    for f in dataclasses.fields(cfg):
        engine = f.metadata.get("engine")
        if engine and engine != cfg.framework and getattr(cfg, f.name) != f.default:
            hint = f"; {f.metadata['hint']}" if f.metadata.get("hint") else ""
            raise ConfigError(f"{f.name} applies to the {strategies.FRAMEWORK_TITLES[engine]} engine only{hint}")


def _check_workload(cfg: Any) -> None:
    """Shape options belong to `synthetic` (a real dataset has its own); augmentation to images it cannot
    relabel."""
    for name in ("image_size", "channels", "classes"):
        value = getattr(cfg, name)
        if value is None:
            continue
        if cfg.dataset != "synthetic":
            raise ConfigError(f"{name} applies to --dataset synthetic only ({cfg.dataset} has its own shape)")
        _check_int(name, value, 2 if name == "classes" else 1)
    if cfg.dataset == "synthetic":
        channels, side, _ = cfg.synthetic_shape
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3; got {channels}")
        if side < 8:
            raise ConfigError(f"image_size must be >= 8 (the models pool twice); got {side}")
    if cfg.augment and cfg.dataset not in AUGMENTABLE_DATASETS:
        raise ConfigError(f"augment (random crop and horizontal flip) applies to {', '.join(AUGMENTABLE_DATASETS)}"
                          f" only: a flipped {cfg.dataset} image can be another class")


def _check_recipe(cfg: Any) -> None:
    if not isinstance(cfg.lr, (int, float)) or isinstance(cfg.lr, bool) or not cfg.lr > 0:
        raise ConfigError(f"lr must be a positive number; got {cfg.lr!r}")
    if not 0.0 <= cfg.momentum < 1.0:
        raise ConfigError(f"momentum must be in [0, 1); got {cfg.momentum!r}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0; got {cfg.weight_decay!r}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1); got {cfg.label_smoothing!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); got {cfg.dropout!r}")


def _check_strategy(cfg: Any) -> None:
    """What the strategy's row of the table says about workers, devices and models."""
    spec = strategies.get(cfg.framework, cfg.strategy)
    if spec.max_workers is not None and cfg.workers > spec.max_workers:
        raise ConfigError(f"strategy '{spec.name}' runs exactly one worker; got --workers {cfg.workers} "
                          f"(use {strategies.for_more_workers(cfg.framework)} for more)")
    if cfg.workers < spec.min_workers:
        raise ConfigError(f"strategy '{spec.name}' shards {spec.shards} over the workers and needs at least "
                          f"{spec.min_workers}; got --workers {cfg.workers} (use single for one worker)")
    if cfg.precision not in spec.precisions:
        raise ConfigError(f"strategy '{spec.name}' supports --precision {', '.join(spec.precisions)}; got "
                          f"{cfg.precision} (fp16 needs a loss scaler that knows the sharded state; use bf16)")
    if not cfg.reshard_after_forward and spec.name != "fsdp":
        raise ConfigError(f"--no-reshard-after-forward applies to strategy fsdp only; strategy is {spec.name}")
    _check_pipeline(cfg)
    if spec.needs_cuda and cfg.device == "cpu":
        raise ConfigError(f"strategy '{spec.name}' ({spec.api}) needs >= 2 CUDA devices; --device cpu was given")
    if cfg.model not in spec.models:
        raise ConfigError(f"{strategies.FRAMEWORK_TITLES[cfg.framework]}'s {spec.name} strategy does not support "
                          f"model {cfg.model}; it supports {', '.join(spec.models)}"
                          + (f" ({spec.models_why})" if spec.models_why else ""))
    split = spec.split_dims.get(cfg.model)
    if split is not None and split % cfg.workers:
        raise ConfigError(f"strategy '{spec.name}' splits {cfg.model}'s {split}-wide layers over the devices; "
                          f"--workers {cfg.workers} does not divide {split}")


def _check_pipeline(cfg: Any) -> None:
    """pipeline's options belong to it; its micro-batches must split the batch evenly (the stages' shapes are
    fixed) and there must be a block of the model for every stage."""
    if cfg.strategy != "pipeline":
        for name, option in (("microbatches", "--microbatches"), ("pipeline_schedule", "--pipeline-schedule")):
            if getattr(cfg, name) != _DEFAULTS[name]:
                raise ConfigError(f"{option} applies to strategy pipeline only; strategy is {cfg.strategy}")
        return
    from parallel_vision.models.catalog import pipeline_blocks

    if cfg.compile:
        raise ConfigError("--compile is not supported with strategy pipeline (its stages run through the schedule, "
                          "not the compiled model)")
    if cfg.pipeline_schedule not in ("1f1b", "gpipe"):
        raise ConfigError(f"pipeline_schedule must be 1f1b or gpipe; got {cfg.pipeline_schedule!r}")
    if cfg.microbatches is not None:
        _check_int("microbatches", cfg.microbatches, 1)
    m = cfg.pipeline_microbatches
    if cfg.batch_size % m:
        raise ConfigError(f"global batch {cfg.batch_size} does not divide into {m} pipeline micro-batches "
                          "(--microbatches; the stages' shapes are fixed)")
    blocks = len(pipeline_blocks(cfg.model))
    if cfg.workers > blocks:
        raise ConfigError(f"pipeline: {cfg.workers} stages but {cfg.model} has {blocks} blocks to split between "
                          "them; use at most that many workers")
    if cfg.pipeline_schedule == "1f1b" and m < cfg.workers:
        raise ConfigError(f"pipeline schedule 1f1b needs at least one micro-batch per stage; got {m} micro-batches "
                          f"for {cfg.workers} stages (use more --microbatches or --pipeline-schedule gpipe)")


#: RunConfig's defaults of the pipeline options: what "not given" is.
_DEFAULTS = {"microbatches": None, "pipeline_schedule": "1f1b"}


def _check_levers(cfg: Any) -> None:
    """The levers of docs/levers.md: LR scaling and warm-up, accumulation, compression, time to target; then
    whatever the strategy does not honour (the table's refusals)."""
    _check_int("warmup_epochs", cfg.warmup_epochs, 0)
    _check_int("grad_accum", cfg.grad_accum, 1)
    if cfg.base_batch is not None:
        _check_int("base_batch", cfg.base_batch, 1)
    if cfg.lr_scaling != "none" and cfg.base_batch is None:
        raise ConfigError(f"lr_scaling {cfg.lr_scaling} needs --base-batch (the global batch lr was tuned for)")
    if cfg.lr_scaling == "none" and cfg.base_batch is not None:
        raise ConfigError("base_batch only applies with --lr-scaling linear or sqrt")
    if cfg.warmup_epochs and cfg.lr_schedule == "onecycle":
        raise ConfigError("warmup_epochs cannot be combined with lr_schedule onecycle (it has its own warm-up)")
    if cfg.warmup_epochs > cfg.epochs:
        raise ConfigError(f"warmup_epochs {cfg.warmup_epochs} is longer than the run ({cfg.epochs} epochs)")
    if cfg.batch_size % (cfg.workers * cfg.grad_accum):
        raise ConfigError(f"global batch {cfg.batch_size} does not divide into {cfg.workers} worker(s) × "
                          f"{cfg.grad_accum} micro-batches (grad_accum)")
    kind, _, rank = cfg.grad_compression.partition(":")
    if kind not in ("none", "fp16", "bf16", "powersgd") or (rank and kind != "powersgd"):
        raise ConfigError(f"grad_compression must be none, fp16, bf16 or powersgd[:rank]; got {cfg.grad_compression!r}")
    if rank and not (rank.isdigit() and int(rank) >= 1):
        raise ConfigError(f"the PowerSGD rank must be an integer >= 1; got {rank!r}")
    if cfg.stop_at_target and cfg.target_accuracy is None:
        raise ConfigError("stop_at_target needs --target-accuracy")
    if cfg.target_accuracy is not None:
        if isinstance(cfg.target_accuracy, bool) or not isinstance(cfg.target_accuracy, (int, float)):
            raise ConfigError(f"target_accuracy must be a number; got {cfg.target_accuracy!r}")
        if not 0.0 < cfg.target_accuracy <= 1.0:
            raise ConfigError(f"target_accuracy must be in (0, 1] (a fraction: 0.99 for 99 %); "
                              f"got {cfg.target_accuracy!r}")
    spec = strategies.get(cfg.framework, cfg.strategy)
    for lever in strategies.refused_levers(spec, cfg):
        raise ConfigError(spec.refusal(lever))
