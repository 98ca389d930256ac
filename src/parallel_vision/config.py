"""RunConfig: every knob of one training run, typed, immutable and validated.

It knows nothing about frameworks: building or validating one never imports
torch or TensorFlow, so the CLI, `bench` and the report can all hold configs.
Checks that need the hardware (how many GPUs there are) happen in the engine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from parallel_vision.errors import ConfigError

Framework = Literal["torch", "tensorflow", "jax"]
Strategy = Literal["single", "dp", "ddp", "mirrored", "multiworker"]
Optimizer = Literal["adam", "sgd"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
Device = Literal["auto", "cpu", "cuda"]
MemoryFormat = Literal["channels_last", "contiguous"]
LrSchedule = Literal["constant", "onecycle"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
InitMode = Literal["framework", "aligned"]
LrScaling = Literal["none", "linear", "sqrt"]
#: --grad-compression: torch DDP communication hooks ("powersgd:R" picks the rank; plain "powersgd" is rank 1).
GRAD_COMPRESSIONS = ("none", "fp16", "bf16", "powersgd")
POWERSGD_DEFAULT_RANK = 1

STRATEGIES: dict[str, tuple[str, ...]] = {
    "torch": ("single", "dp", "ddp"),
    "tensorflow": ("single", "mirrored", "multiworker"),
    "jax": ("single", "dp", "multiworker"),
}
#: Strategies in which each worker is a separate OS process.
MULTI_PROCESS_STRATEGIES = ("ddp", "multiworker")
#: Strategies that run several replicas in one process.
SINGLE_PROCESS_MULTI_DEVICE = ("dp", "mirrored")

#: What to suggest when `single` is given more than one worker.
MORE_WORKERS = {"torch": "ddp", "tensorflow": "mirrored or multiworker", "jax": "dp or multiworker"}

KNOWN_DATASETS = ("mnist", "fashion-mnist", "kmnist", "cifar10", "synthetic")
#: Datasets whose images may be flipped and shifted without changing their class (not digits or characters).
AUGMENTABLE_DATASETS = ("cifar10", "synthetic")
#: The model zoo (parallel_vision.models.catalog.MODEL_NAMES; a test keeps the two equal).
KNOWN_MODELS = ("paper_cnn", "resnet18", "wide_mlp")
#: Shape of `synthetic` images when the config leaves it open: CIFAR-10's.
SYNTHETIC_DEFAULT_SHAPE = {"image_size": 32, "channels": 3, "classes": 10}
#: New fields whose default value is left out of a run's identity, so runs recorded before they
#: existed keep their identity (and de-duplicate against new runs of the same configuration).
IDENTITY_OPTIONAL = {"init": "framework", "model": "paper_cnn", "augment": False, "image_size": None,
                     "channels": None, "classes": None, "lr_scaling": "none", "base_batch": None,
                     "warmup_epochs": 0, "grad_accum": 1, "grad_compression": "none", "target_accuracy": None,
                     "stop_at_target": False, "fused_bn": True}
ENGINE_NAMES = {"torch": "torch", "tensorflow": "TensorFlow", "jax": "JAX"}


def only(framework: str, default: Any, hint: str = "") -> Any:
    """A field that one engine alone honours: the type says where it applies (`engine_only`), and
    `validate` refuses a non-default value for any other framework in one line, with `hint`."""
    return field(default=default, metadata={"engine": framework, "hint": hint})


def engine_only(name: str) -> str | None:
    """The framework a RunConfig field is specific to, or None when every engine honours it."""
    return FIELD_ENGINE.get(name)


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults are the paper's protocol (Adam 1e-3, batch 2048, 30 epochs)."""

    framework: Framework = "torch"
    strategy: Strategy = "single"
    workers: int = 1
    epochs: int = 30
    batch_size: int = 2048
    """Global batch: each of `workers` replicas takes `batch_size // workers` per step."""
    optimizer: Optimizer = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: LrSchedule = only("torch", "constant")
    """`onecycle`: PyTorch's OneCycleLR to `lr` over the run (torch only; the fast GPU schedule)."""
    label_smoothing: float = only("torch", 0.0)
    lr_scaling: LrScaling = "none"
    """`linear` / `sqrt`: the learning rate actually used is `lr` × (batch_size ÷ base_batch), or its square
    root (Goyal et al., arXiv:1706.02677). `lr` is the rate tuned for `base_batch` (docs/levers.md)."""
    base_batch: int | None = None
    """The global batch `lr` was tuned for (needed by `lr_scaling`)."""
    warmup_epochs: int = 0
    """Gradual warm-up: the rate ramps linearly, step by step, to its scaled value over this many epochs."""
    grad_accum: int = 1
    """Micro-batches per optimiser step on each worker: each takes batch_size ÷ (workers × grad_accum)."""
    grad_compression: str = only("torch", "none", "it is a torch DDP communication hook")
    """`fp16`, `bf16`, `powersgd[:rank]`: gradients compressed for the DDP all-reduce (torch's hooks)."""
    target_accuracy: float | None = None
    """Record the training time to the end of the first epoch whose test accuracy reaches this (0 < A <= 1)."""
    stop_at_target: bool = False
    """End training after the first epoch that reaches `target_accuracy` (the run is complete then)."""
    dropout: float = 0.25
    """The paper does not state its dropout rate; 0.25 is ours, the same in both frameworks."""
    init: InitMode = "framework"
    """`framework`: each framework's default initialisation and Adam epsilon, as users meet them (the
    paper's setting). `aligned`: the same initial weights (drawn once from `seed`, models/init.py) and the
    same optimiser constants in every engine. See docs/definitions.md."""
    seed: int = 0
    model: str = "paper_cnn"
    """One of KNOWN_MODELS, defined identically in every framework (docs/models.md)."""
    dataset: str = "mnist"
    image_size: int | None = None
    """`synthetic` only: side of the square images (default 32)."""
    channels: int | None = None
    """`synthetic` only: colour channels (default 3)."""
    classes: int | None = None
    """`synthetic` only: number of classes (default 10)."""
    augment: bool = False
    """Random crop (zero padding 4) and horizontal flip of every training image, on the device
    (cifar10 and synthetic only: a flipped digit is another class)."""
    data_dir: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    out_dir: str | None = None
    threads_per_worker: int | None = None
    """CPU threads per worker; None means cores ÷ workers."""
    device: Device = "auto"
    precision: Precision = "fp32"
    """`auto`: bf16 where it was measured faster at the same accuracy (the PyTorch engine on a GPU or a
    CPU with native bfloat16), else fp32; the engine records the choice and why (`extra.precision_auto`)."""
    memory_format: MemoryFormat = only("torch", "channels_last")
    fused_bn: bool = only("torch", True)
    """On CPU, run each BatchNorm → ReLU → 2×2 max-pool as one autograd step that keeps 28 % less for
    backward and is faster, with the reference's gradients bit for bit (models/torch_fused.py). Off: the
    reference modules. Not used with compile or sync_batchnorm, which bring their own BatchNorm."""
    compile: bool = only("torch", False, "use jit_compile for TensorFlow")
    compile_mode: CompileMode = only("torch", "default")
    pin_threads: bool = False
    """Pin each CPU worker process to its own cores (Linux affinity)."""
    malloc_tuning: bool = only("torch", True)
    """Keep glibc from returning freed memory to the OS between steps (torch CPU workers)."""
    jit_compile: bool = only("tensorflow", False, "use compile for torch; the JAX engine always compiles with XLA")
    sync_batchnorm: bool = only("torch", False)
    eval_batch_size: int = 500
    """Test images per forward pass when evaluating (no effect on results). 500 keeps the no-grad
    activations small: at 2000 a CPU worker's peak memory was ~0.6 GiB higher, at no gain in speed."""
    deterministic: bool = False
    checkpoint_every: int = only("torch", 0, "TensorFlow backs up at every epoch end")
    """Also checkpoint every N optimiser steps (0: only at epoch ends)."""
    resume: bool = False
    tensorboard: bool = True
    master_port: int | None = only("torch", None)
    """Rendezvous port of a spawned DDP run on 127.0.0.1 (None: a free one, chosen at launch)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form labels (e.g. the bench preset); never read by an engine."""

    def __post_init__(self) -> None:
        validate(self)

    # ----------------------------------------------------------------- derived
    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.workers

    @property
    def micro_batch(self) -> int:
        """Images one worker pushes through forward and backward at a time (per-worker batch ÷ grad_accum)."""
        return self.batch_size // (self.workers * self.grad_accum)

    @property
    def compression(self) -> tuple[str, int | None]:
        """`grad_compression` parsed: (kind, PowerSGD rank or None)."""
        kind, _, rank = self.grad_compression.partition(":")
        if kind == "powersgd":
            return kind, int(rank) if rank else POWERSGD_DEFAULT_RANK
        return kind, None

    @property
    def is_distributed(self) -> bool:
        return self.strategy in MULTI_PROCESS_STRATEGIES

    def resolved_threads(self, cores: int | None = None) -> int:
        """Threads per worker: the explicit setting, else cores ÷ processes (at least 1)."""
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        cores = cores or usable_cores()
        processes = self.workers if self.is_distributed else 1
        return max(1, cores // processes)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ serialising
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a run configuration must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown configuration field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"configuration is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def identity(self) -> dict[str, Any]:
        """The fields that define *what* is measured (not where outputs go), for de-duplication."""
        d = self.to_dict()
        for key in ("out_dir", "data_dir", "resume", "tensorboard", "extra", "master_port", "checkpoint_every"):
            d.pop(key, None)
        for key, default in IDENTITY_OPTIONAL.items():
            if key in d and d[key] == default:
                d.pop(key)  # the default keeps the identity runs had before the field existed
        return d

    @property
    def synthetic_shape(self) -> tuple[int, int, int]:
        """(channels, image_size, classes) of a `synthetic` run, defaults filled in."""
        return (self.channels or SYNTHETIC_DEFAULT_SHAPE["channels"],
                self.image_size or SYNTHETIC_DEFAULT_SHAPE["image_size"],
                self.classes or SYNTHETIC_DEFAULT_SHAPE["classes"])


def differing_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the identity fields two configs disagree on, for a message the user can act on."""
    return sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroups affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; got {value}")


def _check_types(cfg: RunConfig) -> None:
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


FIELD_ENGINE: dict[str, str] = {f.name: f.metadata["engine"] for f in dataclasses.fields(RunConfig)
                                 if "engine" in f.metadata}


def _check_engine_only(cfg: RunConfig) -> None:
    """A setting one engine alone honours, set for another, is refused rather than silently ignored."""
    for f in dataclasses.fields(cfg):
        engine = f.metadata.get("engine")
        if engine and engine != cfg.framework and getattr(cfg, f.name) != f.default:
            hint = f"; {f.metadata['hint']}" if f.metadata.get("hint") else ""
            raise ConfigError(f"{f.name} applies to the {ENGINE_NAMES[engine]} engine only{hint}")


def _check_workload(cfg: RunConfig) -> None:
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


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError with a one-line reason if `cfg` cannot describe a real run."""
    _check_types(cfg)
    _check_choice("framework", cfg.framework, get_args(Framework))
    _check_choice(
        f"strategy for {cfg.framework}", cfg.strategy, STRATEGIES[cfg.framework]
    )
    _check_choice("optimizer", cfg.optimizer, get_args(Optimizer))
    _check_choice("precision", cfg.precision, get_args(Precision))
    _check_choice("device", cfg.device, get_args(Device))
    _check_choice("memory_format", cfg.memory_format, get_args(MemoryFormat))
    _check_choice("lr_schedule", cfg.lr_schedule, get_args(LrSchedule))
    _check_choice("compile_mode", cfg.compile_mode, get_args(CompileMode))
    _check_choice("init", cfg.init, get_args(InitMode))
    _check_choice("dataset", cfg.dataset, KNOWN_DATASETS)
    _check_choice("model", cfg.model, KNOWN_MODELS)
    _check_workload(cfg)
    _check_engine_only(cfg)
    _check_int("workers", cfg.workers, 1)
    _check_int("epochs", cfg.epochs, 1)
    _check_int("batch_size", cfg.batch_size, 1)
    _check_int("eval_batch_size", cfg.eval_batch_size, 1)
    _check_int("seed", cfg.seed, 0)
    _check_int("checkpoint_every", cfg.checkpoint_every, 0)
    if cfg.master_port is not None:
        _check_int("master_port", cfg.master_port, 1)
        if cfg.master_port > 65535:
            raise ConfigError(f"master_port must be a TCP port (1..65535); got {cfg.master_port}")
    for name in ("limit_train", "limit_test", "threads_per_worker"):
        value = getattr(cfg, name)
        if value is not None:
            _check_int(name, value, 1)
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
    if cfg.strategy == "single" and cfg.workers != 1:
        raise ConfigError(
            f"strategy 'single' runs exactly one worker; got --workers {cfg.workers} "
            f"(use {MORE_WORKERS[cfg.framework]} for more)"
        )
    if cfg.batch_size % cfg.workers:
        raise ConfigError(
            f"global batch {cfg.batch_size} does not divide evenly over {cfg.workers} workers"
        )
    if cfg.limit_train is not None and cfg.limit_train < cfg.batch_size:
        raise ConfigError(
            f"limit_train {cfg.limit_train} is smaller than one global batch ({cfg.batch_size}):"
            " not a single full step could be taken"
        )
    if cfg.sync_batchnorm and cfg.strategy != "ddp":
        raise ConfigError("sync_batchnorm only applies to strategy 'ddp'")
    if cfg.framework == "torch" and cfg.strategy == "dp" and cfg.device == "cpu":
        raise ConfigError("strategy 'dp' (nn.DataParallel) needs >= 2 CUDA devices; --device cpu was given")
    if not isinstance(cfg.extra, dict):
        raise ConfigError("extra must be a mapping of labels")
    _check_levers(cfg)


def reached_target(cfg: RunConfig, test_accuracy: float | None) -> bool:
    """Whether a finished epoch with this test accuracy ends a `stop_at_target` run."""
    return bool(cfg.stop_at_target and cfg.target_accuracy is not None and test_accuracy is not None
                and test_accuracy >= cfg.target_accuracy)


def _check_levers(cfg: RunConfig) -> None:
    """The levers of docs/levers.md: LR scaling and warm-up, accumulation, compression, time to target."""
    _check_choice("lr_scaling", cfg.lr_scaling, get_args(LrScaling))
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
    if cfg.grad_accum > 1 and cfg.framework == "tensorflow" and cfg.strategy != "single":
        raise ConfigError(f"grad_accum under TensorFlow's {cfg.strategy} strategy is not possible: Keras 3's "
                          "gradient_accumulation_steps fails under tf.distribute (merge_call inside a cond); "
                          "use strategy single or the torch engine")
    if cfg.grad_accum > 1 and cfg.framework == "jax":
        raise ConfigError("grad_accum is not implemented in the JAX engine (its jitted step takes one whole global "
                          "batch); use the torch engine, or TensorFlow's single strategy")
    kind, _, rank = cfg.grad_compression.partition(":")
    if kind not in GRAD_COMPRESSIONS or (rank and kind != "powersgd"):
        raise ConfigError(f"grad_compression must be none, fp16, bf16 or powersgd[:rank]; got {cfg.grad_compression!r}")
    if rank and not (rank.isdigit() and int(rank) >= 1):
        raise ConfigError(f"the PowerSGD rank must be an integer >= 1; got {rank!r}")
    if kind != "none" and cfg.strategy != "ddp":
        raise ConfigError(f"grad_compression applies to strategy ddp only (a DDP communication hook); "
                          f"strategy is {cfg.strategy}")
    if cfg.stop_at_target and cfg.target_accuracy is None:
        raise ConfigError("stop_at_target needs --target-accuracy")
    if cfg.target_accuracy is not None:
        if isinstance(cfg.target_accuracy, bool) or not isinstance(cfg.target_accuracy, (int, float)):
            raise ConfigError(f"target_accuracy must be a number; got {cfg.target_accuracy!r}")
        if not 0.0 < cfg.target_accuracy <= 1.0:
            raise ConfigError(f"target_accuracy must be in (0, 1] (a fraction: 0.99 for 99 %); "
                              f"got {cfg.target_accuracy!r}")
