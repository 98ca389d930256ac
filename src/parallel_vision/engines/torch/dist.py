"""Where a worker sits in the job, its collectives, and how the DDP worker group is made.

`Dist` is the only object the training loop asks about other ranks. Its collectives are
no-ops at world size 1 (a single device, `dp`, or `ddp` with one worker), so the single-device
path runs exactly the calls the DDP path runs, and the loop has no `if distributed:` branches.
The rest of this module makes the process group: `torch.multiprocessing.spawn` workers on a
loopback rendezvous, or the processes torchrun started (and restarts), with one timeout for both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.engines.torch import checkpoint, watchdog
from parallel_vision.errors import EngineError, PeerLostError, PVisionError, RunInterrupted, known_error
from parallel_vision.ports import reserve_port
from parallel_vision.signals import StopRequest, exit_code_in

#: What a worker runs once its process group is up: `body(cfg, dist, stop)`.
Body = Callable[[RunConfig, "Dist", StopRequest | None], None]


# --------------------------------------------------------------------------- the worker's place
@dataclass(frozen=True)
class Dist:
    """This process's rank in the job and the collectives among the ranks.

    `master` (rank 0) gates every side effect: files, logs, the progress bar. Every collective
    returns what the caller would compute alone when the world is one process.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> Dist:
        """The place torchrun (or the spawn worker) recorded in RANK, LOCAL_RANK and WORLD_SIZE."""
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        return str(dist.get_backend()) if dist.is_initialized() else None

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor`, summed over the ranks in place."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor`, the elementwise maximum over the ranks in place (the stop and finite poll)."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor` on every rank, in place."""
        if self.world_size > 1:
            dist.broadcast(tensor, src=0)
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's (picklable) `obj` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


# --------------------------------------------------------------------------- process groups
#: Seconds a collective (and the rendezvous store) may wait for a peer before failing, when --collective-timeout
#: is not given (default 300 s: watchdog.timeout_s).
TIMEOUT_ENV = envvars.DIST_TIMEOUT_S
#: Seconds the spawn parent lets the other workers finish on their own after one of them failed.
SPAWN_GRACE_S = 30.0


def timeout(option: float | None = None) -> timedelta:
    """The collective timeout: `--collective-timeout` (`option`), else $PVISION_DIST_TIMEOUT_S, else 300 s."""
    return timedelta(seconds=watchdog.timeout_s(option))


def run_in_group(body: Body, cfg: RunConfig, backend: str, store: dist.Store | None = None,
                 stop: StopRequest | None = None) -> None:
    """Join the process group of the ranks in the environment, run `body`, and leave together."""
    ctx = Dist.from_env()
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    wait = timeout(cfg.collective_timeout)
    dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world_size, store=store, timeout=wait)
    dog = watchdog.start_for(ctx.rank, ctx.world_size, wait.total_seconds())
    try:
        body(cfg, ctx, stop)
        dist.barrier()
        # Every rank stops its heartbeat before any leaves: rank 0 hosts the store under spawn, and a peer's
        # heartbeat still inside a store call when that store goes away outlives `stop`'s wait and aborts the
        # peer at interpreter exit ("terminate called without an active exception").
        dog.stop()
        dist.barrier()
    except Exception as exc:
        # A collective (or the store) waited the timeout for a peer, or its host cannot be reached: name it and
        # exit 75 (never returns).
        if ctx.world_size > 1 and not isinstance(exc, PVisionError) and watchdog.is_peer_timeout(exc):
            dog.peer_lost(watchdog.lost_detail(exc, wait.total_seconds()), exc)
        raise
    finally:
        dog.stop()
        dist.destroy_process_group()


def restarted_torchrun_store(option: float | None = None) -> dist.Store | None:
    """After a torchrun restart: torchrun's shared store, under a prefix of this attempt.

    torchrun keeps one TCPStore for all rendezvous rounds and hands it to the workers without a
    per-attempt prefix (torch 2.13), so gloo's connection keys of the dead attempt are still there
    and a restarted rank may dial a peer that no longer exists ("Connection refused"). A first
    attempt, or a store torchrun makes per round (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1), needs nothing.
    """
    restart = checkpoint.elastic_restart_count()
    if restart <= 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timeout(option))
    return dist.PrefixStore(f"parallel_vision/restart_{restart}", store)


def loopback_store(rank: int, world: int, port: int, option: float | None = None) -> dist.TCPStore:
    """The spawn rendezvous on 127.0.0.1 only: rank 0 listens on a loopback socket it made itself (a
    TCPStore given just a port would listen on every interface)."""
    import socket

    if rank != 0:
        return dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=timeout(option))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # the spawner holds the port reserved (reserve_port)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise EngineError(f"port {port} on 127.0.0.1 was taken before the DDP rendezvous could use it; "
                          "run again") from None
    sock.listen(128)
    return dist.TCPStore("127.0.0.1", port, world, is_master=True, timeout=timeout(option), wait_for_workers=False,
                         master_listen_fd=sock.detach())


