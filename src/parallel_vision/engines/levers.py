"""The levers of data-parallel training, framework-free (docs/levers.md): the learning rate each optimiser
step uses (LR scaling and Goyal et al.'s gradual warm-up), what result.json records about them, and whether
this CPU computes bfloat16 natively (`provenance.native_bf16`, the answer result.json records too).

Every engine adapts `lr_at` (torch: a LambdaLR; Keras: a LearningRateSchedule over the same numbers), so both
engines use the same learning rate at every step; `tests/test_levers.py` checks it step by step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from parallel_vision.config import RunConfig
from parallel_vision.engines.common import steps_per_epoch
from parallel_vision.provenance import native_bf16


def scale_factor(cfg: RunConfig) -> float:
    """How much `lr_scaling` multiplies the tuned rate: global batch ÷ base batch (linear), its root (sqrt), 1."""
    if cfg.lr_scaling == "none" or cfg.base_batch is None:
        return 1.0
    ratio = cfg.batch_size / cfg.base_batch
    return ratio if cfg.lr_scaling == "linear" else math.sqrt(ratio)


def effective_lr(cfg: RunConfig) -> float:
    """The rate after scaling: the peak of the run (`onecycle`'s max_lr, the constant rate after warm-up)."""
    return cfg.lr * scale_factor(cfg)


def warmup_steps(cfg: RunConfig, steps: int) -> int:
    """Optimiser steps of the warm-up: `warmup_epochs` × steps per epoch."""
    return cfg.warmup_epochs * steps


def warmup_start(cfg: RunConfig) -> float:
    """Where the warm-up starts: Goyal et al.'s η, the tuned `lr`, when scaling raised the rate above it;
    otherwise 0 (the ramp is then the common linear warm-up from zero)."""
    target = effective_lr(cfg)
    return cfg.lr if target > cfg.lr else 0.0


def lr_at(cfg: RunConfig, step: int, steps: int) -> float:
    """The rate optimiser step `step` (0-based, over the whole run) uses under the `constant` schedule.

    Warm-up: step s < W = warmup_epochs × steps uses start + (target − start) × (s + 1) ÷ W, a straight line
    that reaches the target at the warm-up's last step; every later step uses the target."""
    target = effective_lr(cfg)
    ramp = warmup_steps(cfg, steps)
    if step >= ramp:
        return target
    start = warmup_start(cfg)
    return start + (target - start) * (step + 1) / ramp


def lr_sequence(cfg: RunConfig, n_train: int) -> list[float]:
    """The rate of every optimiser step of the run (the `constant` schedule), for the engines and the tests."""
    steps = steps_per_epoch(n_train, cfg.batch_size)
    return [lr_at(cfg, s, steps) for s in range(steps * cfg.epochs)]


def needs_schedule(cfg: RunConfig) -> bool:
    """Whether the rate varies or differs from `lr` (else the engines keep their plain constant rate)."""
    return cfg.lr_schedule != "constant" or cfg.warmup_epochs > 0 or scale_factor(cfg) != 1.0


def schedule_record(cfg: RunConfig, n_train: int) -> dict[str, Any]:
    """What result.json's summary says about the learning rate actually used."""
    steps = steps_per_epoch(n_train, cfg.batch_size)
    if cfg.lr_schedule == "onecycle":
        text = f"onecycle to {effective_lr(cfg):.4g}"
    elif cfg.warmup_epochs:
        text = (f"linear warm-up {warmup_start(cfg):.4g} → {effective_lr(cfg):.4g} over {warmup_steps(cfg, steps)}"
                f" steps, then constant")
    else:
        text = f"constant {effective_lr(cfg):.4g}"
    return {"lr_effective": effective_lr(cfg), "lr_schedule_used": text,
            "warmup_steps": warmup_steps(cfg, steps), "grad_accum": cfg.grad_accum, "micro_batch": cfg.micro_batch}


# --------------------------------------------------------------------------- bfloat16 on the CPU
def bf16_refusal(on_gpu: bool, cpuinfo: str | None = None) -> str | None:
    """The one-line reason a CPU run cannot use bf16 (emulated bfloat16 is many times slower), or None."""
    if on_gpu or native_bf16(cpuinfo):
        return None
    return ("precision bf16 on a CPU without native bfloat16 (no avx512_bf16/amx_bf16 in /proc/cpuinfo) would be "
            "emulated and slow; use fp32")


def auto_precision(framework: str, on_gpu: bool, gpu_bf16: bool = False,
                   cpuinfo: str | None = None) -> tuple[str, str]:
    """What `--precision auto` trains in, and why: bf16 only where it was measured faster at the same
    accuracy (docs/performance.md, "bf16 on CPUs"); fp32, the reference, everywhere else."""
    if framework != "torch":
        return "fp32", (f"auto: fp32, the reference; bf16 was measured faster only with the PyTorch engine, "
                        f"not with {framework}")
    if on_gpu:
        if gpu_bf16:
            return "bf16", "auto: bf16 autocast on a GPU with bfloat16 support (faster than fp32 on an H100)"
        return "fp32", "auto: fp32; this GPU has no bfloat16 support"
    if native_bf16(cpuinfo):
        return "bf16", ("auto: bf16 autocast, this CPU computes bfloat16 natively (avx512_bf16/amx_bf16); "
                        "measured 1.5-1.7x fp32 at the same full-MNIST accuracy on such a CPU")
    return "fp32", "auto: fp32; this CPU has no native bfloat16 (emulated bf16 ran at 0.36x fp32)"


def resolve_precision(cfg: RunConfig, on_gpu: bool, gpu_bf16: bool = False) -> RunConfig:
    """`cfg` with `precision='auto'` replaced by the choice, the reason kept in `extra['precision_auto']`
    (result.json's config records both); any other precision unchanged."""
    if cfg.precision != "auto":
        return cfg
    chosen, why = auto_precision(cfg.framework, on_gpu, gpu_bf16)
    return dataclasses.replace(cfg, precision=chosen, extra={**cfg.extra, "precision_auto": why})
