"""DDP's gradient communication, timed and counted: the communication hook state (`CommTimer`), the timed
all-reduce and compressed hooks (fp16, bf16, PowerSGD) and the bytes each step hands to the all-reduce.

Kept apart from `dist.py` (where a worker sits and how the process group is made): this is what DDP runs per
bucket, every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from parallel_vision.config import RunConfig


class CommTimer:
    """DDP communication hook state: wall time of gradient all-reduce, launch to completion, and the bytes
    this worker hands to all-reduce (`--grad-compression`: torch's own fp16/bf16/PowerSGD hooks, wrapped).

    Buckets are all-reduced while backward still runs, so this time may overlap
    compute; it is what the communication costs, not what it adds to the epoch.
    With a compression hook the time runs from the hook's call to its future's completion, so it includes
    compressing and decompressing (PowerSGD's matrix products and orthogonalisation).
    Bytes: `none` counts each bucket's buffer; a compression hook runs its collectives on a process group of
    its own, and every `dist.all_reduce` on that group is counted (numel × element size of the tensor actually
    reduced: fp16/bf16 copies; PowerSGD's P and Q matrices and the uncompressed 1-d and small tensors).
    `measured` is False until `attach` hooks it into a DDP model (the epoch records None then).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.bytes = 0
        self.measured = False
        self.compression = "none"
        self.hook: _Compressed | None = None

    def attach(self, model: torch.nn.parallel.DistributedDataParallel, cfg: RunConfig | None = None) -> None:
        kind, rank = cfg.compression if cfg is not None else ("none", None)
        self.compression = cfg.grad_compression if cfg is not None else "none"
        if kind == "none":
            model.register_comm_hook(self, _timed_allreduce_hook)
        else:
            group = dist.new_group()  # every rank calls wrap(), so every rank makes it, in the same order
            _count_allreduce_on(group, self)
            state, hook = _compression_hook(kind, rank, group)
            self.hook = _Compressed(self, state, hook, serialise=kind == "powersgd")
            model.register_comm_hook(self.hook, _timed_compressed_hook)
        self.measured = True

    def hook_state_dict(self) -> dict[str, Any] | None:
        """The compression hook's training state on this rank, as CPU copies (None for a stateless hook).

        PowerSGD's state is what the next step depends on: the step counter (plain all-reduces until
        `start_powerSGD_iter`), each bucket's error feedback (this rank's own residual) and its warm-started
        Q. P is recomputed every step and the stats counters change nothing, so they are left out; the
        numpy generator that seeds Q is used once per bucket, before Q exists, so Q stands for it.
        """
        state = self.hook.inner_state if self.hook is not None else None
        if not isinstance(state, _powersgd_state_type()):
            return None
        copy = {i: t.detach().to("cpu", copy=True) for i, t in state.error_dict.items()}
        q = {i: t.detach().to("cpu", copy=True) for i, t in state.q_memory_dict.items()}
        return {"kind": "powersgd", "iter": int(state.iter), "error_dict": copy, "q_memory_dict": q}

    def load_hook_state_dict(self, saved: dict[str, Any] | None, device: torch.device) -> None:
        """Put `hook_state_dict()`'s record back (None: a checkpoint without one keeps the fresh state)."""
        state = self.hook.inner_state if self.hook is not None else None
        if saved is None or not isinstance(state, _powersgd_state_type()):
            return
        state.iter = int(saved["iter"])
        state.error_dict = {int(i): t.to(device, copy=True) for i, t in saved["error_dict"].items()}
        state.q_memory_dict = {int(i): t.to(device, copy=True) for i, t in saved["q_memory_dict"].items()}

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def take_bytes(self) -> int:
        sent, self.bytes = self.bytes, 0
        return sent


def _timed_allreduce_hook(state, bucket):  # type: ignore[no-untyped-def]
    # No annotations: torch checks them at registration and this module defers them as strings.
    start = time.perf_counter()
    tensor = bucket.buffer().div_(dist.get_world_size())
    state.bytes += tensor.numel() * tensor.element_size()
    future = dist.all_reduce(tensor, async_op=True).get_future()

    def done(fut: torch.futures.Future[Any]) -> torch.Tensor:
        state.seconds += time.perf_counter() - start
        return fut.value()[0]

    return future.then(done)


@dataclass
class _Compressed:
    """The state of the timing wrapper around one of torch's compression hooks."""

    timer: CommTimer
    inner_state: Any
    inner_hook: Callable[..., Any]
    serialise: bool = False
    previous: Any = None


def steady_steps(compression: str, step_bytes: list[int]) -> list[int]:
    """The steps whose bytes stand for the run: all but PowerSGD's uncompressed first steps (when there are
    later ones)."""
    if compression.startswith("powersgd") and len(step_bytes) > POWERSGD_PLAIN_STEPS:
        return step_bytes[POWERSGD_PLAIN_STEPS:]
    return step_bytes


def _powersgd_state_type() -> type:
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState

    return PowerSGDState


def _compression_hook(kind: str, rank: int | None, group: Any) -> tuple[Any, Callable[..., Any]]:
    """torch's hook for `kind` and its state (the process group it reduces on)."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

    if kind == "fp16":
        return group, default_hooks.fp16_compress_hook
    if kind == "bf16":
        return group, default_hooks.bf16_compress_hook
    # start_powerSGD_iter=2, the smallest torch allows with error feedback: steps 1 and 2 are plain all-reduces.
    state = powerSGD_hook.PowerSGDState(process_group=group, matrix_approximation_rank=int(rank or 1),
                                        start_powerSGD_iter=POWERSGD_PLAIN_STEPS, use_error_feedback=True,
                                        warm_start=True)
    return state, powerSGD_hook.powerSGD_hook


def _timed_compressed_hook(state, bucket):  # type: ignore[no-untyped-def]
    # PowerSGD launches its Q all-reduce from the P all-reduce's completion callback. With several buckets,
    # two ranks can then issue it in a different order relative to the next bucket's first all-reduce, and
    # gloo aborts ("collective mismatch"). So a PowerSGD bucket waits for the previous bucket's round first.
    if state.serialise and state.previous is not None:
        state.previous.wait()
    start = time.perf_counter()
    future = state.inner_hook(state.inner_state, bucket)

    def done(fut):  # type: ignore[no-untyped-def]
        state.timer.seconds += time.perf_counter() - start
        return fut.value()

    timed = future.then(done)
    if state.serialise:
        state.previous = None if bucket.is_last() else timed
    return timed


#: Optimiser steps PowerSGD all-reduces uncompressed before it starts compressing (its start_powerSGD_iter).
POWERSGD_PLAIN_STEPS = 2

#: Process groups whose all-reduce calls are counted, by id, and the timer that counts them.
_COUNTED: dict[int, CommTimer] = {}
_UNCOUNTED_ALL_REDUCE: Callable[..., Any] | None = None


def _count_allreduce_on(group: Any, timer: CommTimer) -> None:
    """Count the bytes of every `dist.all_reduce` on `group` (torch's hooks look the function up on the
    torch.distributed module at each call, so wrapping it there sees exactly what they reduce)."""
    global _UNCOUNTED_ALL_REDUCE
    _COUNTED[id(group)] = timer
    if _UNCOUNTED_ALL_REDUCE is not None:
        return
    original = _UNCOUNTED_ALL_REDUCE = dist.all_reduce

    def all_reduce(tensor, *args, **kwargs):  # type: ignore[no-untyped-def]
        group_used = kwargs.get("group", args[1] if len(args) > 1 else None)
        counter = _COUNTED.get(id(group_used)) if group_used is not None else None
        if counter is not None:
            counter.bytes += tensor.numel() * tensor.element_size()
        return original(tensor, *args, **kwargs)

    dist.all_reduce = all_reduce

