"""The model zoo in PyTorch: build any `catalog.MODEL_NAMES` model and load its canonical weights.

`build_torch_model` returns `PaperCNN` (models.torch_cnn), `ResNet18` (models.torch_resnet) or
`WideMLP` (models.torch_mlp). `load_canonical` copies a `models.init.aligned_weights(..., model=name)`
set into any of them: by module name for the zoo models (their canonical names are their
`named_modules` names), by order for the paper CNN (as `torch_cnn.load_canonical` always has).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from parallel_vision.models import torch_cnn
from parallel_vision.models.catalog import MODEL_NAMES, layer_specs
from parallel_vision.models.torch_cnn import PaperCNN, count_parameters
from parallel_vision.models.torch_mlp import WideMLP
from parallel_vision.models.torch_resnet import BasicBlock, ResNet18

__all__ = ["MODEL_NAMES", "build_torch_model", "count_parameters", "load_canonical", "shard_units"]

_PARAMETERISED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def build_torch_model(
    name: str, channels: int = 1, image_size: int = 28, classes: int = 10, dropout: float = 0.25
) -> nn.Module:
    """Zoo model `name` for NCHW input of `channels` × `image_size` × `image_size`, returning `classes` logits.

    `dropout` is used by paper_cnn and wide_mlp; ResNet-18 has no dropout and ignores it.
    """
    layer_specs(name, channels, image_size, classes)  # validates name and sizes
    if name == "paper_cnn":
        return PaperCNN(channels, image_size, classes, dropout)
    if name == "resnet18":
        return ResNet18(channels, classes)
    if name == "wide_mlp":
        return WideMLP(channels, image_size, classes, dropout)
    raise AssertionError(name)  # pragma: no cover - layer_specs rejected it


@torch.no_grad()
def load_canonical(model: nn.Module, layers: list[Any]) -> None:
    """Copy a canonical weight set (`models.init.aligned_weights`) into a zoo model, bit for bit.

    Zoo models are matched BY NAME: every canonical layer must be a parameterised module of that name and
    every parameterised module must have a canonical layer. A model with none of the names (the paper CNN,
    whose modules are `features.0` …) is loaded by order with `torch_cnn.load_canonical`.
    """
    modules = {name: m for name, m in model.named_modules() if isinstance(m, _PARAMETERISED)}
    names = [layer.name for layer in layers]
    if not set(names) & set(modules):
        torch_cnn.load_canonical(model, layers)
        return
    missing = [n for n in names if n not in modules]
    extra = [n for n in modules if n not in set(names)]
    if missing or extra or len(set(names)) != len(names):
        raise ValueError(f"weight set and model do not match by name: missing in the model {missing[:5]}, "
                         f"not in the weight set {extra[:5]}")
    plan = []  # everything is checked before anything is copied
    for layer in layers:
        module = modules[layer.name]
        expected = {"conv": nn.Conv2d, "dense": nn.Linear, "bn": (nn.BatchNorm1d, nn.BatchNorm2d)}[layer.kind]
        if not isinstance(module, expected):
            raise ValueError(f"{layer.name}: {layer.kind} in the weight set, {type(module).__name__} in the model")
        a = layer.arrays
        if layer.kind == "bn":
            pairs = {"weight": a["gamma"], "bias": a["beta"], "running_mean": a["mean"], "running_var": a["var"]}
        else:
            if (module.bias is None) != ("bias" not in a):
                raise ValueError(f"{layer.name}: bias in the model {module.bias is not None}, "
                                 f"in the weight set {'bias' in a}")
            pairs = {"weight": a["weight"]}
            if "bias" in a:
                pairs["bias"] = a["bias"]
        for attr, value in pairs.items():
            target = getattr(module, attr)
            if tuple(target.shape) != value.shape:
                raise ValueError(f"{layer.name}.{attr}: shape {tuple(target.shape)} vs {value.shape}")
            plan.append((target, value))
    for target, value in plan:
        target.copy_(torch.from_numpy(value))


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules FSDP wraps one by one before the root (each unit's parameters are gathered together):
    ResNet-18's eight residual blocks; otherwise every convolution and linear layer (paper_cnn's six, wide_mlp's
    three, the 4096 × 4096 layer alone). BatchNorm and the stem stay with the root, whose forward encloses the
    units': its parameters are gathered for the whole forward and again for backward (measured: 2 × P gathered)."""
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    return blocks or [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
