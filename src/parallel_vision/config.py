"""RunConfig: every knob of one training run, typed, immutable, documented and validated.

It knows nothing about frameworks: building or validating one never imports torch or TensorFlow, so the
CLI, `bench` and the report can all hold configs. Checks that need the hardware (how many GPUs there are)
happen in the engine. The fields come in sections (what runs, recipe, levers, data, model, speed,
outputs); each carries its documentation and its rules in field metadata (`knob`, `only`): the engine
that alone honours it, and whether it belongs to the run's identity. The checks are in `config_checks.py`;
which strategies exist and what each refuses is in `strategies.py`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from parallel_vision import strategies
from parallel_vision.config_checks import validate
from parallel_vision.errors import ConfigError

Framework = Literal["torch", "tensorflow", "jax"]
Optimizer = Literal["adam", "sgd"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
Device = Literal["auto", "cpu", "cuda"]
MemoryFormat = Literal["channels_last", "contiguous"]
LrSchedule = Literal["constant", "onecycle"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
Allocator = Literal["auto", "glibc", "tcmalloc"]
InitMode = Literal["framework", "aligned"]
LrScaling = Literal["none", "linear", "sqrt"]
#: --grad-compression: torch DDP communication hooks ("powersgd:R" picks the rank; plain "powersgd" is rank 1).
GRAD_COMPRESSIONS = ("none", "fp16", "bf16", "powersgd")
POWERSGD_DEFAULT_RANK = 1

Dataset = Literal["mnist", "fashion-mnist", "kmnist", "cifar10", "synthetic"]
KNOWN_DATASETS: tuple[str, ...] = get_args(Dataset)
#: The model zoo (parallel_vision.models.catalog.MODEL_NAMES; a test keeps the two equal).
KNOWN_MODELS = strategies.ALL_MODELS
#: Shape of `synthetic` images when the config leaves it open: CIFAR-10's.
SYNTHETIC_DEFAULT_SHAPE = {"image_size": 32, "channels": 3, "classes": 10}
ENGINE_NAMES = strategies.FRAMEWORK_TITLES
SECTIONS = ("what runs", "recipe", "levers", "data", "model", "speed", "outputs")

Identity = Literal["always", "unless-default", "never"]
"""Whether a field is part of what a run measures (`RunConfig.identity`): `never` for where outputs go and how
they are written; `unless-default` for fields added after runs were stored, so those runs keep their identity."""


def knob(section: str, default: Any, doc: str, *, engine: str | None = None, hint: str = "",
         identity: Identity = "always") -> Any:
    """A RunConfig field with its documentation and rules in metadata (read by `validate`, `identity`, the
    docs and the tests)."""
    metadata = {"section": section, "doc": doc, "identity": identity}
    if engine:
        metadata.update(engine=engine, hint=hint)
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


#: JAX's own heartbeat timeout (jax.distributed.initialize's default), used when --collective-timeout is unset.
JAX_HEARTBEAT_DEFAULT_S = 100


def heartbeat_timeout_s(collective_timeout: float | None) -> int:
    """The JAX coordination service's heartbeat timeout for a run (whole seconds, at least 1)."""
    return JAX_HEARTBEAT_DEFAULT_S if collective_timeout is None else max(1, math.ceil(collective_timeout))


def only(framework: str, section: str, default: Any, doc: str, hint: str = "", identity: Identity = "always") -> Any:
    """A field that one engine alone honours: `validate` refuses a non-default value for any other framework
    in one line, with `hint`."""
    return knob(section, default, doc, engine=framework, hint=hint, identity=identity)


