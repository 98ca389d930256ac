"""The `pipeline` strategy: the model cut into one stage per worker, trained by `torch.distributed.pipelining`.

- The cut: the zoo model's blocks (`models.catalog.pipeline_blocks`: a conv or dense layer with its BatchNorm,
  activation, pooling; a residual block whole) are timed one by one at start-up (forward + backward of one
  micro-batch, on rank 0, on a copy of the model), and the contiguous split minimising the slowest stage is
  taken (`balanced_cuts`); every rank builds the same initial model and keeps only its stage's modules.
- The step: `PipelineStage` + `ScheduleGPipe` / `Schedule1F1B` over `microbatches` micro-batches: stage 0 is
  given the inputs, the last stage the targets (`PipelineStep`). The schedule's loss is the mean cross-entropy
  of each micro-batch and it divides the summed gradients by M (`scale_grads`): the gradient `--grad-accum M`
  gives in one process, whose BatchNorm also sees one micro-batch at a time.
- The rest of the contract: evaluation passes the whole test set through the stages (plain send/recv, stage by
  stage); the last stage has the logits. State dicts are the plain model's (`merged_state`: each stage's
  modules under their original names, gathered on every rank).
- Measured: each forward and backward action's duration on each stage; a stage's bubble is the share of its
  `schedule.step` wall time outside them (`summary`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from parallel_vision.engines.workload import workload
from parallel_vision.models.catalog import pipeline_blocks
from parallel_vision.models.torch_mlp import WideMLP
from parallel_vision.models.torch_resnet import ResNet18

if TYPE_CHECKING:
    from parallel_vision.config import RunConfig

Part = tuple[str | None, nn.Module]
"""One module of a block: its name in the plain model (None for a parameter-free module added here)."""


# --------------------------------------------------------------------------- the blocks and the cut
def model_blocks(model: nn.Module) -> list[list[Part]]:
    """The zoo model as its blocks, in forward order: running them one after the other is its forward."""
    if isinstance(model, ResNet18):
        stem: list[Part] = [("conv1", model.conv1), ("bn1", model.bn1), (None, nn.ReLU())]
        residual = [[(f"layer{s}.{i}", getattr(model, f"layer{s}")[i])] for s in range(1, 5) for i in range(2)]
        head: list[Part] = [(None, nn.AdaptiveAvgPool2d(1)), (None, nn.Flatten()), ("linear", model.linear)]
        return [stem, *residual, head]
    if isinstance(model, WideMLP):
        names = ("flatten", "fc1", "bn1", "relu", "drop1", "fc2", "bn2", "relu", "drop2", "fc3")
        flat: list[Part] = [(n, getattr(model, n)) for n in names]
    else:  # PaperCNN: its two Sequentials
        flat = [(f"{seq}.{i}", m) for seq in ("features", "classifier") for i, m in enumerate(getattr(model, seq))]
    blocks: list[list[Part]] = [[]]
    for name, module in flat:  # a block starts at each convolution or dense layer
        if isinstance(module, (nn.Conv2d, nn.Linear)) and any(isinstance(m, (nn.Conv2d, nn.Linear))
                                                              for _, m in blocks[-1]):
            blocks.append([])
        blocks[-1].append((name, module))
    return blocks


def balanced_cuts(costs: list[float], stages: int) -> list[int]:
    """Where each stage after the first begins (block indices): the contiguous split of `costs` into `stages`
    non-empty parts whose largest sum is smallest (exact, by dynamic programming; ties: the earliest cut)."""
    n = len(costs)
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    best = {(0, 0): (0.0, [])}  # (blocks used, stages used) -> (slowest stage, cuts)
    for k in range(1, stages + 1):
        for end in range(k, n - (stages - k) + 1):
            options = [(max(best[(start, k - 1)][0], prefix[end] - prefix[start]),
                        best[(start, k - 1)][1] + ([start] if k > 1 else []))
                       for start in range(k - 1, end) if (start, k - 1) in best]
            best[(end, k)] = min(options, key=lambda o: o[0])
    return best[(n, stages)][1]


def time_blocks(blocks: list[list[Part]], example: torch.Tensor, repeats: int = 3) -> list[float]:
    """Seconds of each block's forward + backward on `example` (the fastest of `repeats`), on copies of the
    blocks with the RNG put back afterwards: the model that trains is untouched."""
    copies = copy.deepcopy(blocks)
    seconds = []
    with torch.random.fork_rng(devices=[]):
        x = example
        for block in copies:
            runs = []
            for _ in range(repeats):
                inp = x.detach().requires_grad_(x.is_floating_point())
                t = time.perf_counter()
                out = _run(block, inp)
                out.backward(torch.ones_like(out))
                runs.append(time.perf_counter() - t)
            seconds.append(min(runs))
            x = out.detach()
    return seconds


def _run(block: list[Part], x: torch.Tensor) -> torch.Tensor:
    for _, module in block:
        x = module(x)
    return x


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose gradient (the one a stage sends back to the stage before) is made contiguous."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.contiguous()


class Stage(nn.Module):
    """One stage: its blocks' modules (the plain model's own objects), run in order, under `autocast`."""

    def __init__(self, parts: list[Part], autocast: Callable[[], Any], channels_last: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList([m for _, m in parts])
        self.names = [name for name, _ in parts]
        self.autocast = autocast
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _ContiguousGrad.apply(x)
        if self.channels_last and x.dim() == 4:  # received contiguous: back in the layout one process would have
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            for module in self.layers:
                x = module(x)
        # What passes between stages is fp32 (autocast's bf16 stays inside a stage) and contiguous: gloo sends
        # only contiguous tensors, and a channels_last convolution's output is not.
        return x.float().contiguous()

    def original_state(self) -> dict[str, torch.Tensor]:
        """This stage's state under the plain model's key names, as CPU copies."""
        return {f"{name}.{k}": v.detach().to("cpu", copy=True) for name, m in zip(self.names, self.layers, strict=True)
                if name for k, v in m.state_dict().items()}

    def load_original(self, state: dict[str, torch.Tensor]) -> None:
        """Take this stage's entries of a plain model state dict."""
        for name, module in zip(self.names, self.layers, strict=True):
            if name and len(module.state_dict()):
                module.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})


