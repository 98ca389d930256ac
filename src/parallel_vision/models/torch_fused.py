"""BatchNorm → ReLU → 2×2 max-pool as one autograd step that keeps less and reads memory fewer times.

Why: on a CPU the paper CNN's step is half memory-bound passes (docs/performance.md). The reference
modules each save their own input for backward, so a conv block that ends in a pool keeps three
tensors: the BatchNorm input, the ReLU output (the pool's input, full size) and the pool's indices.
`BatchNormReLUMaxPool2d` keeps only the BatchNorm input, the pooled output (which the next layer keeps
anyway) and the indices, as int16 instead of int64: for the paper CNN's two pooled blocks that is
383 KB per image less (37 % of what a step holds), and ReLU's backward runs on the pooled gradient, a
quarter of the size.

The gradient is the reference's, bit for bit: the reference scatters the pooled gradient to each
window's arg-max and then zeroes it where the ReLU output is not positive. At an arg-max the ReLU
output *is* the pooled value, so zeroing the pooled gradient where the pooled value is not positive
and then scattering gives the same numbers, without the full-size ReLU output.

This is the in-place-activated BatchNorm idea (Rota Bulò et al., CVPR 2018) adapted to a plain ReLU:
InPlace-ABN recovers the BatchNorm input from its output, which needs an invertible activation
(leaky ReLU); with ReLU the input must be kept, and the saving comes from the pool instead. The
module is a `BatchNorm2d` with the same parameters and buffers, so `fuse_bn_relu_pool` swaps it in
(the ReLU and pool become `nn.Identity`, as `torch.ao.quantization.fuse_modules` does) and state
dicts, checkpoints and canonical weights load into either path unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

_POOL = ([2, 2], [2, 2], [0, 0], [1, 1], False)  # kernel, stride, padding, dilation, ceil_mode


class _BatchNormReLUMaxPool(torch.autograd.Function):
    """Training-mode BatchNorm (batch statistics, running stats updated) → ReLU → max-pool 2×2."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,  # type: ignore[override]
                running_mean: torch.Tensor, running_var: torch.Tensor, momentum: float, eps: float,
                inplace_backward: bool) -> torch.Tensor:
        z, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var,
                                                           True, momentum, eps)
        z.relu_()
        pooled, indices = torch.ops.aten.max_pool2d_with_indices(z, *_POOL)
        del z  # the full-size ReLU output is not kept: this is the saving
        # The arg-max positions index one H×W plane: int16 holds them for planes up to 32,767 pixels, at a
        # quarter of ATen's int64 (the pool backward gets them back as int64).
        indices = indices.to(_index_dtype(x))
        ctx.save_for_backward(x, weight, running_mean, running_var, mean, invstd, pooled, indices)
        ctx.eps, ctx.inplace_backward = eps, inplace_backward
        return pooled

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_pooled: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, weight, running_mean, running_var, mean, invstd, pooled, indices = ctx.saved_tensors
        # The incoming gradient in the input's layout: otherwise ATen's pool backward converts the
        # full-size gradient to contiguous and back (two full-size copies after a Flatten).
        grad = grad_pooled.contiguous(memory_format=_layout(x))
        grad = torch.ops.aten.threshold_backward(grad, pooled, 0)  # ReLU, on the pooled size
        grad_z = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *_POOL, indices.long())
        # Freed before BatchNorm's backward, where this step's memory peaks (benchmarks/memory_timeline.py):
        # the incoming gradient stays referenced by autograd until we return, our pooled-size copies need not.
        del grad
        # In place only where the activations are in the parameters' precision: under bf16 autocast the
        # mixed-dtype passes would be slower than ATen's bf16 kernel (and the maps are half the size anyway).
        if ctx.inplace_backward and ctx.needs_input_grad[0] and x.dtype == weight.dtype:
            grad_x, grad_w, grad_b = _batch_norm_backward_in_place(grad_z, x, weight, mean, invstd, eps=ctx.eps)
        else:
            grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
                grad_z, x, weight, running_mean, running_var, mean, invstd, True, ctx.eps,
                [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _batch_norm_backward_in_place(grad_z: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                                  invstd: torch.Tensor, *, eps: float) -> tuple[torch.Tensor, ...]:
    """Training-mode BatchNorm backward that turns the pool's gradient into the input gradient where it lies.

    Why: ATen's CPU kernel allocates the full-size input gradient, and a second full-size buffer it never uses
    (docs/performance.md, "Memory"): at the second block that is 2 × 196 MiB at a per-worker batch of 1024,
    alive at the worker's memory peak. Here ATen still computes the weight and bias gradients (its reductions,
    bit-identical); the input gradient, k·dy + c1·x + c0 per channel with k = γ·invstd,
    c1 = −k·invstd·Σ(dy·x̂)/M, c0 = −k·Σdy/M − c1·mean, is two in-place passes over `grad_z`. Same formula as
    ATen's, other rounding: within fp32 rounding of the reference, not bit-identical (tests/test_torch_fused.py).
    """
    _, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
        grad_z, x, weight, None, None, mean, invstd, True, eps, [False, True, True])
    count = x.numel() // x.shape[1]
    k = weight * invstd
    c1 = -(k * invstd * grad_w) / count
    c0 = -k * (grad_b / count) - c1 * mean
    grad_x = torch.addcmul(c0.view(1, -1, 1, 1), grad_z, k.view(1, -1, 1, 1), out=grad_z)
    return grad_x.addcmul_(x, c1.view(1, -1, 1, 1)), grad_w, grad_b


