"""The Trainer's step and evaluation under `pipeline` (chosen by `build.stepper`; the loop calls every strategy's
step object the same way). The stage, its cut and its state dicts are `pipeline.py`'s.

A step: `schedule.step(x)` on stage 0, `schedule.step(target=y, losses=...)` on the last stage, `schedule.step()`
between; then this stage's optimizer steps its own parameters. Only the last stage has a loss and logits: the
others report a zero loss and no logits, so the loop's sums over ranks are the last stage's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

#: loop.Trainer (not imported: the loop imports this module).
Trainer = Any


class PipelineStep:
    """This rank's stage driven by PyTorch's GPipe or 1F1B schedule, its forward and backward actions timed."""

    def __init__(self, trainer: Trainer) -> None:
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        cfg = self.cfg = trainer.cfg
        self.trainer = trainer
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.first, self.last = self.rank == 0, self.rank == self.world - 1
        self.sampler = (0, 1)  # every stage walks the whole batch of the same sampler: no data-parallel split
        self.copies = 1  # only the last stage has the logits: the other ranks add zeros to every sum
        # Static shapes: without them the stage infers its shapes by a forward pass in training mode on an
        # uninitialised tensor, whose BatchNorm statistics it would keep (measured: NaN running means).
        model, micro, device = trainer.model, cfg.batch_size // cfg.pipeline_microbatches, trainer.device
        # Activations received need a gradient (it goes back to the stage before); what a stage sends has one.
        inputs = torch.empty((micro, *model.input_shape), device=device, requires_grad=not self.first)
        outputs = torch.empty((micro, *model.output_shape), device=device, requires_grad=True)
        self.stage = PipelineStage(model, self.rank, self.world, device, input_args=inputs, output_args=outputs)
        kind = Schedule1F1B if cfg.pipeline_schedule == "1f1b" else ScheduleGPipe
        self.schedule = kind(self.stage, cfg.pipeline_microbatches, loss_fn=self._loss, scale_grads=True)
        self.action_s = {"forward": 0.0, "backward": 0.0}
        self.steps: list[dict[str, float]] = []  # wall and busy seconds of each step's schedule on this stage
        self.in_flight = self.most_in_flight = 0
        for action in self.action_s:
            method = f"{action}_one_chunk"
            setattr(self.stage, method, self._timed(getattr(self.stage, method), action))

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One micro-batch's mean cross-entropy (the schedule divides the summed gradients by M)."""
        return F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)

    def _timed(self, method: Callable[..., Any], action: str) -> Callable[..., Any]:
        """`method` timed; forwards not yet matched by their backward counted (the micro-batches whose
        activations this stage holds at once: M under GPipe, at most the stages from here on under 1F1B)."""
        def call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.action_s[action] += time.perf_counter() - t
                self.in_flight += 1 if action == "forward" else -1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)

        return call

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        trainer = self.trainer
        trainer.optimizer.zero_grad(set_to_none=True)
        self.action_s = dict.fromkeys(self.action_s, 0.0)
        loss, logits = torch.zeros((), device=trainer.device), None
        t = time.perf_counter()
        if self.first:
            self.schedule.step(x)
        elif self.last:
            losses: list[torch.Tensor] = []
            logits = self.schedule.step(target=y, losses=losses)
            loss = torch.stack([v.detach() for v in losses]).mean()  # equal micro-batches: the batch's mean
        else:
            self.schedule.step()
        wall = time.perf_counter() - t
        self.steps.append({"wall_s": wall, **{f"{k}_s": v for k, v in self.action_s.items()}})
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        if trainer.scheduler is not None:
            trainer.scheduler.step()
        return loss, logits

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, np.ndarray | None]:
        """The whole test set through the stages once, batch by batch (stage k receives stage k−1's output and
        sends its own on); the last stage's loss, accuracy and predictions, on every rank (predictions on rank 0)."""
        trainer, test = self.trainer, self.trainer.test
        model = trainer.model
        model.eval()
        size = self.cfg.eval_batch_size
        loss_sum = torch.zeros((), device=trainer.device, dtype=torch.float64)
        preds = []
        for start in range(0, test.n, size):
            part = slice(start, min(start + size, test.n))
            if self.first:
                h = test.batch(part)[0]
            else:
                h = torch.empty((part.stop - part.start, *model.input_shape), device=trainer.device)
                dist.recv(h, src=self.rank - 1)
            h = model(h)
            if not self.last:
                dist.send(h.float().contiguous(), dst=self.rank + 1)
                continue
            loss_sum += F.cross_entropy(h.float(), test.labels[part], reduction="sum").double()
            preds.append(h.argmax(1))
        outcome = None
        if self.last:
            local = torch.cat(preds)
            correct = float((local == test.labels).sum())
            outcome = (float(loss_sum) / test.n, correct / test.n, local.cpu().numpy())
        loss, accuracy, predictions = trainer.dist.all_gather_object(outcome)[-1]
        return loss, accuracy, predictions if trainer.dist.master else None

    # -- what was measured ----------------------------------------------------------------
    def measured(self) -> dict[str, Any] | None:
        """This stage's seconds per step, the first (shape inference, set-up) left out; None before two steps."""
        steps = self.steps[1:]
        if not steps:
            return None
        wall = sum(s["wall_s"] for s in steps)
        busy = sum(s["forward_s"] + s["backward_s"] for s in steps)
        return {"stage": self.rank, "steps": len(steps),
                "step_ms": round(1e3 * statistics.median(s["wall_s"] for s in steps), 3),
                "forward_ms": round(1e3 * statistics.median(s["forward_s"] for s in steps), 3),
                "backward_ms": round(1e3 * statistics.median(s["backward_s"] for s in steps), 3),
                "bubble_fraction": round(max(0.0, 1.0 - busy / wall), 4),
                "most_microbatches_in_flight": self.most_in_flight}


def summary(trainer: Trainer) -> dict[str, Any]:
    """Collective. summary.pipeline (the split, the schedule, every stage's measured times and bubble) and
    summary.bubble_fraction (the stages' mean idle share of their step) beside the formula (p − 1)/(m + p − 1);
    n_parameters of the whole model (each rank holds its stage's)."""
    step: PipelineStep = trainer.stepper  # type: ignore[assignment]
    per_stage = trainer.dist.all_gather_object(step.measured())
    held = trainer.dist.all_gather_object(sum(p.numel() for p in trainer.model.parameters()))
    p, m = step.world, trainer.cfg.pipeline_microbatches
    out: dict[str, Any] = {"n_parameters": sum(held), "pipeline": {
        "schedule": trainer.cfg.pipeline_schedule, "microbatches": m, "stages": p,
        "micro_batch": trainer.cfg.batch_size // m, "split": trainer.model.split,
        "parameters_per_stage": held, "per_stage": per_stage,
        "bubble_formula": round((p - 1) / (m + p - 1), 4),
        "how": "a stage's bubble: 1 - (its forward and backward actions' seconds) / (its schedule.step's wall "
               "seconds), summed over the run's steps but the first",
    }}
    if all(s is not None for s in per_stage):
        out["bubble_fraction"] = round(statistics.fmean(s["bubble_fraction"] for s in per_stage), 4)
    return out
