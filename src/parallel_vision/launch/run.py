"""Turn a RunConfig into engine processes; the calling process never imports a framework.

The strategy table (`strategies.py`) says how: a strategy whose per-worker processes the engine starts
(`ddp`, through `torch.multiprocessing.spawn`, the paper's way) or that runs in one process (`single`, `dp`,
`mirrored`) gets one child; one whose processes the launcher starts (`multiworker`) gets N children, each
with the engine's own cluster variables (EngineSpec.cluster: a generated `TF_CONFIG`, KERAS_DISTRIBUTION_*)
on free loopback ports. Under `torchrun` (or a user-provided `TF_CONFIG`, …: a job the engine's
EngineSpec.cluster finds in the environment), the launcher's process *is* the worker the external launcher
made, so the engine runs right here.

The data are verified here, once, and the children get the verified absolute folder.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from parallel_vision import allocator, envvars
from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.config import RunConfig, heartbeat_timeout_s, usable_cores
from parallel_vision.data.ready import ensure_dataset
from parallel_vision.engines.registry import run_engine
from parallel_vision.errors import ConfigError, EngineError, PVisionError
from parallel_vision.launch.cluster import (
    cluster_env,
    external_cluster,
    first_lines,
    is_writer,
    node_layout,
    worker_name,
)
from parallel_vision.launch.environment import child_environment
from parallel_vision.launch.lost_peer import lost_peer_line
from parallel_vision.launch.outdir import CONFIG_FILE, prepare_out_dir
from parallel_vision.launch.processes import backup_kept, engine_command, run_children, run_multiworker
from parallel_vision.ports import check_port_free
from parallel_vision.results.run_result import RunResult


def ensure_data(cfg: RunConfig) -> Path | None:
    """Verify (or download) the dataset here, once, before any worker starts; return its absolute root
    (None for `synthetic`, which the engine generates and no file holds)."""
    if cfg.dataset == "synthetic":
        return None
    return ensure_dataset(cfg.dataset, cfg.data_dir).root


def run(
    cfg: RunConfig, *, progress: bool = True, overwrite: bool = False, log_file: Path | None = None
) -> RunResult:
    """Run one configuration to completion in child process(es) and return its result."""
    launch_time = time.time()
    if cfg.is_distributed and cfg.device != "cuda" and not external_cluster(cfg):
        cores = usable_cores()
        if cfg.device == "cpu" and cfg.workers > cores:
            raise ConfigError(
                f"{cfg.workers} CPU workers requested but this machine has {cores} usable cores"
            )
    if cfg.master_port is not None and not external_cluster(cfg):
        check_port_free(cfg.master_port)
    if cfg.framework == "torch":
        allocator.check(cfg.allocator)
    # Children get absolute folders (they may start elsewhere); result.json records them.
    root = ensure_data(cfg)
    cfg = cfg.replace(data_dir=str(root) if root else cfg.data_dir)
    if external_cluster(cfg):
        return _run_external(cfg, launch_time, progress=progress, overwrite=overwrite)
    out = prepare_out_dir(cfg, overwrite=overwrite)
    cfg = cfg.replace(out_dir=str(out))
    config_path = out / CONFIG_FILE
    atomic_write_bytes(config_path, cfg.to_json().encode())

    env = child_environment(cfg, progress)
    env[envvars.LAUNCH_TIME] = repr(launch_time)
    if cfg.strategy_spec.spawner == "launcher":
        run_multiworker(cfg, config_path, env, out)
    else:
        run_children([(engine_command(config_path), env)], out, log_file)
    return RunResult.load(out)


def _run_external(cfg: RunConfig, launch_time: float, *, progress: bool, overwrite: bool) -> RunResult:
    """torchrun / a user TF_CONFIG made this process: it is one worker, and the engine runs here.

    Only the writer (global rank 0 / the chief) creates, checks or writes the output folder;
    every other worker leaves it alone (no stray empty folders on a shared filesystem, no
    race with the writer's files). A failure that is not one of ours becomes a one-line
    EngineError naming this worker (its traceback is printed first), as in a launcher child.
    """
    writer = is_writer(cfg)
    out: Path | None = None
    layout = node_layout(cfg)
    if layout and not {"nodes", "processes_per_node"} & set(cfg.extra):
        cfg = cfg.replace(extra={**cfg.extra, **layout})  # a label only: not part of the run's identity
    if cfg.threads_per_worker is None and layout:
        # This node's cores ÷ this node's processes (RunConfig's default divides by every worker of the job).
        cfg = cfg.replace(threads_per_worker=max(1, usable_cores() // layout["processes_per_node"]))
    if writer:
        out = prepare_out_dir(cfg, overwrite=overwrite)
        cfg = cfg.replace(out_dir=str(out))
        atomic_write_bytes(out / CONFIG_FILE, cfg.to_json().encode())
    os.environ.setdefault(envvars.LAUNCH_TIME, repr(launch_time))
    os.environ[envvars.PROGRESS] = "1" if progress else "0"
    hook = cluster_env(cfg.framework, cfg.strategy)
    if hook is not None and hook.job is not None:
        _run_watched(cfg, hook.job(), out, progress)
        return RunResult.load(out) if out is not None else RunResult({}, None)
    try:
        run_engine(cfg)
    except (PVisionError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a lost peer surfacing from gloo or gRPC
        traceback.print_exc()
        raise EngineError(f"{worker_name(cfg)} failed: {first_lines(exc)}") from None
    return RunResult.load(out) if out is not None else RunResult({}, None)


def _run_watched(cfg: RunConfig, job: tuple[tuple[str, ...], int], out: Path | None, progress: bool) -> None:
    """This worker's engine in a child process, so a native abort (XLA's heartbeat check) still ends in one line:
    run_children reads the dead child's log for a lost peer and raises PeerLostError (exit 75)."""
    addresses, rank = job
    with tempfile.TemporaryDirectory(prefix="pvision-worker-") as tmp:
        config_path = out / CONFIG_FILE if out is not None else Path(tmp) / CONFIG_FILE
        if out is None:
            atomic_write_bytes(config_path, cfg.to_json().encode())
        kept = backup_kept(cfg, out) if out is not None else f"none on this host (rank 0 keeps them: {addresses[0]})"
        env = child_environment(cfg, progress)
        run_children([(engine_command(config_path), env)], out or Path(tmp), None, lost_peer=lambda _, log: (
            lost_peer_line(log, rank=rank, addresses=addresses, heartbeat_s=heartbeat_timeout_s(cfg.collective_timeout),
                           kept=kept if out is None else backup_kept(cfg, out))))


def describe(cfg: RunConfig) -> dict[str, Any]:
    """A one-line description of a config, for progress lines and errors."""
    return {
        "framework": cfg.framework,
        "strategy": cfg.strategy,
        "workers": cfg.workers,
        "batch": cfg.batch_size,
        "epochs": cfg.epochs,
    }
