"""What the ZeRO paper's formulas (arXiv 1910.02054, fp32) predict a worker holds for P parameters over N
workers, and the model's FSDP units they need: the expectation the sharding section sets beside each measured
run (report/sharding.py). Pure arithmetic on a run's config and workload record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parallel_vision.models.catalog import layer_specs


def optimizer_bytes_per_parameter(config: dict[str, Any]) -> int:
    """k: bytes of optimizer state per fp32 parameter (Adam 8, SGD with momentum 4, plain SGD 0)."""
    if config.get("optimizer", "adam") == "adam":
        return 8
    return 4 if config.get("momentum") else 0


def optimizer_words(config: dict[str, Any]) -> str:
    k = optimizer_bytes_per_parameter(config)
    return {8: "Adam", 4: "SGD with momentum"}.get(k, "plain SGD")


@dataclass(frozen=True)
class StateBytes:
    """Bytes of training state one worker holds: parameters, gradients, optimizer state, and (FSDP) the
    full parameters of the units unsharded at the peak of a step."""

    parameters: float
    gradients: float
    optimizer: float
    unsharded: float = 0.0

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer + self.unsharded

    def get(self, component: str) -> float:
        return float(getattr(self, component))


def formula(strategy: str, workers: int, n_parameters: int, k: int, unsharded_unit: float = 0.0) -> StateBytes:
    """What the ZeRO paper predicts for one worker (fp32 parameters and gradients, k B of optimizer state per
    parameter). `unsharded_unit`: FSDP's largest unit in bytes (the whole model's 4·P without resharding)."""
    p, n = float(n_parameters), float(workers)
    if strategy == "zero1":
        return StateBytes(4 * p, 4 * p, k * p / n)
    if strategy == "fsdp":
        return StateBytes(4 * p / n, 4 * p / n, k * p / n, float(unsharded_unit))
    return StateBytes(4 * p, 4 * p, k * p)


def formula_text(strategy: str, workers: int, k: int) -> str:
    """The formula in bytes per parameter, e.g. '4 + 4 + 8/2' or '(4 + 4 + 8)/2 + largest unit'."""
    if strategy == "zero1":
        return f"4 + 4 + {k}/{workers}"
    if strategy == "fsdp":
        return f"(4 + 4 + {k})/{workers} + largest unit"
    return f"4 + 4 + {k}"


def parameter_shapes(workload: dict[str, Any]) -> list[tuple[int, ...]]:
    """The shape of every parameter tensor of the run's model (weights, biases, BatchNorm's gamma and beta)."""
    channels, size, _ = workload.get("input_shape") or [1, 28, 28]
    shapes: list[tuple[int, ...]] = []
    for s in layer_specs(str(workload["model"]), channels, size, int(workload.get("classes") or 10)):
        shapes.append(s.shape)
        if s.kind == "bn" or s.bias:
            shapes.append((s.shape[0],))
    return shapes


def fsdp_units(workload: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """FSDP's units as the engine wraps them (models.torch_zoo.shard_units; a test keeps the two equal), counted
    from the catalogue: ResNet-18's residual blocks, otherwise every convolution and dense layer. Returns each
    unit's parameters by name, and the root's (every other layer: BatchNorm, ResNet-18's stem and classifier)."""
    channels, size, _ = workload.get("input_shape") or [1, 28, 28]
    specs = layer_specs(str(workload["model"]), channels, size, int(workload.get("classes") or 10))
    units: dict[str, int] = {}
    root: dict[str, int] = {}
    blocks = any(s.name.startswith("layer") for s in specs)
    for s in specs:
        if blocks and s.name.startswith("layer"):
            name = ".".join(s.name.split(".")[:2])
            units[name] = units.get(name, 0) + s.trainable
        elif not blocks and s.kind in ("conv", "dense"):
            units[s.name] = s.trainable
        else:
            root[s.name] = s.trainable
    return units, root


def largest_unit(workload: dict[str, Any]) -> tuple[str, int]:
    """The FSDP unit with the most parameters: its name and its parameters."""
    units, _ = fsdp_units(workload)
    name = max(units, key=lambda k: units[k])
    return name, units[name]


def largest_shard_bytes(workload: dict[str, Any], workers: int) -> int:
    """fp32 bytes of rank 0's shard when every tensor is split along its first dimension into N chunks
    (torch.chunk, as FSDP2 does): ⌈rows/N⌉ rows each, so rank 0 holds the most."""
    total = 0
    for shape in parameter_shapes(workload):
        rest = 1
        for d in shape[1:]:
            rest *= d
        total += -(-shape[0] // workers) * rest * 4
    return total


# ------------------------------------------------------------------------------------------------ one row
