"""What the Trainer is made of: the model, its strategy wrapping, optimiser, schedule and precision.

`wrap` is the one place where the strategies differ in how the model is held, `optimizer` the one place where
zero1 differs (its optimizer is sharded); everything else is the same for all.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from parallel_vision.config import RunConfig
from parallel_vision.engines import levers
from parallel_vision.engines.common import steps_per_epoch
from parallel_vision.engines.torch import pipeline, sharding, tensor_parallel
from parallel_vision.engines.torch.comm import CommTimer
from parallel_vision.engines.torch.pipeline_step import PipelineStep
from parallel_vision.engines.torch.sync_batchnorm import convert_sync_batchnorm
from parallel_vision.models import init as model_init
from parallel_vision.models.torch_fused import BatchNormReLUMaxPool2d, fuse_bn_relu_pool
from parallel_vision.models.torch_recompute import recompute_stem
from parallel_vision.models.torch_zoo import build_torch_model, load_canonical

#: loop.Trainer (not imported: the loop imports this module).
Trainer = Any

if TYPE_CHECKING:
    import numpy as np


def build_model(cfg: RunConfig, image_shape: tuple[int, int, int], classes: int, device: torch.device) -> nn.Module:
    """The configured zoo model with the seed's initial weights (identical on every rank), on `device`."""
    torch.manual_seed(cfg.seed)
    channels, _, side = image_shape
    model: nn.Module = build_torch_model(cfg.model, channels, side, classes, cfg.dropout)
    if cfg.init == "aligned":  # the framework-free weights every engine starts from (models/init.py)
        load_canonical(model, model_init.aligned_weights(cfg.seed, channels, side, classes, model=cfg.model))
    model = model.to(device)
    if cfg.memory_format == "channels_last" and cfg.strategy != "fsdp":  # FSDP2 shards contiguous parameters
        model = model.to(memory_format=torch.channels_last)  # only: under fsdp the images alone are channels_last
    if uses_fused_bn(cfg, device):
        fuse_bn_relu_pool(model, inplace_backward=cfg.inplace_bn_backward)
        if cfg.recompute_stem:
            recompute_stem(model)
    return model


def uses_fused_bn(cfg: RunConfig, device: torch.device) -> bool:
    """`fused_bn` where it was measured and applies: CPU (on CUDA the reference modules run cuDNN's
    BatchNorm), no torch.compile (which fuses by itself), no sync_batchnorm (which swaps BatchNorm out)."""
    return cfg.fused_bn and device.type == "cpu" and not cfg.compile and not cfg.sync_batchnorm


def fused_bn_blocks(model: nn.Module) -> int:
    """How many BatchNorm → ReLU → max-pool runs of `model` train as one fused step (recorded in result.json)."""
    return sum(isinstance(m, BatchNormReLUMaxPool2d) for m in model.modules())


def _ddp(model: nn.Module, cfg: RunConfig, device: torch.device, comm: CommTimer) -> nn.Module:
    """DistributedDataParallel: gradients all-reduced per bucket, timed by `comm` (and compressed by its hook)."""
    if cfg.sync_batchnorm:
        model = convert_sync_batchnorm(model, device.type)
    ids = [device.index] if device.type == "cuda" else None
    model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    comm.attach(model, cfg)  # type: ignore[arg-type]
    return model


#: The engine code of each torch row of the strategy table (a test keeps the keys equal to the table's).
WRAPPERS: dict[str, Callable[[nn.Module, RunConfig, torch.device, CommTimer], nn.Module]] = {
    "single": lambda model, cfg, device, comm: model,
    "dp": lambda model, cfg, device, comm: nn.DataParallel(model, device_ids=list(range(cfg.workers))),
    "ddp": _ddp,
    "zero1": _ddp,  # the sharding is the optimizer's (`optimizer`)
    "fsdp": lambda model, cfg, device, comm: sharding.fully_shard_model(model, cfg, device),
    "pipeline": lambda model, cfg, device, comm: pipeline.build_stage(model, cfg, device, autocast(cfg, device)),
    "tensor": lambda model, cfg, device, comm: tensor_parallel.tensor_parallel_model(model, device),
}


def wrap(model: nn.Module, cfg: RunConfig, device: torch.device, comm: CommTimer) -> nn.Module:
    """The strategy: the model wrapped as `cfg.strategy` says (WRAPPERS)."""
    return WRAPPERS[cfg.strategy](model, cfg, device, comm)


class LocalStep:
    """The step object of every data-parallel strategy: the Trainer's own step (`_local_step`) on this rank's share
    of the batch, and its evaluation of this rank's shard of the test set."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        cfg = trainer.cfg
        self.sampler = (trainer.data_rank, cfg.data_replicas)  # (part, parts) of each global batch
        #: How many ranks hold each image's loss and correctness: 1, or every rank where all take the whole batch.
        self.copies = trainer.dist.world_size // cfg.data_replicas

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.trainer._local_step(x, y)

    def evaluate(self) -> tuple[float, float, np.ndarray | None]:
        return self.trainer._evaluate_shards()


def stepper(trainer: Trainer) -> LocalStep | PipelineStep:
    """How the loop takes a step and evaluates: pipeline's schedule, or every other strategy's own step."""
    return PipelineStep(trainer) if trainer.cfg.strategy == "pipeline" else LocalStep(trainer)


def optimizer(cfg: RunConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """Adam or SGD over the model's parameters; under zero1 wrapped by ZeroRedundancyOptimizer."""
    fused = device.type == "cuda"  # one kernel for the whole update instead of one per tensor
    if cfg.optimizer == "adam":
        kind: type[torch.optim.Optimizer] = torch.optim.Adam
        options = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "fused": fused,
                   "eps": model_init.adam_epsilon("torch", cfg.init)}
    else:
        kind = torch.optim.SGD
        options = {"lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay, "fused": fused or None}
    if cfg.strategy == "zero1":
        return sharding.zero1_optimizer(model.parameters(), kind, **options)
    if cfg.strategy == "tensor":  # fused and foreach kernels refuse a list mixing DTensors and plain tensors (bn2
        options.update(fused=None, foreach=False)  # and fc3 stay plain): one update per tensor, the same arithmetic
    return kind(model.parameters(), **options)


def scheduler(cfg: RunConfig, optim: torch.optim.Optimizer, n_train: int) -> LRScheduler | None:
    """One-cycle over the whole run to the scaled rate; the framework-free warm-up / scaled constant rate of
    `engines.levers.lr_at` as a LambdaLR; or None for the plain constant `lr` (checkpoints record None)."""
    if not levers.needs_schedule(cfg):
        return None
    steps = steps_per_epoch(n_train, cfg.batch_size)
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=levers.effective_lr(cfg),
                                                   total_steps=steps * cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optim, lambda step: levers.lr_at(cfg, step, steps) / cfg.lr)


def autocast(cfg: RunConfig, device: torch.device) -> Callable[[], Any]:
    """A factory of the forward pass's precision context: autocast for bf16/fp16, nothing for fp32."""
    if cfg.precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device.type, dtype=dtype)


def grad_scaler(cfg: RunConfig, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16; a disabled scaler (scale, step and update pass straight through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
