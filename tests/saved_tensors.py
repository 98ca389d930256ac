"""What autograd keeps for backward after a forward pass: the measure of the fused step's and the recomputed
stem's memory tests."""

from __future__ import annotations

import torch
from torch import nn


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves during `model(x)` (a storage saved twice counts once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return sum(storages.values())
