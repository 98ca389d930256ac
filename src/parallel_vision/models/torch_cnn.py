"""The paper's CNN (Fig. 2) in PyTorch, nothing else.

Three conv blocks (32, 64, 128 filters, 3×3 `same`, BatchNorm, ReLU; max-pool
after the 2nd and 3rd) and three dense layers (128, 64, 10) with BatchNorm,
ReLU and dropout. Parameters plus BatchNorm running statistics total 906,186,
the figure's total (Keras counts moving mean/variance as parameters).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from parallel_vision.models.init import torch_arrays

PAPER_TOTAL_PARAMETERS = 906_186


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _dense_block(fin: int, fout: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(fin, fout), nn.BatchNorm1d(fout), nn.ReLU(inplace=True), nn.Dropout(dropout)]


class PaperCNN(nn.Module):
    """Fig. 2 of the paper. Returns logits; `in_channels` and `image_size` let other datasets fit."""

    def __init__(
        self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, dropout: float = 0.25
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_block(in_channels, 32),
            *_conv_block(32, 64),
            nn.MaxPool2d(2),
            *_conv_block(64, 128),
            nn.MaxPool2d(2),
        )
        flat = 128 * (image_size // 4) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            *_dense_block(flat, 128, dropout),
            *_dense_block(128, 64, dropout),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@torch.no_grad()
def load_canonical(model: nn.Module, layers: list[Any]) -> None:
    """Copy a canonical weight set (`models.init.aligned_weights`) into `model`, bit for bit.

    PyTorch's layout is the canonical one, so this only walks the layers in order and checks shapes.
    """

    modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))]
    arrays = torch_arrays(layers)
    if len(modules) != len(arrays):
        raise ValueError(f"the model has {len(modules)} parameterised layers, the weight set {len(arrays)}")
    for module, values in zip(modules, arrays, strict=True):
        names = ("weight", "bias", "running_mean", "running_var")[: len(values)]
        for name, value in zip(names, values, strict=True):
            target = getattr(module, name)
            if tuple(target.shape) != value.shape:
                raise ValueError(f"{type(module).__name__}.{name}: shape {tuple(target.shape)} vs {value.shape}")
            target.copy_(torch.from_numpy(value))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters plus BatchNorm running mean/var: the number Keras' summary prints."""
    params = sum(p.numel() for p in model.parameters())
    running = sum(
        b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))
    )
    return params + running
