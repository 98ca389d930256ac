"""Start engine processes, wait for all of them, and turn the first failure into one line.

Each child writes its expected failure (type, one-line message, exit code) to a small JSON
file named in its environment; the launcher re-raises it as the same error type, so the user
sees one line whatever process it happened in. SIGINT/SIGTERM are forwarded to the children,
which finish their step, checkpoint and exit 130/143.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from parallel_vision import envvars
from parallel_vision.config import RunConfig, heartbeat_timeout_s
from parallel_vision.engines import registry
from parallel_vision.errors import EngineError, PeerLostError, PVisionError, RunInterrupted, error_type
from parallel_vision.launch.lost_peer import lost_peer_line
from parallel_vision.ports import free_port
from parallel_vision.signals import StopRequest


def engine_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "parallel_vision.launch.child", str(config_path)]


#: (worker index, the tail of its log) → the one-line lost-peer message, or None (launch/lost_peer.py).
LostPeer = Callable[[int, str], "str | None"]
TAIL_BYTES = 64 * 1024


class Tee:
    """Copies a child's stderr to ours as it comes and keeps its last TAIL_BYTES, for what killed it."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.tail: deque[bytes] = deque()
        self.size = 0
        self.thread = threading.Thread(target=self._copy, args=(stream,), daemon=True)
        self.thread.start()

    def _copy(self, stream) -> None:  # type: ignore[no-untyped-def]
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):  # as it comes: `\r` progress lines too
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()
            self.tail.append(chunk)
            self.size += len(chunk)
            while self.size > TAIL_BYTES and len(self.tail) > 1:
                self.size -= len(self.tail.popleft())

    def text(self) -> str:
        self.thread.join(timeout=2.0)  # the child is dead: its last lines are on their way
        return b"".join(self.tail).decode(errors="replace")


def file_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def raise_child_error(error_file: Path, returncode: int, what: str, lost_peer: str | None = None) -> None:
    try:
        info = json.loads(error_file.read_text())
    except (OSError, json.JSONDecodeError):
        info = None
    if info:
        cls = error_type(info.get("type", ""))
        if cls is RunInterrupted:
            raise RunInterrupted(info["message"], exit_code=int(info.get("exit_code", 130)))
        raise cls(info["message"])
    if returncode < 0:
        if lost_peer:  # native code (XLA) aborted it because a peer went silent
            raise PeerLostError(lost_peer)
        raise EngineError(f"{what} was killed by signal {-returncode}")
    raise EngineError(f"{what} failed with exit code {returncode} (run with --debug for details)")


def run_multiworker(cfg: RunConfig, config_path: Path, env: dict[str, str], out: Path) -> None:
    ports = [free_port() for _ in range(cfg.workers)]
    addresses = [f"127.0.0.1:{p}" for p in ports]
    hook = registry.get(cfg.framework).cluster  # the engine's own variables (TF_CONFIG, KERAS_DISTRIBUTION_*)
    if hook is None or cfg.strategy not in hook.strategies or hook.worker_environment is None:
        raise EngineError(f"the {cfg.framework} engine declares no cluster variables for its {cfg.strategy} workers "
                          "(EngineSpec.cluster.worker_environment)")
    jobs = []
    for index in range(cfg.workers):
        worker_env = dict(env)
        worker_env.update(hook.worker_environment(addresses, index))
        if index:
            worker_env[envvars.PROGRESS] = "0"
        jobs.append((engine_command(config_path), worker_env))
    run_children(jobs, out, None, lost_peer=lambda index, log: lost_peer_line(
        log, rank=index, addresses=addresses, heartbeat_s=heartbeat_timeout_s(cfg.collective_timeout),
        kept=backup_kept(cfg, out) if index == 0 else f"none by this worker (worker 0 keeps them: {out})"))


def backup_kept(cfg: RunConfig, out: Path) -> str:
    """Where the unfinished run stands in OUT, for the lost-peer line."""
    resume = registry.get(cfg.framework).resume
    return f"{resume.describe(out)} in {out}" if resume.present(out) else f"none yet in {out}"


def run_children(
    jobs: list[tuple[list[str], dict[str, str]]], out: Path, log_file: Path | None, lost_peer: LostPeer | None = None
) -> None:
    """Start every job, wait for all; the first failure stops the rest and is re-raised. With `lost_peer`, the
    log of a worker killed by a signal is read for a lost peer (a native abort, launch/lost_peer.py)."""
    error_dir = Path(tempfile.mkdtemp(prefix="pvision-err-"))
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    tails: list[Callable[[], str]] = []
    log_handle = open(log_file, "ab") if log_file else None  # noqa: SIM115 - closed below
    # SIGINT/SIGTERM go on to the engine process(es), which finish the step, checkpoint and exit 130/143.
    stop = StopRequest(forward_to=lambda: [p.pid for p, _ in procs if p.poll() is None]).install()
    try:
        for i, (cmd, env) in enumerate(jobs):
            error_file = error_dir / f"worker-{i}.json"
            env = dict(env, **{envvars.ERROR_FILE: str(error_file)})
            stdout = log_handle if (log_handle and i == 0) else (subprocess.DEVNULL if i else None)
            stderr = log_handle if log_handle else (None if i == 0 else worker_log(out, i))
            if stderr is None and lost_peer is not None:
                stderr = subprocess.PIPE  # copied through a Tee, which keeps the tail
            procs.append((subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr), error_file))
            tails.append(tail_of(procs[-1][0], log_file, out, i))
            if stop.signum is not None:  # it came while this child was starting
                procs[-1][0].send_signal(stop.signum)
        try:
            wait_all(procs, lost_peer=(lambda i: lost_peer(i, tails[i]())) if lost_peer else None)
        except PVisionError as exc:
            if stop.signum is None or isinstance(exc, RunInterrupted):
                raise
            raise RunInterrupted(f"stopped by {stop.name}: {exc}", exit_code=stop.exit_code) from None
    except KeyboardInterrupt:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(2)
        for proc, _ in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise RunInterrupted("interrupted; finished work was kept", exit_code=130) from None
    finally:
        stop.restore()
        if log_handle:
            log_handle.close()
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def worker_log(out: Path, index: int):  # type: ignore[no-untyped-def]
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    return open(logs / f"worker-{index}.log", "ab")  # noqa: SIM115 - owned by the child


def tail_of(proc: subprocess.Popen[bytes], log_file: Path | None, out: Path, index: int) -> Callable[[], str]:
    """How to read the end of worker `index`'s log once it is dead."""
    if proc.stderr is not None:
        return Tee(proc.stderr).text
    path = log_file or (out / "logs" / f"worker-{index}.log" if index else None)
    return (lambda: file_tail(path)) if path else (lambda: "")


def wait_all(procs: list[tuple[subprocess.Popen[bytes], Path]], grace_s: float = 30.0,
             lost_peer: Callable[[int], str | None] | None = None) -> None:
    remaining = list(procs)
    while remaining:
        for item in list(remaining):
            proc, error_file = item
            code = proc.poll()
            if code is None:
                continue
            remaining.remove(item)
            if code != 0:
                index = procs.index(item)
                line = lost_peer(index) if lost_peer and code < 0 else None
                # A lost peer is silent (frozen, cut off): no grace for it. Else a dead peer leaves the others
                # blocked in a collective for a while, or they end on their own.
                deadline = time.monotonic() + (0.0 if line else grace_s)
                for other, _ in remaining:
                    try:
                        other.wait(timeout=max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        other.kill()
                what = "engine process" if len(procs) == 1 else f"worker {index}"
                raise_child_error(error_file, code, what, line)
        time.sleep(0.05)
