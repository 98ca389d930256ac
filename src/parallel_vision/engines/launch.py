"""Turn a RunConfig into engine processes; the calling process never imports a framework.

- `single`, `dp`, `ddp`, `mirrored`: one child process (`ddp` spawns its own
  workers inside it with `torch.multiprocessing.spawn`, the paper's way).
- `multiworker`: N children, each with a generated `TF_CONFIG` on free loopback ports.
- Under `torchrun` (or a user-provided `TF_CONFIG`), the launcher's process *is* the
  worker the external engine made, so the engine runs right here.

The launcher owns the child environment: threads, allocator settings, log noise.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from parallel_vision.config import RunConfig, usable_cores
from parallel_vision.data.paths import absolute
from parallel_vision.engines import checkpoint, tf_backup
from parallel_vision.engines.signals import StopRequest
from parallel_vision.errors import ConfigError, EngineError, PVisionError, RunInterrupted
from parallel_vision.results.run_result import RunResult
from parallel_vision.results.schema import RESULT_FILE

CONFIG_FILE = "config.json"
ERROR_ENV = "PVISION_ERROR_FILE"
PROGRESS_ENV = "PVISION_PROGRESS"
START_ENV = "PVISION_LAUNCH_TIME"
#: Keep glibc from returning freed memory to the OS between steps: measured to matter
#: for CPU training (page faults on every large activation otherwise). A user's own
#: setting always wins.
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}

ERROR_TYPES: dict[str, type[PVisionError]] = {cls.__name__: cls for cls in PVisionError.__subclasses__()}


def under_torchrun() -> bool:
    """True in a process that torchrun (torch.distributed.elastic) started."""
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ
    )


def external_world_size(framework: str, strategy: str) -> int | None:
    """How many processes torchrun or a user's TF_CONFIG started, when this process is one of them.

    The external launcher is the authority on the world size (as in nanoGPT and the DDP tutorial):
    `--workers` left unset takes this value; only an explicit, different one is an error.
    """
    if framework == "torch" and strategy == "ddp" and under_torchrun():
        try:
            return int(os.environ["WORLD_SIZE"])
        except (KeyError, ValueError):
            raise ConfigError(f"torchrun's WORLD_SIZE is not a number: {os.environ.get('WORLD_SIZE')!r}") from None
    if framework == "tensorflow" and strategy == "multiworker" and "TF_CONFIG" in os.environ:
        from parallel_vision.engines.tf_cluster import cluster_from_env

        return cluster_from_env(None).world_size
    return None


def workers_under_launcher(framework: str, strategy: str, requested: int | None) -> int:
    """`--workers` as given, else the external launcher's world size, else 1; an explicit value
    that contradicts torchrun or TF_CONFIG is refused before anything else is checked."""
    external = external_world_size(framework, strategy)
    if requested is None:
        return external or 1
    if external is not None and requested != external:
        what = (f"torchrun started WORLD_SIZE={external} processes" if framework == "torch"
                else f"TF_CONFIG describes {external} training process(es)")
        raise ConfigError(f"--workers {requested} but {what} (leave --workers out to use it)")
    return requested


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's choice, so concurrent runs differ)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} is not a valid TCP port (1..65535)")
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise ConfigError(f"port {port} on {host} is busy; choose another or leave it unset") from None


def ensure_data(cfg: RunConfig) -> Path:
    """Verify (or download) the dataset here, once, before any worker starts; return its absolute root."""
    from parallel_vision.data.ready import ensure_dataset

    return ensure_dataset(cfg.dataset, cfg.data_dir)


def default_out_dir(cfg: RunConfig, root: str | os.PathLike[str] = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{cfg.framework}-{cfg.strategy}-w{cfg.workers}-{uuid.uuid4().hex[:6]}"


def prepare_out_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """Create the output folder; refuse one that holds a different or finished run."""
    out = absolute(cfg.out_dir) if cfg.out_dir else absolute(default_out_dir(cfg))
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable ({exc.strerror})") from None
    previous = out / CONFIG_FILE
    if previous.exists() and not overwrite:
        try:
            old = RunConfig.from_json(previous.read_text()).identity()
        except (PVisionError, OSError):
            old = None
        new = cfg.replace(out_dir=str(out)).identity()
        if old != new:
            fields = checkpoint.differing_fields(old, new)[:4] if old is not None else []
            detail = f" (different {', '.join(fields)})" if fields else ""
            raise ConfigError(f"output directory {out} holds a different run{detail}; choose another --out")
        if (out / RESULT_FILE).exists():
            try:
                previous_result = json.loads((out / RESULT_FILE).read_text())
                status = previous_result.get("status") if isinstance(previous_result, dict) else None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                status = None
            if status not in ("complete", "incomplete"):
                raise ConfigError(f"output directory {out} holds an unreadable result.json; "
                                  "choose another --out, or --overwrite to start again")
            if status == "complete":
                nothing = "; nothing to resume" if cfg.resume else ""
                raise ConfigError(f"output directory {out} already holds a finished run{nothing}; "
                                  "choose another --out")
    # A checkpoint means an unfinished run: continue it only when asked (or when torchrun restarted
    # this very run); --overwrite starts again, so its old checkpoint can never be resumed by mistake.
    unfinished = checkpoint.present(out) or tf_backup.present(out)
    if unfinished and not cfg.resume and not checkpoint.elastic_auto_resume(out):
        if overwrite:
            checkpoint.remove(out)
            tf_backup.remove(out)
        else:
            raise ConfigError(f"output directory {out} holds an unfinished run ({_checkpoint_where(out)}); "
                              "add --resume to continue it, or --overwrite to start again")
    return out


def _checkpoint_where(out: Path) -> str:
    if not checkpoint.present(out):
        epoch = (tf_backup.info(out) or {}).get("epoch")
        return f"backup after epoch {epoch}" if isinstance(epoch, int) else "a backup"
    info = checkpoint.info(out) or {}
    try:
        epoch, step = int(info["epoch"]), int(info["step"])
    except (KeyError, TypeError, ValueError):
        return "a checkpoint"
    return f"checkpoint after epoch {epoch}" if step == 0 else f"checkpoint at epoch {epoch + 1} step {step}"


def child_environment(cfg: RunConfig, progress: bool) -> dict[str, str]:
    """The engine process's environment: threads per worker, allocator, quiet TF, launch time."""
    env = dict(os.environ)
    threads = str(cfg.resolved_threads())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = threads
    if cfg.framework == "torch" and cfg.malloc_tuning:
        for key, value in ALLOCATOR_ENV.items():
            env.setdefault(key, value)
    else:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    env["PYTHONHASHSEED"] = str(cfg.seed)
    env[PROGRESS_ENV] = "1" if progress else "0"
    env.setdefault(START_ENV, repr(time.time()))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _raise_child_error(error_file: Path, returncode: int, what: str) -> None:
    try:
        info = json.loads(error_file.read_text())
    except (OSError, json.JSONDecodeError):
        info = None
    if info:
        cls = ERROR_TYPES.get(info.get("type", ""), EngineError)
        if cls is RunInterrupted:
            raise RunInterrupted(info["message"], exit_code=int(info.get("exit_code", 130)))
        raise cls(info["message"])
    if returncode < 0:
        raise EngineError(f"{what} was killed by signal {-returncode}")
    raise EngineError(f"{what} failed with exit code {returncode} (run with --debug for details)")


