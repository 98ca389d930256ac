"""Strategy `tensor`: Megatron's pairing of a column-parallel and a row-parallel layer, with PyTorch's own
`torch.distributed.tensor.parallel` styles over a one-dimensional DeviceMesh.

wide_mlp is Flatten → fc1 → bn1 → ReLU → Dropout → fc2 → bn2 → ReLU → Dropout → fc3. `ColwiseParallel` gives each
rank a block of fc1's output features (its weight rows and bias); bn1, ReLU and dropout act feature by feature, so
they run on that block where it lies: bn1's weight, bias and running statistics are sharded by feature
(`distribute_module`, Shard(0)) and DTensor's batch-norm rule keeps its input sharded on the feature dimension
(batch statistics reduce over the batch, which every rank holds whole). `RowwiseParallel` gives fc2 the matching
block of input features; each rank's partial product is summed by one all-reduce of the (batch × 4096) activations
in forward. bn2 and fc3 (41 k parameters) stay replicated and are computed identically on every rank from the
replicated fc2 output. Backward needs no all-reduce: the all-reduce's gradient is the identity, and the one
ColwiseParallel would issue for fc1's input gradient is skipped because the images need no gradient.

Every rank must therefore take the same batch (`strategies.StrategySpec.same_batch`), and draw the same dropout
masks for the replicated features (the same seed on every rank). On CUDA, DTensor's RNG tracker gives the sharded
features each rank's own offsets of one global mask; on the CPU it has none (torch warns once per process, which
is silenced here as said): each rank draws its block's mask from the same generator state, so features j and
j + 4096/world are dropped together. Dropout is still at its rate on every feature; the parity test runs without.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import nn

#: The plan for wide_mlp (models/torch_mlp.py): module name -> what it becomes.
COLUMN, FEATURE_SHARDED, ROW = "fc1", "bn1", "fc2"


def _shard_by_feature(name: str, module: nn.Module, mesh: object) -> None:
    """distribute_module's partition function: a BatchNorm's per-feature tensors split by feature (Shard(0))."""
    from torch.distributed.tensor import Shard, distribute_tensor

    for key, param in list(module.named_parameters(recurse=False)):
        module.register_parameter(key, nn.Parameter(distribute_tensor(param.data, mesh, [Shard(0)])))  # type: ignore[arg-type]
    for key in ("running_mean", "running_var"):
        buffer = module._buffers.get(key)
        if buffer is not None:
            module._buffers[key] = distribute_tensor(buffer, mesh, [Shard(0)])  # type: ignore[arg-type]


def tensor_parallel_model(model: nn.Module, device: torch.device) -> nn.Module:
    """wide_mlp with fc1 column-parallel, bn1 feature-sharded and fc2 row-parallel over all ranks, in place."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_module
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    warnings.filterwarnings("ignore", message="DTensor random operators may not have complete support on cpu")
    # fc1's output stays a DTensor sharded by feature, so bn1, ReLU and dropout see (and keep) its placement
    parallelize_module(model, mesh, {COLUMN: ColwiseParallel(use_local_output=False), ROW: RowwiseParallel()})
    distribute_module(getattr(model, FEATURE_SHARDED), mesh, _shard_by_feature)
    return model
