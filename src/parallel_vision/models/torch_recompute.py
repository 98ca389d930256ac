"""Recompute the paper CNN's first conv block in backward instead of keeping its two full-size maps.

Why: a DDP worker's memory peaks inside the second block's BatchNorm backward (docs/performance.md,
"Memory"), and alive at that moment are the first block's conv output and ReLU output, which autograd
keeps for the first BatchNorm's and the second conv's backward: 2 × 98 MiB at a per-worker batch of 1024.
`_RecomputedStem` runs conv1 → BatchNorm → ReLU → conv2 as one autograd step that keeps only the input
(3 MiB at that batch) and recomputes the block from it when its gradient is due, after the second block's
backward has returned. The recompute costs a conv1 and a BatchNorm forward.

The gradient is the reference's, bit for bit: the recompute runs the same kernels on the same input (the
batch statistics come out equal; the running statistics are not updated twice), conv2's backward is the
`convolution_backward` call its autograd node makes, and the block's own backward is autograd's.

The three modules keep their types' parameters and buffers and their places in the `nn.Sequential`
(conv1 and the BatchNorm pass the input through while the step runs in the conv2 slot; the ReLU slot
becomes `nn.Identity`), so state dicts, checkpoints and canonical weights load into either path unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


class _RecomputedStem(torch.autograd.Function):
    """conv1 → training-mode BatchNorm → ReLU → conv2; saves the input, not the two maps between."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, stem: StemConv2d, bn: StemBatchNormReLU,  # type: ignore[override]
                head: RecomputedStemConv2d, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = F.relu_(_bn(bn, _conv(stem, x), update=True))
            y = _conv(head, h)
        ctx.stem, ctx.bn, ctx.head = stem, bn, head
        ctx.save_for_backward(x, *params)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, *params = ctx.saved_tensors
        stem, bn, head = ctx.stem, ctx.bn, ctx.head
        w1, b1, gamma, beta, w2, b2 = params
        wants = ctx.needs_input_grad[4:]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(need) for t, need in zip((x, w1, b1, gamma, beta),
                                                                          (ctx.needs_input_grad[0], *wants[:4]),
                                                                          strict=True)]
            h = F.relu_(_bn(bn, _conv(stem, leaves[0], leaves[1], leaves[2]), update=False,
                            affine=(leaves[3], leaves[4])))
        # conv2's backward exactly as its autograd node calls it (ConvolutionBackward0).
        grad_h, grad_w2, grad_b2 = torch.ops.aten.convolution_backward(
            grad_y, h.detach(), w2, [w2.shape[0]], head.stride, head.padding, head.dilation, False, [0, 0],
            head.groups, [True, wants[4], wants[5]])
        inputs = [t for t in leaves if t.requires_grad]
        grads = iter(torch.autograd.grad(h, inputs, grad_h)) if inputs else iter(())
        block = [next(grads) if t.requires_grad else None for t in leaves]
        return (block[0], None, None, None, *block[1:], grad_w2, grad_b2)


def _conv(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor | None = None,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    return F.conv2d(x, conv.weight if weight is None else weight, conv.bias if bias is None else bias,
                    conv.stride, conv.padding, conv.dilation, conv.groups)


def _bn(bn: nn.BatchNorm2d, x: torch.Tensor, update: bool,
        affine: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Training-mode BatchNorm on the batch statistics; `update=False` (the recompute) leaves the running ones."""
    weight, bias = affine if affine is not None else (bn.weight, bn.bias)
    running = (bn.running_mean, bn.running_var) if update else (None, None)
    return torch.ops.aten.native_batch_norm(x, weight, bias, *running, True, float(bn.momentum), bn.eps)[0]


class StemConv2d(nn.Conv2d):
    """conv1: a `Conv2d` that passes its input through while the recomputed step runs (it runs in conv2's slot)."""

    group: tuple[Any, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if _recomputes(self.group, x) else super().forward(x)


class StemBatchNormReLU(nn.BatchNorm2d):
    """The first BatchNorm with the ReLU after it; passes its input through while the recomputed step runs."""

    group: tuple[Any, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if _recomputes(self.group, x) else F.relu(super().forward(x))


class RecomputedStemConv2d(nn.Conv2d):
    """conv2: runs conv1 → BatchNorm → ReLU → conv2 as `_RecomputedStem` when training, else plain conv2."""

    group: tuple[Any, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _recomputes(self.group, x):
            return super().forward(x)
        stem, bn = self.group[0], self.group[1]
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        return _RecomputedStem.apply(x, stem, bn, self, stem.weight, stem.bias, bn.weight, bn.bias,
                                     self.weight, self.bias)


def _recomputes(group: tuple[Any, ...], x: torch.Tensor) -> bool:
    """One decision for all three slots: training, fp32 (no autocast) and the BatchNorm the step covers."""
    if not group:
        return False
    stem, bn, head = group
    return (stem.training and bn.training and head.training and x.dim() == 4
            and not torch.is_autocast_enabled(x.device.type) and bn.momentum is not None
            and bn.running_mean is not None and bn.running_var is not None)


def _plain(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.bias is not None and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))


def recompute_stem(model: nn.Module) -> int:
    """Replace the first `Conv2d, BatchNorm2d, ReLU, Conv2d` run of `model`'s first `nn.Sequential` by the
    recomputed step; returns 1 if it did, else 0. Indices and state-dict keys stay the reference model's."""
    seq = next((m for m in model.modules() if isinstance(m, nn.Sequential)), None)
    if seq is None or len(seq) < 4:
        return 0
    names = list(seq._modules)[:4]
    conv1, bn, relu, conv2 = (seq._modules[n] for n in names)
    if not (_plain(conv1) and _plain(conv2) and type(bn) is nn.BatchNorm2d and bn.affine
            and bn.track_running_stats and isinstance(relu, nn.ReLU)):
        return 0
    swapped: list[nn.Module] = []
    for old, cls in ((conv1, StemConv2d), (bn, StemBatchNormReLU), (conv2, RecomputedStemConv2d)):
        old.__class__ = cls  # same parameters, buffers, hooks and device: only the forward changes
        swapped.append(old)
    group = tuple(swapped)
    for module in swapped:
        object.__setattr__(module, "group", group)  # not submodules: state-dict keys unchanged
    seq._modules[names[2]] = nn.Identity()
    return 1
