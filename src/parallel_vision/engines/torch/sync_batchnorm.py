"""Synchronised BatchNorm that also works on CPU (gloo), where `nn.SyncBatchNorm` refuses to run.

With DDP each replica normally normalises over its own shard of the batch, so
N workers are not the same computation as one device with the global batch.
Synchronising the batch statistics makes them the same (up to float rounding),
which is what the parity test checks. PyTorch's SyncBatchNorm is CUDA-only;
this module gathers per-replica (count, mean, variance) with the differentiable
`torch.distributed.nn.all_gather` and combines them with Chan's parallel formula,
so gradients flow through the statistics exactly as in the single-device case.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class GatheredBatchNorm(_BatchNorm):
    """BatchNorm over the union of every replica's batch (any dimensionality, any backend)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=x.dtype)
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        local = torch.cat([count, mean, var])
        stats = torch.stack(dist_nn.all_gather(local))  # (world, 1 + 2C), differentiable
        counts, means, variances = stats[:, :1], stats[:, 1 : 1 + x.shape[1]], stats[:, 1 + x.shape[1] :]
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_var = (counts * (variances + (means - g_mean) ** 2)).sum(0) / total
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.0
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
                    if self.momentum is None:
                        momentum = 1.0 / float(self.num_batches_tracked)
                unbiased = g_var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(g_mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.detach(), alpha=momentum)
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        y = (x - g_mean.view(shape)) * torch.rsqrt(g_var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """PyTorch's SyncBatchNorm on GPUs; GatheredBatchNorm where it cannot run (CPU)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GatheredBatchNorm):
        new = GatheredBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.to(next(iter(module.state_dict().values())).device)
        return new
    for name, child in module.named_children():
        setattr(module, name, _convert(child))
    return module