def _index_dtype(x: torch.Tensor) -> torch.dtype:
    plane = x.shape[-2] * x.shape[-1]
    return torch.int16 if plane <= torch.iinfo(torch.int16).max else torch.int32 if plane <= 2**31 - 1 else torch.int64


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format


class BatchNormReLUMaxPool2d(nn.BatchNorm2d):
    """`BatchNorm2d` → `ReLU` → `MaxPool2d(2)` in one module; the fused autograd step when training.

    Evaluation, frozen statistics and anything the fused step does not cover (no affine parameters,
    no running statistics, a cumulative-average momentum) run the three reference functions.
    `inplace_backward` (`fuse_bn_relu_pool(inplace_backward=True)`): `_batch_norm_backward_in_place`.
    """

    inplace_backward: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fusable = (self.training and self.affine and self.track_running_stats and self.momentum is not None
                   and self.running_mean is not None and self.running_var is not None and x.dim() == 4)
        if not fusable:
            return F.max_pool2d(F.relu(super().forward(x)), 2)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        return _BatchNormReLUMaxPool.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                           float(self.momentum), float(self.eps), self.inplace_backward)


def _is_pool2(module: nn.Module) -> bool:
    def pair(v: Any) -> tuple[Any, Any]:
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # type: ignore[return-value]
    return (isinstance(module, nn.MaxPool2d) and pair(module.kernel_size) == (2, 2)
            and pair(module.stride) == (2, 2) and pair(module.padding) == (0, 0)
            and pair(module.dilation) == (1, 1) and not module.ceil_mode and not module.return_indices)


def fuse_bn_relu_pool(model: nn.Module, inplace_backward: bool = False) -> int:
    """Replace every `BatchNorm2d, ReLU, MaxPool2d(2)` run inside an `nn.Sequential` by the fused module.

    Returns how many were fused. The ReLU and pool slots become `nn.Identity`, so module indices and
    state-dict keys stay those of the reference model.
    """
    fused = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b, c in zip(names, names[1:], names[2:], strict=False):
            bn, relu, pool = module._modules[a], module._modules[b], module._modules[c]
            if (type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats
                    and isinstance(relu, nn.ReLU) and _is_pool2(pool)):
                replacement = BatchNormReLUMaxPool2d(bn.num_features, bn.eps, bn.momentum,
                                                     device=bn.weight.device, dtype=bn.weight.dtype)
                replacement.load_state_dict(bn.state_dict())
                replacement.train(bn.training)
                replacement.inplace_backward = inplace_backward
                module._modules[a] = replacement
                module._modules[b] = nn.Identity()
                module._modules[c] = nn.Identity()
                fused += 1
    return fused
