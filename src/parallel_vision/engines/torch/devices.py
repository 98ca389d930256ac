"""What this machine can run, which device a worker trains on, and how many threads it uses."""

from __future__ import annotations

import os

import torch

from parallel_vision.config import RunConfig, usable_cores
from parallel_vision.engines.common import pin_to_cores
from parallel_vision.engines.levers import bf16_refusal
from parallel_vision.errors import ConfigError


def cuda_wanted(cfg: RunConfig) -> bool:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but PyTorch sees no CUDA device")
    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def backend(cfg: RunConfig) -> str:
    """The process-group backend for `cfg`'s devices."""
    return "nccl" if cuda_wanted(cfg) else "gloo"


def check_devices(cfg: RunConfig) -> None:
    """Refuse configurations this machine cannot run, before any worker starts."""
    cuda = cuda_wanted(cfg)
    gpus = torch.cuda.device_count() if cuda else 0
    if cfg.strategy == "dp":
        if gpus == 0:
            raise ConfigError(
                "strategy 'dp' (nn.DataParallel) needs >= 2 CUDA devices; this machine has 0. "
                "Use 'ddp' to run several CPU worker processes"
            )
        if cfg.workers > gpus:
            raise ConfigError(f"{cfg.workers} workers requested but only {gpus} CUDA devices are visible")
    if cfg.is_distributed and "LOCAL_WORLD_SIZE" not in os.environ:
        if cuda and cfg.workers > gpus:
            raise ConfigError(f"{cfg.workers} workers requested but only {gpus} CUDA devices are visible")
        if not cuda and cfg.workers > usable_cores():
            raise ConfigError(
                f"{cfg.workers} CPU workers requested but this machine has {usable_cores()} usable cores"
            )
    if cfg.precision == "fp16" and not cuda:
        raise ConfigError("fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if cfg.precision == "bf16" and (refusal := bf16_refusal(cuda)):
        raise ConfigError(refusal)


def set_threads(cfg: RunConfig, local_rank: int) -> None:
    """Intra-op threads per worker (pinned to this local rank's cores with `pin_threads`), one inter-op."""
    threads = cfg.resolved_threads()
    if cfg.pin_threads:
        pin_to_cores(threads, local_rank)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (e.g. a second run under torchrun)
        pass


def choose_device(cfg: RunConfig, local_rank: int) -> torch.device:
    """This worker's device: its own GPU under a process-per-worker strategy (`ddp`), GPU 0 (the DataParallel
    root) otherwise, or the CPU."""
    if cuda_wanted(cfg):
        index = local_rank if cfg.is_distributed else 0
        torch.cuda.set_device(index)
        # Fixed shapes: let cuDNN pick the fastest kernels (during the warm-up, outside the clock).
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls, as for cuDNN convolutions
        return torch.device("cuda", index)
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, where every op has finished on return)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
