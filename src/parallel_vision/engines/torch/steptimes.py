"""Where each DDP step of this rank goes: its wall time and the part spent waiting for the other ranks.

The Trainer hands every step to a `StepTimer`; at the end, rank 0 gathers one small summary per rank
(`results.stragglers.rank_summary`, `summary.per_rank`) so a straggler shows: its compute is longer, and the
other ranks wait for it at the collective. Only DDP on the CPU, uncompiled: on CUDA the host's clock would time
kernel launches, and compiled code runs no hooks. Kept out of the loop so the loop stays one readable path.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from parallel_vision import envvars
from parallel_vision.errors import EngineError


class StepTimer:
    """Hooks that mark, in each training step, when the model's own forward starts (inside DDP's forward, after
    its buffer broadcast), when the last gradient is ready and when the optimiser step starts (after DDP's
    all-reduce has finished). Each mark overwrites the last but the forward's: the first counts."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.steps: list[tuple[float, float]] = []
        """(step wall s, wait s) per optimiser step."""
        self._marks: dict[str, float] = {}
        marks = self._marks

        def forward(module: torch.nn.Module, args: Any) -> None:
            if module.training:
                marks.setdefault("forward", time.perf_counter())

        def gradient(param: torch.Tensor) -> None:
            marks["gradient"] = time.perf_counter()

        def optimiser(optimizer: Any, args: Any, kwargs: Any) -> None:
            marks["optimiser"] = time.perf_counter()

        model.register_forward_pre_hook(forward)
        for param in model.parameters():
            if param.requires_grad:
                param.register_post_accumulate_grad_hook(gradient)
        optimizer.register_step_pre_hook(optimiser)

    def begin(self) -> None:
        """A step starts (its batch is ready)."""
        self._marks.clear()

    def end(self, started: float, batch_ready: float) -> None:
        """The step that started at `started` (its batch ready at `batch_ready`) is done."""
        self.steps.append((time.perf_counter() - started, self._waited(batch_ready)))

    def _waited(self, batch_ready: float) -> float:
        """Seconds of this step spent waiting at a collective: from the batch to the model's own forward (DDP's
        buffer broadcast: waiting for a rank late to start its step) plus from the last gradient to the optimiser
        (the all-reduce not hidden under backward: the last buckets' transfer and waiting for a rank late to
        finish its backward)."""
        m = self._marks
        late_start = m["forward"] - batch_ready if "forward" in m else 0.0
        exposed = m["optimiser"] - m["gradient"] if "optimiser" in m and "gradient" in m else 0.0
        return max(0.0, late_start) + max(0.0, exposed)


def slow_down_for_tests(model: torch.nn.Module, rank: int) -> None:
    """TEST HOOK (envvars.TEST_SLOW_RANK = "RANK:SECONDS"): that rank sleeps in every training forward, so a test
    can make a straggler on purpose; nothing happens unless the variable names this rank."""
    spec = os.environ.get(envvars.TEST_SLOW_RANK, "")
    if not spec:
        return
    which, _, seconds = spec.partition(":")
    try:
        sleep_s = float(seconds) if int(which) == rank else 0.0
    except ValueError:
        raise EngineError(f"{envvars.TEST_SLOW_RANK} must be RANK:SECONDS; got {spec!r}") from None

    def slow_forward(module: torch.nn.Module, args: Any) -> None:
        if module.training:
            time.sleep(sleep_s)

    if sleep_s:
        model.register_forward_pre_hook(slow_forward)