def _engine_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "parallel_vision.engines.child", str(config_path)]


def run(
    cfg: RunConfig, *, progress: bool = True, overwrite: bool = False, log_file: Path | None = None
) -> RunResult:
    """Run one configuration to completion in child process(es) and return its result."""
    launch_time = time.time()
    if cfg.strategy in ("ddp", "multiworker") and cfg.device != "cuda" and not _external_cluster(cfg):
        cores = usable_cores()
        if cfg.device == "cpu" and cfg.workers > cores:
            raise ConfigError(
                f"{cfg.workers} CPU workers requested but this machine has {cores} usable cores"
            )
    if cfg.master_port is not None and not _external_cluster(cfg):
        check_port_free(cfg.master_port)
    # Children get absolute folders (they may start elsewhere); result.json records them.
    cfg = cfg.replace(data_dir=str(ensure_data(cfg)))
    if _external_cluster(cfg):
        return _run_external(cfg, launch_time, progress=progress, overwrite=overwrite)
    out = prepare_out_dir(cfg, overwrite=overwrite)
    cfg = cfg.replace(out_dir=str(out))
    from parallel_vision.results.schema import atomic_write_bytes

    config_path = out / CONFIG_FILE
    atomic_write_bytes(config_path, cfg.to_json().encode())

    env = child_environment(cfg, progress)
    env[START_ENV] = repr(launch_time)
    if cfg.strategy == "multiworker":
        _run_multiworker(cfg, config_path, env, out)
    else:
        _run_children([(_engine_command(config_path), env)], out, log_file)
    return RunResult.load(out)