def engine_only(name: str) -> str | None:
    """The framework a RunConfig field is specific to, or None when every engine honours it."""
    return FIELD_ENGINE.get(name)


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults are the paper's protocol (Adam 1e-3, batch 2048, 30 epochs)."""

    # ---------------------------------------------------------------------------------------- what runs
    framework: Framework = knob("what runs", "torch", "The engine: torch, tensorflow or jax.")
    strategy: str = knob("what runs", "single", "How training is spread over workers (strategies.STRATEGY_TABLE).")
    workers: int = knob("what runs", 1, "Replicas: processes or devices, by the strategy's process model.")
    device: Device = knob("what runs", "auto", "auto (a GPU if the engine sees one), cpu or cuda.")
    reshard_after_forward: bool = only("torch", "what runs", True, "fsdp: free each unit's gathered parameters "
                                       "after its forward and gather them again for backward (ZeRO-3); False keeps "
                                       "them from forward to backward (ZeRO-2: more memory, one all-gather less).",
                                       identity="unless-default")
    microbatches: int | None = only("torch", "what runs", None, "pipeline: micro-batches per step, each "
                                    "batch_size ÷ microbatches images through every stage (default 4 × workers).",
                                    identity="unless-default")
    pipeline_schedule: str = only("torch", "what runs", "1f1b", "pipeline: `1f1b` (one forward, one backward in "
                                  "the steady state; fewer activations alive) or `gpipe` (all forwards, then all "
                                  "backwards).", identity="unless-default")
    seed: int = knob("what runs", 0, "Seeds weights, shuffling and dropout (each worker offsets it by rank).")
    # ------------------------------------------------------------------------------------------- recipe
    epochs: int = knob("recipe", 30, "Passes over the training set.")
    batch_size: int = knob("recipe", 2048, "Global batch: each of `workers` replicas takes batch_size ÷ workers.")
    optimizer: Optimizer = knob("recipe", "adam", "adam (the paper's) or sgd.")
    lr: float = knob("recipe", 1e-3, "Learning rate (the one tuned for `base_batch` when `lr_scaling` is set).")
    momentum: float = knob("recipe", 0.0, "SGD momentum.")
    weight_decay: float = knob("recipe", 0.0, "L2 weight decay of the optimiser.")
    lr_schedule: LrSchedule = only("torch", "recipe", "constant", "`onecycle`: PyTorch's OneCycleLR to `lr` over "
                                   "the run (torch only; the fast GPU schedule).")
    label_smoothing: float = only("torch", "recipe", 0.0, "Cross-entropy label smoothing.")
    dropout: float = knob("recipe", 0.25, "The paper does not state its dropout rate; 0.25 is ours, the same in "
                          "every framework.")
    init: InitMode = knob("recipe", "framework", "`framework`: each framework's default initialisation and Adam "
                          "epsilon, as users meet them (the paper's setting). `aligned`: the same initial weights "
                          "(drawn once from `seed`, models/init.py) and optimiser constants in every engine "
                          "(docs/definitions.md).", identity="unless-default")
    # ------------------------------------------------------------------------------------------- levers
    lr_scaling: LrScaling = knob("levers", "none", "`linear` / `sqrt`: the rate used is `lr` × (batch_size ÷ "
                                 "base_batch), or its square root (Goyal et al., arXiv:1706.02677; docs/levers.md).",
                                 identity="unless-default")
    base_batch: int | None = knob("levers", None, "The global batch `lr` was tuned for (needed by `lr_scaling`).",
                                  identity="unless-default")
    warmup_epochs: int = knob("levers", 0, "Gradual warm-up: the rate ramps linearly, step by step, to its scaled "
                              "value over this many epochs.", identity="unless-default")
    grad_accum: int = knob("levers", 1, "Micro-batches per optimiser step on each worker: each takes batch_size ÷ "
                           "(workers × grad_accum).", identity="unless-default")
    grad_compression: str = only("torch", "levers", "none", "`fp16`, `bf16`, `powersgd[:rank]`: gradients "
                                 "compressed for the DDP all-reduce (torch's communication hooks).",
                                 hint="it is a torch DDP communication hook", identity="unless-default")
    sync_batchnorm: bool = only("torch", "levers", False, "SyncBatchNorm: batch statistics over every DDP worker.")
    precision: Precision = knob("levers", "fp32", "`auto`: bf16 where it was measured faster at the same accuracy "
                                "(the PyTorch engine on a GPU or a CPU with native bfloat16), else fp32; the engine "
                                "records the choice and why (`extra.precision_auto`).")
    target_accuracy: float | None = knob("levers", None, "Record the training time to the end of the first epoch "
                                         "whose test accuracy reaches this (0 < A <= 1).", identity="unless-default")
    stop_at_target: bool = knob("levers", False, "End training after the first epoch that reaches "
                                "`target_accuracy` (the run is complete then).", identity="unless-default")
    # --------------------------------------------------------------------------------------------- data
    dataset: Dataset = knob("data", "mnist", "One of KNOWN_DATASETS (docs/datasets.md).")
    image_size: int | None = knob("data", None, "`synthetic` only: side of the square images (default 32).",
                                  identity="unless-default")
    channels: int | None = knob("data", None, "`synthetic` only: colour channels (default 3).",
                                identity="unless-default")
    classes: int | None = knob("data", None, "`synthetic` only: number of classes (default 10).",
                               identity="unless-default")
    augment: bool = knob("data", False, "Random crop (zero padding 4) and horizontal flip of every training image, "
                         "on the device (cifar10 and synthetic only: a flipped digit is another class).",
                         identity="unless-default")
    limit_train: int | None = knob("data", None, "Use the first N training images (a declared subset).")
    limit_test: int | None = knob("data", None, "Use the first N test images.")
    data_dir: str | None = knob("data", None, "Dataset folder (else $PVISION_DATA_DIR, else the user cache).",
                                identity="never")
    # -------------------------------------------------------------------------------------------- model
    model: str = knob("model", "paper_cnn", "One of KNOWN_MODELS, defined identically in every framework "
                      "(docs/models.md).", identity="unless-default")
    memory_format: MemoryFormat = only("torch", "model", "channels_last", "Tensor layout of images and "
                                       "convolution weights.")
    fused_bn: bool = only("torch", "model", True, "On CPU, run each BatchNorm → ReLU → 2×2 max-pool as one "
                          "autograd step that keeps 28 % less for backward and is faster, with the reference's "
                          "gradients bit for bit under inplace_bn_backward off (models/torch_fused.py). Off: the "
                          "reference modules. Not used with compile or sync_batchnorm, which bring their own "
                          "BatchNorm.", identity="unless-default")
    recompute_stem: bool = only("torch", "model", False, "With the fused step: keep only the input of the first "
                                "conv → BatchNorm → ReLU block and recompute the block in backward (196 MiB less at a "
                                "1024 per-worker batch, same gradients bit for bit, a conv and a BatchNorm forward "
                                "more; models/torch_recompute.py).", identity="unless-default")
    inplace_bn_backward: bool = only("torch", "model", True, "With the fused step: BatchNorm's input gradient "
                                     "computed in place of the pool's gradient (2 full-size buffers less at the "
                                     "memory peak, ~0.5 GiB less per DDP worker at the same speed; within fp32 "
                                     "rounding of the reference, not bit-identical: off for the reference's bits; fp32 "
                                     "only, ATen's kernel under bf16 autocast).",
                                     identity="unless-default")
    # -------------------------------------------------------------------------------------------- speed
    threads_per_worker: int | None = knob("speed", None, "CPU threads per worker; None means cores ÷ processes.")
    pin_threads: bool = knob("speed", False, "Pin each CPU worker process to its own cores (Linux affinity).")
    compile: bool = only("torch", "speed", False, "torch.compile the model (compile time reported apart).",
                         hint="use jit_compile for TensorFlow")
    compile_mode: CompileMode = only("torch", "speed", "default", "torch.compile's mode, e.g. reduce-overhead.")
    jit_compile: bool = only("tensorflow", "speed", False, "XLA-compile the Keras model.",
                             hint="use compile for torch; the JAX engine always compiles with XLA")
    malloc_tuning: bool = only("torch", "speed", True, "Keep the allocator from returning freed memory to the OS "
                               "between steps (torch CPU workers).")
    allocator: Allocator = only("torch", "speed", "auto", "C allocator of torch CPU workers: auto (tcmalloc where "
                                "installed, else glibc), glibc or tcmalloc (allocator.py; docs/performance.md).",
                                identity="unless-default")
    eval_batch_size: int = knob("speed", 500, "Test images per forward pass when evaluating (no effect on results). "
                                "500 keeps the no-grad activations small: at 2000 a CPU worker's peak memory was "
                                "~0.6 GiB higher, at no gain in speed.")
    deterministic: bool = knob("speed", False, "Deterministic kernels (slower; bit-identical reruns).")
    # ------------------------------------------------------------------------------------------ outputs
    out_dir: str | None = knob("outputs", None, "Output folder (default runs/<stamp>-...).", identity="never")
    checkpoint_every: int = only("torch", "outputs", 0, "Also checkpoint every N optimiser steps (0: only at "
                                 "epoch ends).", hint="TensorFlow backs up at every epoch end", identity="never")
    resume: bool = knob("outputs", False, "Continue the unfinished run in `out_dir` from its checkpoint.",
                        identity="never")
    tensorboard: bool = knob("outputs", True, "Write TensorBoard scalars under OUT/tb.", identity="never")
    master_port: int | None = only("torch", "outputs", None, "Rendezvous port of a spawned DDP run on 127.0.0.1 "
                                   "(None: a free one, chosen at launch).", identity="never")
    collective_timeout: float | None = knob("outputs", None, "Seconds a lost peer may stay silent before the run "
                                            "ends with exit code 75. torch DDP: a collective, the rendezvous store and "
                                            "the step-progress watchdog wait this long (None: $PVISION_DIST_TIMEOUT_S "
                                            "if set, else 300); JAX multiworker: the coordination service's heartbeat "
                                            "timeout (None: JAX's 100 s). docs/reliability.md.", identity="never")
    extra: dict[str, Any] = knob("outputs", {}, "Free-form labels (e.g. the bench preset); never read by an engine.",
                                 identity="never")

    def __post_init__(self) -> None:
        validate(self)

    # ----------------------------------------------------------------- derived
    @property
    def strategy_spec(self) -> strategies.StrategySpec:
        """This run's row of the strategy table."""
        return strategies.get(self.framework, self.strategy)

    @property
    def data_replicas(self) -> int:
        """How many parts the global batch is split into: the workers, or 1 where every worker takes the whole
        batch (tensor parallelism: strategies.StrategySpec.same_batch)."""
        return 1 if self.strategy_spec.same_batch else self.workers

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.data_replicas

    @property
    def pipeline_microbatches(self) -> int:
        """pipeline: the micro-batches of one step (`microbatches`, else 4 per stage)."""
        return self.microbatches if self.microbatches is not None else 4 * self.workers

    @property
    def micro_batch(self) -> int:
        """Images one worker pushes through forward and backward at a time (per-worker batch ÷ grad_accum)."""
        return self.per_worker_batch // self.grad_accum

    @property
    def compression(self) -> tuple[str, int | None]:
        """`grad_compression` parsed: (kind, PowerSGD rank or None)."""
        kind, _, rank = self.grad_compression.partition(":")
        if kind == "powersgd":
            return kind, int(rank) if rank else POWERSGD_DEFAULT_RANK
        return kind, None

    @property
    def is_distributed(self) -> bool:
        """Each worker is its own OS process."""
        return self.strategy_spec.processes == "per-worker"

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
        for f in dataclasses.fields(self):
            rule = f.metadata["identity"]
            if rule == "never" or (rule == "unless-default" and d[f.name] == f.default):
                d.pop(f.name)  # an unless-default field at its default keeps the identity runs had before it
        return d

    @property
    def synthetic_shape(self) -> tuple[int, int, int]:
        """(channels, image_size, classes) of a `synthetic` run, defaults filled in."""
        return (self.channels or SYNTHETIC_DEFAULT_SHAPE["channels"],
                self.image_size or SYNTHETIC_DEFAULT_SHAPE["image_size"],
                self.classes or SYNTHETIC_DEFAULT_SHAPE["classes"])


FIELD_ENGINE: dict[str, str] = {f.name: f.metadata["engine"] for f in dataclasses.fields(RunConfig)
                                 if "engine" in f.metadata}


def differing_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the identity fields two configs disagree on, for a message the user can act on."""
    return sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroups affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def reached_target(cfg: RunConfig, test_accuracy: float | None) -> bool:
    """Whether a finished epoch with this test accuracy ends a `stop_at_target` run."""
    return bool(cfg.stop_at_target and cfg.target_accuracy is not None and test_accuracy is not None
                and test_accuracy >= cfg.target_accuracy)