def build_stage(model: nn.Module, cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> Stage:
    """This rank's stage of the cut rank 0 measured (collective: every rank takes rank 0's cut)."""
    blocks = model_blocks(model)
    rank, world = dist.get_rank(), dist.get_world_size()
    assert len(blocks) == len(pipeline_blocks(cfg.model)), "the torch blocks are the catalogue's"
    w = workload(cfg)
    example = torch.rand((cfg.batch_size // cfg.pipeline_microbatches, w.channels, w.image_size, w.image_size),
                         device=device)
    box: list[Any] = [None]
    if rank == 0:
        costs = time_blocks(blocks, example)
        box = [(costs, balanced_cuts(costs, world))]
    dist.broadcast_object_list(box, src=0)
    costs, cuts = box[0]
    bounds = [0, *cuts, len(blocks)]
    names = pipeline_blocks(cfg.model)
    stage = Stage([p for b in blocks[bounds[rank]:bounds[rank + 1]] for p in b], autocast,
                  channels_last=cfg.memory_format == "channels_last")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # each stage's input shape, for evaluation
        model.eval()
        x, shapes = example[:1], []
        for block in blocks:
            shapes.append(tuple(x.shape[1:]))
            x = _run(block, x)
        shapes.append(tuple(x.shape[1:]))
        model.train()
    stage.split = {  # type: ignore[assignment]
        "cuts": cuts,
        "block_ms": [round(c * 1e3, 3) for c in costs],
        "stages": [{"blocks": [b[0] for b in names[bounds[i]:bounds[i + 1]]],
                    "measured_ms": round(sum(costs[bounds[i]:bounds[i + 1]]) * 1e3, 3)} for i in range(world)],
        "how": "forward + backward of one micro-batch per block on rank 0 at start-up (fastest of 3); the "
               "contiguous split minimising the slowest stage",
    }
    stage.input_shape = shapes[bounds[rank]]  # type: ignore[assignment]
    stage.output_shape = shapes[bounds[rank + 1]]  # type: ignore[assignment]
    return stage


# --------------------------------------------------------------------------- the plain state dicts
def merged_state(stage: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the plain model's state dict (every stage's entries, original names), on every rank."""
    merged: dict[str, torch.Tensor] = {}
    for part in _all_gather(stage.original_state()):  # type: ignore[operator]
        merged.update(part)
    return merged


def stage_optimizer_states(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Collective: every stage's optimizer state dict, in stage order, on every rank."""
    return {"stages": _all_gather(copy.deepcopy(optimizer.state_dict()))}


def load_state(stage: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict[str, torch.Tensor],
               optimizer_state: dict[str, Any]) -> None:
    stage.load_original(model_state)  # type: ignore[operator]
    optimizer.load_state_dict(copy.deepcopy(optimizer_state["stages"][dist.get_rank()]))


def _all_gather(obj: Any) -> list[Any]:
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
