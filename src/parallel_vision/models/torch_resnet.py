"""ResNet-18, CIFAR variant, in PyTorch (kuangliu/pytorch-cifar's `ResNet18`).

3×3 stem convolution (64 channels, stride 1), BatchNorm, ReLU, no max-pool; four stages of two
BasicBlocks (64, 128, 256, 512 channels; stride 2 in the first block of stages 2–4, whose shortcut is
a 1×1 convolution + BatchNorm projection); global average pooling; a linear layer to the classes.
Convolutions have no bias (BatchNorm follows). 11,173,962 trainable parameters for 3×32×32 input and
10 classes, kuangliu's count; module names are kuangliu's too, so its state dicts load as they are.
Global *adaptive* average pooling (kuangliu: `avg_pool2d(out, 4)`, the same at 32×32) lets 1×28×28
MNIST images through (28 → 14 → 7 → 4). The layer list, with names, is `catalog.layer_specs("resnet18")`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from parallel_vision.models.catalog import RESNET18_STAGES


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers and an identity (or 1×1 conv–BN projection) shortcut, ReLU after the sum."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18; returns logits. Any input size from 1×1 works (global average pooling)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for stage, planes, stride in RESNET18_STAGES:
            self.add_module(f"layer{stage}", nn.Sequential(BasicBlock(in_planes, planes, stride),
                                                           BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)
