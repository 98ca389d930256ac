"""The sharded strategies, built from PyTorch's own implementations: `zero1`, `fsdp` and `tensor`.

- `zero1`: DistributedDataParallel with `torch.distributed.optim.ZeroRedundancyOptimizer`: gradients are
  all-reduced as under DDP; each rank keeps the optimizer state of its own part of the parameters, steps that
  part, and broadcasts it to the others after the step.
- `fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard`) on each unit of the model (`models.torch_zoo.shard_units`),
  then on the root, over a one-dimensional DeviceMesh: parameters, gradients and optimizer state are sharded;
  each unit's parameters are all-gathered for its forward (and again for backward when resharded) and its
  gradients reduce-scattered.
- `tensor`: tensor parallelism (`tensor_parallel.py`): wide_mlp's fc1 column-wise, bn1 by feature and fc2
  row-wise over a DeviceMesh; every rank takes the whole batch.

Everything outside this module sees the same Trainer: `full_model_state` / `full_optimizer_state` give the plain
single-model state dicts (on rank 0; collectives, so every rank calls them), `load_full_state` puts such dicts
back on every rank. Checkpoints and model.pt therefore keep one format for every strategy.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from parallel_vision.engines.torch import pipeline
from parallel_vision.models.torch_zoo import shard_units

if TYPE_CHECKING:
    from parallel_vision.config import RunConfig

SHARDED = ("zero1", "fsdp", "tensor")
#: Strategies whose parameters are DTensors: their plain state dicts are gathered (a collective on every rank).
DTENSOR_STATE = ("fsdp", "tensor")


def fully_shard_model(model: nn.Module, cfg: RunConfig, device: torch.device) -> nn.Module:
    """FSDP2 on every unit, then the root, over all ranks (`cfg.reshard_after_forward`: ZeRO-3 vs ZeRO-2)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh, reshard_after_forward=cfg.reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=cfg.reshard_after_forward)
    if device.type == "cpu":
        # Gloo's AVG reduce-scatter has returned gradients x world size in some releases (pytorch/pytorch#162338):
        # reduce with SUM and divide, which the parity test checks against DDP on the pinned torch.
        model.set_force_sum_reduction_for_comms(True)  # type: ignore[operator]
    return model


def zero1_optimizer(params: Any, optimizer_class: type[torch.optim.Optimizer],
                    **options: Any) -> torch.optim.Optimizer:
    """`optimizer_class` wrapped by ZeroRedundancyOptimizer: each rank keeps the state of its share only."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(params, optimizer_class=optimizer_class, **options)


def is_sharded(cfg: RunConfig) -> bool:
    return cfg.strategy in SHARDED


def state_is_collective(cfg: RunConfig) -> bool:
    """Under fsdp, tensor and pipeline the plain model's state dict is assembled from every rank
    (`full_model_state`): every rank must call it."""
    return cfg.strategy in (*DTENSOR_STATE, "pipeline")


def forward_is_collective(cfg: RunConfig) -> bool:
    """Under FSDP every forward all-gathers, under tensor it all-reduces: all ranks must run the same number of
    them (evaluation too)."""
    return cfg.strategy in DTENSOR_STATE


def zero1_share(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the parameters whose optimizer state this rank owns: ZeroRedundancyOptimizer's local optimizer
    holds exactly those (its sorted-greedy assignment: one dominant tensor makes the shares uneven)."""
    local = optimizer.optim  # type: ignore[attr-defined]
    return sum(p.numel() * p.element_size() for group in local.param_groups for p in group["params"])


# --------------------------------------------------------------------------- the plain state dicts
def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_model_state(cfg: RunConfig, model: nn.Module) -> dict[str, torch.Tensor] | None:
    """Collective under fsdp and tensor: the plain model's state dict on CPU, on rank 0 (None on the others); under
    pipeline (collective too) the stages' entries merged, on every rank."""
    if cfg.strategy == "pipeline":
        return pipeline.merged_state(model)
    if cfg.strategy not in DTENSOR_STATE:
        bare = model.module if hasattr(model, "module") else model
        return {k: v.detach().to("cpu", copy=True) for k, v in bare.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(cpu_offload=True))
    return state if dist.get_rank() == 0 else None


def full_optimizer_state(cfg: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Collective under zero1, fsdp and tensor: the whole optimizer's state dict on rank 0 (None on the other ranks
    of a sharded strategy); every rank's own copy under the replicated ones."""
    if cfg.strategy == "pipeline":  # each stage's own optimizer: every stage's state dict, in stage order
        return pipeline.stage_optimizer_states(optimizer)
    if cfg.strategy == "zero1":
        optimizer.consolidate_state_dict(to=0)  # type: ignore[attr-defined]
        return copy.deepcopy(optimizer.state_dict()) if dist.get_rank() == 0 else None
    if cfg.strategy in DTENSOR_STATE:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
        return copy.deepcopy(state) if dist.get_rank() == 0 else None
    return copy.deepcopy(optimizer.state_dict())


def load_full_state(cfg: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                    model_state: dict[str, torch.Tensor] | None, optimizer_state: dict[str, Any] | None) -> None:
    """Put plain state dicts back (rank 0's is the one used under zero1, fsdp and tensor; collective there). Under
    pipeline every rank has both (the checkpoint is handed to every rank) and takes its stage's part."""
    if cfg.strategy == "pipeline":
        assert model_state is not None and optimizer_state is not None
        pipeline.load_state(model, optimizer, model_state, optimizer_state)
        return
    if cfg.strategy in DTENSOR_STATE:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        options = _options(broadcast_from_rank0=True)
        first = dist.get_rank() == 0
        set_model_state_dict(model, model_state if first and model_state is not None else {}, options=options)
        set_optimizer_state_dict(model, optimizer, copy.deepcopy(optimizer_state) if first else {}, options=options)
        return
    bare = model.module if hasattr(model, "module") else model
    assert model_state is not None  # the replicated strategies (and zero1's DDP) have it on every rank
    bare.load_state_dict(model_state)
    if cfg.strategy == "zero1":
        holder = [optimizer_state if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(holder, src=0)
        optimizer_state = holder[0]
    optimizer.load_state_dict(copy.deepcopy(optimizer_state))


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a (possibly sharded) tensor: a DTensor's local shard, else the tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t