# --------------------------------------------------------------------------- spawn
def _spawned_worker(rank: int, body: Body, cfg: RunConfig, backend: str, port: int, lost_dir: str) -> None:
    """Body of one `torch.multiprocessing.spawn` worker: join the group, run `body`, leave."""
    # First thing: a SIGINT now would otherwise be a KeyboardInterrupt that spawn treats as a clean exit.
    stop = StopRequest().install()
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(cfg.workers),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), watchdog.MESSAGE_DIR_ENV: lost_dir}
    )
    if "GLOO_SOCKET_IFNAME" not in os.environ and os.path.exists("/sys/class/net/lo"):
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's pairs on loopback too (else: the hostname's address)
    run_in_group(body, cfg, backend, store=loopback_store(rank, cfg.workers, port, cfg.collective_timeout),
                 stop=stop)
    # Done: the result and every file are written (atomically) and the group is left. End here rather than in
    # interpreter finalisation, where a thread still inside torch's C++ is unwound through a noexcept frame
    # and aborts the worker ("terminate called without an active exception", SIGABRT after a finished run:
    # seen about once in 10 suites, also after the heartbeats were stopped and joined before teardown).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def worker_error(trace: str) -> PVisionError:
    """The worker's own error class and message when it was an expected failure, else an EngineError."""
    last = trace.strip().splitlines()[-1] if trace.strip() else "unknown error"
    name, _, message = last.partition(": ")
    cls = known_error(name)
    if cls is RunInterrupted and name.startswith("parallel_vision.errors."):
        return RunInterrupted(message, exit_code=exit_code_in(message))
    if cls is not None and name.startswith("parallel_vision.errors."):
        return cls(message)
    return EngineError(f"a DDP worker failed: {last}")


def spawn(body: Body, cfg: RunConfig, backend: str) -> None:
    """Run `body` in `cfg.workers` spawned processes on this machine; the first failure is raised here.

    `body` must be a module-level function (it is pickled by reference into each worker).
    """
    import logging
    import shutil
    import tempfile

    import torch.multiprocessing as mp

    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # we report the failure ourselves

    workers: list[Any] = []
    lost_dir = tempfile.mkdtemp(prefix="pvision-peer-")  # where a worker that lost a peer leaves its line
    # SIGINT/SIGTERM to this process go on to every worker; they agree on a step, checkpoint and stop.
    with StopRequest(forward_to=lambda: [p.pid for p in workers if p.is_alive()]) as stop:
        # The port stays reserved until the run ends: a concurrent process cannot take it before rank 0 listens.
        reserved = None if cfg.master_port else reserve_port()
        try:
            port = cfg.master_port or reserved.getsockname()[1]  # a user's port was checked free by the launcher
            context = mp.start_processes(_spawned_worker, args=(body, cfg, backend, port, lost_dir),
                                         nprocs=cfg.workers, join=False, start_method="spawn")
            workers.extend(context.processes)
            while not _join(context, workers):
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            lost = watchdog.message_from(lost_dir)
            if lost is not None:
                raise PeerLostError(lost) from None
            if isinstance(exc, mp.ProcessRaisedException):
                raise worker_error(str(exc)) from None
            if stop.requested:
                raise RunInterrupted(f"stopped by {stop.name}: a DDP worker exited before saving ({exc})",
                                     exit_code=stop.exit_code) from None
            raise EngineError(f"a DDP worker died: {exc}") from None
        finally:
            shutil.rmtree(lost_dir, ignore_errors=True)
            if reserved is not None:
                reserved.close()


def _join(context: Any, workers: list[Any]) -> bool:
    """`context.join`, but a worker that lost a peer (exit 75) first takes the others down at once: the lost
    peer does not answer, and may be stopped (a SIGTERM stays pending), so spawn's grace period would only
    hold the exit up by a minute."""
    from multiprocessing.connection import wait

    alive = [p for p in workers if p.exitcode is None]
    ready = wait([p.sentinel for p in alive]) if alive else []
    for p in alive:
        if p.sentinel in ready:
            p.join(5.0)  # its pipe closes a moment before its exit status can be collected
    if any(p.exitcode == PeerLostError.exit_code for p in workers):
        for p in workers:
            if p.exitcode is None:
                p.kill()
    return bool(context.join(grace_period=SPAWN_GRACE_S))