def _run_external(cfg: RunConfig, launch_time: float, *, progress: bool, overwrite: bool) -> RunResult:
    """torchrun / a user TF_CONFIG made this process: it is one worker, and the engine runs here.

    Only the writer (global rank 0 / the chief) creates, checks or writes the output folder;
    every other worker leaves it alone (no stray empty folders on a shared filesystem, no
    race with the writer's files). A failure that is not one of ours becomes a one-line
    EngineError naming this worker (its traceback is printed first), as in a launcher child.
    """
    from parallel_vision.engines.child import run_engine

    if cfg.framework == "tensorflow":
        from parallel_vision.engines.tf_cluster import cluster_from_env

        writer = cluster_from_env(cfg.workers).is_writer  # a bad TF_CONFIG fails here, before any folder
    else:
        writer = _is_writer()
    out: Path | None = None
    layout = _node_layout()
    if layout and not {"nodes", "processes_per_node"} & set(cfg.extra):
        cfg = cfg.replace(extra={**cfg.extra, **layout})  # a label only: not part of the run's identity
    if cfg.threads_per_worker is None and layout:
        # This node's cores ÷ this node's processes (RunConfig's default divides by every worker of the job).
        cfg = cfg.replace(threads_per_worker=max(1, usable_cores() // layout["processes_per_node"]))
    if writer:
        from parallel_vision.results.schema import atomic_write_bytes

        out = prepare_out_dir(cfg, overwrite=overwrite)
        cfg = cfg.replace(out_dir=str(out))
        atomic_write_bytes(out / CONFIG_FILE, cfg.to_json().encode())
    os.environ.setdefault(START_ENV, repr(launch_time))
    os.environ[PROGRESS_ENV] = "1" if progress else "0"
    try:
        run_engine(cfg)
    except (PVisionError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a lost peer surfacing from gloo or gRPC
        import traceback

        traceback.print_exc()
        raise EngineError(f"{_worker_name()} failed: {_first_lines(exc)}") from None
    return RunResult.load(out) if out is not None else RunResult({}, None)


def _node_layout() -> dict[str, int]:
    """nodes × processes per node of an external cluster (`workers` is their product), for the record."""
    try:
        if under_torchrun():
            return {"nodes": int(os.environ["GROUP_WORLD_SIZE"]),
                    "processes_per_node": int(os.environ["LOCAL_WORLD_SIZE"])}
        cluster = json.loads(os.environ.get("TF_CONFIG", "")).get("cluster", {})
        addresses = [a for job in ("chief", "worker") for a in cluster.get(job, [])]
        hosts = {str(a).rpartition(":")[0] for a in addresses}
        return {"nodes": len(hosts), "processes_per_node": -(-len(addresses) // len(hosts))}
    except (KeyError, ValueError, AttributeError, TypeError, ZeroDivisionError):
        return {}


def _worker_name() -> str:
    if under_torchrun():
        return f"torchrun rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')}"
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "")).get("task", {})
        return f"TF_CONFIG task {task.get('type')} {task.get('index')}"
    except (json.JSONDecodeError, AttributeError):
        return "this worker"


#: Lines of a framework error message that say where, not what (TensorFlow's graph-op traces).
_WHERE_LINE = re.compile(r'^(File "|Graph execution error:$|Detected at node |At:$|Traceback \(most recent)')


def _first_lines(exc: BaseException) -> str:
    """What happened, in one line: the message's first line that is not a location (gloo appends
    the C++ call site after it; TensorFlow puts the op's trace first, prefixes `{{function_node …}}`
    and continues a list on the next line)."""
    lines = [re.sub(r"^\{\{[^}]*\}\}\s*", "", ln.strip()) for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not _WHERE_LINE.match(ln)]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return f"{type(exc).__name__}: {text[:400]}"


def _is_writer() -> bool:
    """In an externally launched cluster only global rank 0 / the chief writes the output folder.

    TF_CONFIG: the chief, or worker 0 when the cluster has no chief (tf_cluster.ClusterTask's rule).
    """
    if under_torchrun():
        return os.environ.get("RANK", "0") == "0"
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        try:
            data = json.loads(tf_config)
            task, cluster = data.get("task", {}), data.get("cluster", {})
            if task.get("type") == "chief":
                return True
            return task.get("type") == "worker" and task.get("index") == 0 and not cluster.get("chief")
        except (json.JSONDecodeError, AttributeError):
            return True  # malformed: tf_cluster refuses it with a one-line ConfigError
    return True


def _external_cluster(cfg: RunConfig) -> bool:
    if cfg.framework == "torch" and cfg.strategy == "ddp":
        return under_torchrun()
    if cfg.framework == "tensorflow" and cfg.strategy == "multiworker":
        return "TF_CONFIG" in os.environ
    return False


def _run_multiworker(cfg: RunConfig, config_path: Path, env: dict[str, str], out: Path) -> None:
    ports = [free_port() for _ in range(cfg.workers)]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    jobs = []
    for index in range(cfg.workers):
        worker_env = dict(env)
        worker_env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        if index:
            worker_env[PROGRESS_ENV] = "0"
        jobs.append((_engine_command(config_path), worker_env))
    _run_children(jobs, out, None)


def _run_children(
    jobs: list[tuple[list[str], dict[str, str]]], out: Path, log_file: Path | None
) -> None:
    """Start every job, wait for all; the first failure stops the rest and is re-raised."""
    error_dir = Path(tempfile.mkdtemp(prefix="pvision-err-"))
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    log_handle = open(log_file, "ab") if log_file else None  # noqa: SIM115 - closed below
    # SIGINT/SIGTERM go on to the engine process(es), which finish the step, checkpoint and exit 130/143.
    stop = StopRequest(forward_to=lambda: [p.pid for p, _ in procs if p.poll() is None]).install()
    try:
        for i, (cmd, env) in enumerate(jobs):
            error_file = error_dir / f"worker-{i}.json"
            env = dict(env, **{ERROR_ENV: str(error_file)})
            stdout = log_handle if (log_handle and i == 0) else (subprocess.DEVNULL if i else None)
            stderr = log_handle if log_handle else (None if i == 0 else _worker_log(out, i))
            procs.append((subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr), error_file))
            if stop.signum is not None:  # it came while this child was starting
                procs[-1][0].send_signal(stop.signum)
        try:
            _wait_all(procs)
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


def _worker_log(out: Path, index: int):  # type: ignore[no-untyped-def]
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    return open(logs / f"worker-{index}.log", "ab")  # noqa: SIM115 - owned by the child


def _wait_all(procs: list[tuple[subprocess.Popen[bytes], Path]], grace_s: float = 30.0) -> None:
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
                deadline = time.monotonic() + grace_s
                for other, _ in remaining:  # a dead peer leaves the others blocked in a collective
                    try:
                        other.wait(timeout=max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        other.kill()
                what = "engine process" if len(procs) == 1 else f"worker {index}"
                _raise_child_error(error_file, code, what)
        time.sleep(0.05)


def describe(cfg: RunConfig) -> dict[str, Any]:
    """A one-line description of a config, for progress lines and errors."""
    return {
        "framework": cfg.framework,
        "strategy": cfg.strategy,
        "workers": cfg.workers,
        "batch": cfg.batch_size,
        "epochs": cfg.epochs,
    }
