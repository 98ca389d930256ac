"""What one worker holds, measured from the tensors it actually has (summary.state_bytes_per_worker and
summary.activation_bytes_per_worker), never from formulas: the report sets the formulas beside these.

- parameters, gradients, optimizer state: bytes of this rank's tensors after a training step (a DTensor counts
  its local shard; ZeroRedundancyOptimizer's state is its local optimizer's);
- unsharded_peak (fsdp): the most bytes of gathered (plain, not DTensor) parameters alive at once, sampled
  before and after every module's forward and backward of one training step;
- activations: bytes autograd saved for backward in one training step (each storage once; parameters not
  counted), recorded through `torch.autograd.graph.saved_tensors_hooks`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from parallel_vision.engines.torch.sharding import local_tensor

HOW = ("bytes of the tensors each rank holds after a training step: parameters and gradients (a sharded tensor's "
       "local shard), the optimizer state of its own optimizer; unsharded_peak: the most bytes of gathered "
       "parameters alive at once, sampled around every module's forward and backward of one step; activations: "
       "the bytes autograd saved for backward in one step (each storage once, parameters left out)")


def _bytes(t: torch.Tensor) -> int:
    local = local_tensor(t)
    return local.numel() * local.element_size()


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    inner = getattr(optimizer, "optim", optimizer)  # ZeroRedundancyOptimizer keeps its share in a local optimizer
    for state in inner.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                yield value


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """This rank's parameters, gradients and optimizer state, in bytes (call it after a step, before zero_grad)."""
    params = list(model.parameters())
    measured = {
        "parameters": sum(_bytes(p) for p in params),
        "gradients": sum(_bytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(_bytes(t) for t in optimizer_tensors(optimizer)),
    }
    return dict(measured, total=sum(measured.values()))


def summarise(per_rank: list[dict[str, Any]], unsharded_peak: int | None) -> dict[str, Any]:
    """summary.state_bytes_per_worker from every rank's `state_bytes` (in rank order): each kind's largest."""
    keys = ("parameters", "gradients", "optimizer", "total")
    return {**{k: max(int(r[k]) for r in per_rank) for k in keys},
            "per_rank": [{"rank": i, **{k: int(r[k]) for k in keys}} for i, r in enumerate(per_rank)],
            "unsharded_peak": unsharded_peak, "how": HOW}


class StepProbe:
    """One training step watched: gathered-parameter bytes around each module, and what autograd saves."""

    def __init__(self, model: nn.Module, watch_gathered: bool) -> None:
        self.model = model
        self.unsharded_peak: int | None = 0 if watch_gathered else None
        self.activation_bytes = 0
        self._seen: set[int] = set()
        self._handles: list[Any] = []

    def _plain_parameters(self) -> list[torch.Tensor]:
        """The parameters as they are now: FSDP swaps gathered plain tensors in for its sharded DTensors."""
        return [p for p in self.model.parameters() if not hasattr(p, "to_local")]

    def _sample(self, *_: Any) -> None:
        if self.unsharded_peak is not None:
            self.unsharded_peak = max(self.unsharded_peak,
                                      sum(p.numel() * p.element_size() for p in self._plain_parameters()))

    def _after_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._sample()
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda grad: self._sample())  # this module's backward is about to run

    def _pack(self, saved: torch.Tensor) -> torch.Tensor:
        t = local_tensor(saved)  # a DTensor's (tensor parallelism) own part
        try:
            ptr = t.untyped_storage().data_ptr()
            params = {local_tensor(p).untyped_storage().data_ptr() for p in self.model.parameters()}
        except (RuntimeError, NotImplementedError):  # no storage of its own (a tensor subclass): not counted
            return saved
        if ptr not in self._seen and ptr not in params:  # parameters are state, not activations
            self._seen.add(ptr)
            self.activation_bytes += t.untyped_storage().nbytes()
        return saved

    @contextlib.contextmanager
    def watching(self) -> Iterator[StepProbe]:
        if self.unsharded_peak is not None:
            for module in self.model.modules():
                self._handles += [module.register_forward_pre_hook(self._sample),
                                  module.register_forward_hook(self._after_forward)]
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
                yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
