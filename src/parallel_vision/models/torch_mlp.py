"""`wide_mlp` in PyTorch: the communication-heavy model of the zoo.

Flatten → Linear(in, 4096) → BatchNorm1d → ReLU → Dropout → Linear(4096, 4096) → BatchNorm1d → ReLU →
Dropout → Linear(4096, classes). About 20 M parameters on MNIST, 29 M on CIFAR, for only ~2 FLOPs per
parameter per image, so its gradient (what data parallelism all-reduces every step) is large next to its
compute. The layer list, with names (``fc1``, ``bn1``, ``fc2``, ``bn2``, ``fc3``), is
`catalog.layer_specs("wide_mlp")`.
"""

from __future__ import annotations

import torch
from torch import nn

from parallel_vision.models.catalog import WIDE_MLP_WIDTH


class WideMLP(nn.Module):
    """Two wide hidden layers with BatchNorm and dropout; returns logits. Flattens NCHW in (C, H, W) order."""

    def __init__(
        self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, dropout: float = 0.25,
        width: int = WIDE_MLP_WIDTH,
    ) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_channels * image_size * image_size, width)
        self.bn1 = nn.BatchNorm1d(width)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width, width)
        self.bn2 = nn.BatchNorm1d(width)
        self.drop2 = nn.Dropout(dropout)
        self.fc3 = nn.Linear(width, num_classes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.relu(self.bn1(self.fc1(self.flatten(x)))))
        x = self.drop2(self.relu(self.bn2(self.fc2(x))))
        return self.fc3(x)
