"""The engine process's environment: threads per worker, allocator settings, quiet logs, launch time."""

from __future__ import annotations

import os
import time

from parallel_vision import allocator, envvars
from parallel_vision.config import RunConfig


def child_environment(cfg: RunConfig, progress: bool) -> dict[str, str]:
    """The engine process's environment: threads per worker, allocator, quiet TF, launch time."""
    env = dict(os.environ)
    threads = str(cfg.resolved_threads())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = threads
    if cfg.framework == "torch":
        env.update(allocator.environment(cfg.allocator, cfg.malloc_tuning, env))
    else:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    env["PYTHONHASHSEED"] = str(cfg.seed)
    env[envvars.PROGRESS] = "1" if progress else "0"
    env.setdefault(envvars.LAUNCH_TIME, repr(time.time()))
    env["PYTHONUNBUFFERED"] = "1"
    return env
