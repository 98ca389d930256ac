"""Bytes handed to each collective kind per optimiser step (summary.comm_bytes_by_op), counted where torch
issues them.

DDP's gradient hook, ZeroRedundancyOptimizer's parameter broadcast and FSDP2's all-gather and reduce-scatter all
call the `torch.distributed` module's functions (`dist.all_reduce`, `dist.broadcast`, `dist.all_gather_single`,
`dist.reduce_scatter_single` …) when they run; `install` wraps those functions once per process, and a
wrapped call adds the bytes of the full tensor the collective works on (S of the projection's cost formulas:
all-gather's output, reduce-scatter's input, the reduced or broadcast tensor) to its kind while a step is
being counted. The loop's own small collectives (stop polls, sums) happen outside the counted window.

DTensor (tensor parallelism's activation all-reduce, and any redistribution) does not call those: it calls the
functional collectives of `torch.distributed._functional_collectives` (`funcol.all_reduce` …, the c10d_functional
ops), which `install` wraps too, in the same way (an all-gather counted by its output, known before it completes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.distributed_c10d as c10d

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv")

#: torch.distributed function -> (kind, which argument holds the full tensor: name, position).
_WRAPPED: dict[str, tuple[str, str, int]] = {
    "all_reduce": ("all_reduce", "tensor", 0),
    "broadcast": ("broadcast", "tensor", 0),
    "all_gather_into_tensor": ("all_gather", "output_tensor", 0),
    "all_gather_single": ("all_gather", "output_tensor", 0),
    "reduce_scatter_tensor": ("reduce_scatter", "input", 1),
    "reduce_scatter_single": ("reduce_scatter", "input", 1),
    # torch.distributed.pipelining's activations and gradients: the bytes each rank sends and receives. Its
    # P2POp checks `op in [isend, irecv]` against distributed_c10d's own names, so those are wrapped there too.
    "isend": ("send_recv", "tensor", 0),
    "irecv": ("send_recv", "tensor", 0),
}


#: torch.distributed._functional_collectives function -> (kind, the full tensor: the input, or the output). Only
#: the base functions: the others (all_gather_tensor, the *_autograd ones) call these, and would count twice.
_FUNCTIONAL: dict[str, tuple[str, str]] = {
    "all_reduce": ("all_reduce", "input"),
    "broadcast": ("broadcast", "input"),
    "all_gather_single": ("all_gather", "output"),
    "reduce_scatter_single": ("reduce_scatter", "input"),
}


class CollectiveCounter:
    """Per-kind byte sums of the collectives issued inside `counting()`."""

    def __init__(self) -> None:
        self.bytes = dict.fromkeys(KINDS, 0)
        self.active = False

    @contextmanager
    def counting(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def add(self, kind: str, tensor: Any) -> None:
        if self.active and isinstance(tensor, torch.Tensor):
            self.bytes[kind] += tensor.numel() * tensor.element_size()

    def take(self) -> dict[str, int]:
        """The bytes counted since the last take, per kind."""
        taken, self.bytes = self.bytes, dict.fromkeys(KINDS, 0)
        return taken


_COUNTERS: list[CollectiveCounter] = []


def install(counter: CollectiveCounter) -> CollectiveCounter:
    """Count `torch.distributed`'s collectives into `counter` (the functions are wrapped once per process)."""
    if not _COUNTERS:
        for name, (kind, keyword, position) in _WRAPPED.items():
            original = getattr(dist, name, None)
            if original is not None:
                counted = _counted(original, kind, keyword, position)
                setattr(dist, name, counted)
                if getattr(c10d, name, None) is original:
                    setattr(c10d, name, counted)
        import torch.distributed._functional_collectives as funcol

        for name, (kind, which) in _FUNCTIONAL.items():
            original = getattr(funcol, name, None)
            if original is not None:
                setattr(funcol, name, _counted_functional(original, kind, which))
    _COUNTERS[:] = [counter]
    return counter


def _counted(original: Callable[..., Any], kind: str, keyword: str, position: int) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        tensor = kwargs.get(keyword, args[position] if len(args) > position else None)
        for counter in _COUNTERS:
            counter.add(kind, tensor)
        return original(*args, **kwargs)

    return call


def _counted_functional(original: Callable[..., Any], kind: str, which: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        result = original(tensor, *args, **kwargs)
        for counter in _COUNTERS:
            counter.add(kind, tensor if which == "input" else result)
        return result

    return call


def per_step(steps: list[dict[str, int]]) -> dict[str, float]:
    """summary.comm_bytes_by_op of one rank: the median over its optimiser steps, per kind."""
    import statistics

    return {k: float(statistics.median(s[k] for s in steps)) if steps else 0.0 for k in KINDS}
