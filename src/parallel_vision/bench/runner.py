"""Run a bench matrix: one run at a time, resumable, every finished run kept.

Each planned run goes through `launch.run(cfg, progress=False, log_file=...)`
into `ROOT/runs/<name>-r<k>`; its result is inserted into `ROOT/results.sqlite`
as soon as it finishes. A run already stored for the same config identity,
code version and repeat is not run again, so re-running an interrupted bench
picks up where it stopped; half-finished run folders (no complete result.json)
are deleted and run again. Configurations the machine cannot run (the engine
raises ConfigError, e.g. DataParallel without two GPUs) are recorded in
`ROOT/skipped/<name>.json` with the reason, and the report lists them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.bench.matrix import PlannedRun, expand
from parallel_vision.bench.presets import BenchSpec, resolve_workers
from parallel_vision.config import RunConfig, usable_cores
from parallel_vision.data.paths import absolute
from parallel_vision.data.ready import ensure_dataset
from parallel_vision.errors import ConfigError, DiskFullError, EngineError, PVisionError, RunInterrupted
from parallel_vision.results.schema import RESULT_FILE, atomic_write_bytes
from parallel_vision.results.store import BENCH_RUN_FILE, SKIPPED_DIR, Store, identity_hash, open_store

MANIFEST = "bench.json"
ENGINE_MARK = "parallel_vision.launch.child"

Printer = Callable[[str], None]


@dataclass
class BenchOutcome:
    root: Path
    planned: int = 0
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    waited_s: float = 0.0
    """Of `seconds`, the time spent waiting for other engine processes to finish."""
    busy_runs: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the machine
def gpu_count() -> int:
    """NVIDIA GPUs visible to this process, without importing a framework (0 when unknown)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    count = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    if visible:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def _process_table() -> tuple[dict[int, list[int]], dict[int, float], dict[int, str]]:
    """children by parent, CPU seconds (user + system) and command line of every process."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    cmdlines: dict[int, str] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        try:
            ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        except (IndexError, ValueError):
            continue
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        cpu[pid] = (utime + stime) / ticks
        cmdlines[pid] = cmd
    return children, cpu, cmdlines


def _tree(children: dict[int, list[int]], pid: int) -> set[int]:
    out, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def engine_cpu() -> dict[int, float]:
    """Other engine processes on this machine (not ours) and the CPU seconds of each one's process tree
    (DDP workers are children of the engine process)."""
    children, cpu, cmdlines = _process_table()
    mine = _tree(children, os.getpid())
    return {pid: sum(cpu.get(p, 0.0) for p in _tree(children, pid))
            for pid, cmd in cmdlines.items() if ENGINE_MARK in cmd and pid not in mine}


def busy_engine_processes(sample_s: float = 1.0, min_cores: float = 0.1) -> list[int]:
    """Other engine processes using CPU now (an idle or hung one does not skew a timing)."""
    before = engine_cpu()
    if not before:
        return []
    time.sleep(sample_s)
    after = engine_cpu()
    return sorted(pid for pid, t in after.items() if (t - before.get(pid, 0.0)) / sample_s >= min_cores)


def _system_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores; /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and everything it started (finished children included)."""
    children, _cpu, _cmd = _process_table()
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _tree(children, os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / ticks  # utime stime cutime cstime
        except (OSError, ValueError, IndexError):
            continue
    return total


class MachineMeter:
    """CPU used by *other* processes (anything this bench did not start) over an interval, in cores.

    Whole-machine busy time from /proc/stat minus this process tree's own CPU time, so a colleague's
    fuzzer, test suite or training run shows up whatever its command line.
    """

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _system_busy_seconds()
        self.own0 = _own_cpu_seconds()

    def others_cpu_s(self) -> float:
        return max(0.0, (_system_busy_seconds() - self.busy0) - (_own_cpu_seconds() - self.own0))

    def others_cores(self) -> float:
        return self.others_cpu_s() / max(1e-3, time.monotonic() - self.t0)


def other_cpu_load(sample_s: float = 2.0) -> float:
    """Cores' worth of CPU that other processes use right now (sampled over `sample_s`)."""
    try:
        meter = MachineMeter()
        time.sleep(sample_s)
        return meter.others_cores()
    except (OSError, ValueError):
        return 0.0


#: Other processes using more than this many cores make the machine "busy" for a timing.
BUSY_CORES = 0.25


def other_engine_processes() -> list[int]:
    """PIDs of engine processes running on this machine that are not ours (colleagues' runs)."""
    return sorted(engine_cpu())


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# --------------------------------------------------------------------------- helpers
def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _complete_result(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("status") == "complete" else None


def _same_run(data: dict[str, Any], cfg: RunConfig, code_version: str | None, repeat: int) -> bool:
    try:
        same_identity = identity_hash(data["config"]) == identity_hash(cfg)
    except (PVisionError, KeyError, TypeError):
        return False
    extra = data["config"].get("extra") or {}
    return (same_identity and (data.get("environment") or {}).get("code_version") == code_version
            and extra.get("repeat", 1) == repeat)


def _run_folder(root: Path, planned: PlannedRun, code_version: str | None) -> tuple[Path, bool]:
    """The folder for this run and whether it already holds it, finished.

    A folder with a complete result of another config or code version is never
    touched: the run goes to `<name>-r<k>-2`, `-3`, …. A folder without a
    complete result (a run that was interrupted or crashed) is deleted.
    """
    assert planned.cfg is not None
    base = root / "runs" / planned.run_name
    for suffix in range(1, 1000):
        folder = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
        if not folder.exists():
            return folder, False
        data = _complete_result(folder)
        if data is None:
            shutil.rmtree(folder)
            return folder, False
        if _same_run(data, planned.cfg, code_version, planned.repeat):
            return folder, True
    raise ConfigError(f"too many runs named {planned.run_name} under {root / 'runs'}")


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def _skip_record(planned: PlannedRun, reason: str, kind: str, code_version: str | None) -> dict[str, Any]:
    cfg = planned.cfg.to_dict() if planned.cfg is not None else dict(planned.describe)
    return {
        "name": planned.name,
        "kind": kind,
        "reason": reason,
        "config": cfg,
        "identity_hash": identity_hash(planned.cfg) if planned.cfg is not None else None,
        "code_version": code_version,
        "host": socket.gethostname(),
        "recorded_at": _now(),
    }


def _record_skip(store: Store, root: Path, record: dict[str, Any]) -> None:
    path = root / SKIPPED_DIR / f"{record['name']}.json"
    _write_json(path, record)
    store.insert_skip(record, path)


def _known_skip(root: Path, planned: PlannedRun, code: str | None, host: str) -> str | None:
    """The reason recorded when this same configuration could not run here with this code, if any."""
    try:
        record = json.loads((root / SKIPPED_DIR / f"{planned.name}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if planned.cfg is None or record.get("kind") != "skipped":
        return None  # failures are retried; impossible configs are re-derived from the matrix
    same = (record.get("identity_hash") == identity_hash(planned.cfg) and record.get("code_version") == code
            and record.get("host") == host)
    return str(record.get("reason")) if same else None


def _clear_skip(store: Store, root: Path, name: str) -> None:
    (root / SKIPPED_DIR / f"{name}.json").unlink(missing_ok=True)
    store.delete_skip(name)


def _label(p: PlannedRun) -> str:
    return p.run_name


# --------------------------------------------------------------------------- the bench
def run_bench(
    spec: BenchSpec,
    root: str | os.PathLike[str],
    *,
    echo: Printer = print,
    wait_idle_s: float | None = None,
    strict_idle: bool = False,
    overwrite: bool = False,
) -> BenchOutcome:
    """Run every planned configuration of `spec` into ROOT, one at a time; return what happened.

    Quiet-machine policy (other processes' CPU skews a timing): by default ("bounded") the
    bench waits for a quiet machine at most `wait_idle_s` seconds *in all* (default 30), then
    runs regardless and flags every run measured while others used CPU. `strict_idle` waits
    before *each* run up to `wait_idle_s` (default 600), for numbers meant to be published.
    `overwrite`: re-run even configurations already stored for this code version.
    """
    from parallel_vision import launch
    from parallel_vision.engines.provenance import code_version as current_code_version

    root = absolute(root)
    cores, gpus = usable_cores(), gpu_count()
    spec = resolve_workers(spec, gpus if (gpus and spec.device != "cpu") else cores)
    plan = prepare_data(expand(spec, cores=cores, gpus=gpus), spec.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    code = current_code_version()
    store = open_store(root, create_empty=True)
    outcome = BenchOutcome(root=root, planned=len(plan))
    manifest_path = root / MANIFEST
    history = []
    if manifest_path.exists():
        try:
            history = json.loads(manifest_path.read_text()).get("history", [])
        except (OSError, json.JSONDecodeError, AttributeError):
            history = []
    idle = IdlePolicy.make(wait_idle_s, strict_idle)
    manifest: dict[str, Any] = {
        "spec": spec.to_dict(),
        "idle_policy": idle.describe(),
        "code_version": code,
        "cores": cores,
        "gpus": gpus,
        "started_at": _now(),
        "finished_at": None,
        "status": "running",
        "runs": [{"name": p.run_name, "state": "pending"} for p in plan],
        "history": history,
    }

    def save_manifest() -> None:
        _write_json(manifest_path, manifest)

    def set_state(i: int, state: str, **info: Any) -> None:
        manifest["runs"][i].update(state=state, **info)
        save_manifest()

    # What is already done (same identity, code version and repeat), before the clock starts.
    todo: list[int] = []
    host = socket.gethostname()
    for i, planned in enumerate(plan):
        if planned.cfg is None:
            todo.append(i)
            continue
        known = _known_skip(root, planned, code, host)
        if known is not None and not overwrite:
            outcome.skipped.append((planned.name, known))
            manifest["runs"][i].update(state="skipped", reason=known)
            continue
        stored = None if overwrite else store.done(identity_hash(planned.cfg), code, planned.repeat)
        if stored is not None and (root / stored["path"] / RESULT_FILE).exists():
            outcome.reused.append(planned.run_name)
            manifest["runs"][i].update(state="reused", folder=stored["path"], run_id=stored["run_id"])
            continue
        folder = root / "runs" / planned.run_name
        data = None if overwrite else _complete_result(folder)
        if data is not None and _same_run(data, planned.cfg, code, planned.repeat):
            store.insert_result(data, folder)  # finished, but not indexed (e.g. interrupted just after)
            outcome.reused.append(planned.run_name)
            manifest["runs"][i].update(state="reused", folder=f"runs/{folder.name}", run_id=data["run_id"])
            continue
        todo.append(i)
    save_manifest()
    echo(f"bench {spec.preset or 'custom'}: {len(plan)} run(s) planned, {len(outcome.reused)} already done "
         f"for code {code}, {len(todo)} to run → {root}")

    start = time.monotonic()
    previous_term = _terminate_as_interrupt()
    durations: list[float] = []
    impossible: set[str] = set()
    try:
        for position, i in enumerate(todo, 1):
            planned = plan[i]
            elapsed = time.monotonic() - start
            remaining = len(todo) - position + 1
            eta = fmt_duration(sum(durations) / len(durations) * remaining) if durations else "—"
            head = f"[{position}/{len(todo)} · {fmt_duration(elapsed)} elapsed · ETA {eta}] {_label(planned)}"
            if planned.cfg is not None and planned.cfg.threads_per_worker is not None:
                n = planned.cfg.threads_per_worker
                per = "per process" if planned.cfg.strategy in ("mirrored", "dp") else "per worker"
                head += f" ({n} thread{'s' if n > 1 else ''} {per})"
            if planned.cfg is None or planned.name in impossible:
                reason = planned.error or next(r for n, r in outcome.skipped if n == planned.name)
                if planned.cfg is None:
                    _record_skip(store, root, _skip_record(planned, reason, "skipped", code))
                outcome.skipped.append((planned.name, reason))
                set_state(i, "skipped", reason=reason)
                echo(f"{head}: skipped — {reason}")
                continue
            t_wait = time.monotonic()
            idle_load = _wait_for_idle(idle.limit_now(outcome.waited_s), echo)
            outcome.waited_s += time.monotonic() - t_wait
            folder, finished = _run_folder(root, planned, code)
            if finished and not overwrite:
                data = _complete_result(folder)
                assert data is not None
                store.insert_result(data, folder)
                outcome.reused.append(planned.run_name)
                set_state(i, "reused", folder=str(folder.relative_to(root)), run_id=data["run_id"])
                echo(f"{head}: already done in {folder.name}")
                continue
            if finished and overwrite:
                shutil.rmtree(folder)
            cfg = planned.cfg.replace(out_dir=str(folder))
            log_file = root / "logs" / f"{folder.name}.log"
            log_file.unlink(missing_ok=True)
            load = load_average()
            meter = MachineMeter()
            set_state(i, "running", folder=str(folder.relative_to(root)), started_at=_now(),
                      other_cores_at_start=round(idle_load, 2), load_average_at_start=load)
            busy_note = f" (other processes use {idle_load:.1f} cores)" if idle_load >= BUSY_CORES else ""
            echo(f"{head} …{busy_note}")
            t0 = time.monotonic()
            try:
                result = launch.run(cfg, progress=False, log_file=log_file)
            except RunInterrupted:
                data = _complete_result(folder)
                if data is not None:  # it finished while the interrupt was being handled: keep it
                    store.insert_result(data, folder)
                    outcome.ran.append(planned.run_name)
                    set_state(i, "done", run_id=data["run_id"], finished_at=_now())
                raise
            except ConfigError as exc:
                reason = str(exc).strip().splitlines()[0]
                shutil.rmtree(folder, ignore_errors=True)
                _record_skip(store, root, _skip_record(planned, reason, "skipped", code))
                impossible.add(planned.name)
                outcome.skipped.append((planned.name, reason))
                set_state(i, "skipped", reason=reason)
                echo(f"    skipped — {reason}")
                continue
            except DiskFullError:
                raise  # every later run would fail the same way: stop now, in one line
            except (EngineError, PVisionError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                why = f"failed: {reason} (log: logs/{log_file.name})"
                _record_skip(store, root, _skip_record(planned, why, "failed", code))
                outcome.failed.append((planned.run_name, reason))
                set_state(i, "failed", reason=reason)
                echo(f"    FAILED — {reason} (see {log_file})")
                continue
            seconds = time.monotonic() - t0
            durations.append(seconds)
            # How much CPU did other processes take while this run trained? (flagged above BUSY_CORES)
            others = meter.others_cores()
            store.insert_result(result.data, folder)
            _clear_skip(store, root, planned.name)
            if others >= BUSY_CORES:
                outcome.busy_runs.append(planned.run_name)
            outcome.ran.append(planned.run_name)
            s = result.summary
            _write_json(folder / BENCH_RUN_FILE, {
                "run": folder.name, "bench_started_at": manifest["started_at"], "preset": spec.preset,
                "started_at": manifest["runs"][i].get("started_at"), "finished_at": _now(),
                "seconds": round(seconds, 2), "other_cores": round(others, 3),
                "other_cores_at_start": round(idle_load, 3), "load_average_at_start": load,
            })
            store.insert_result(result.data, folder)  # again, now with how busy the machine was
            set_state(i, "done", run_id=result.run_id, seconds=round(seconds, 2), finished_at=_now(),
                      other_cores=round(others, 2))
            echo(f"    done in {seconds:.1f} s · steady epoch {s['mean_epoch_time_excl_warmup_s']:.2f} s · "
                 f"{s['images_per_s_excl_warmup']:.0f} img/s · test acc {100 * s['test_accuracy']:.2f} %"
                 + (f" · other processes used {others:.1f} cores meanwhile" if others >= BUSY_CORES else ""))
    except (KeyboardInterrupt, RunInterrupted):
        manifest.update(status="interrupted", finished_at=_now())
        for run in manifest["runs"]:
            if run["state"] == "running":
                run["state"] = "interrupted"
        save_manifest()
        store.close()
        kept = len(outcome.ran) + len(outcome.reused)
        raise RunInterrupted(
            f"bench interrupted; {kept} finished run(s) kept in {root}; run the same command again to resume",
            exit_code=130,
        ) from None
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    outcome.seconds = time.monotonic() - start
    manifest.update(status="complete", finished_at=_now(), seconds=round(outcome.seconds, 2),
                    waited_s=round(outcome.waited_s, 2))
    manifest["history"] = (history + [{k: manifest.get(k) for k in ("spec", "code_version", "started_at",
                                                                   "finished_at", "status", "seconds",
                                                                   "waited_s", "idle_policy")}])[-20:]
    save_manifest()
    store.close()
    return outcome


def prepare_data(plan: list[PlannedRun], data_dir: str | None) -> list[PlannedRun]:
    """Verify (or fetch, once) every dataset the plan needs before the first run; hand each run the
    verified absolute folder. A dataset that cannot be had stops the bench here, in one line."""
    roots = {name: str(ensure_dataset(name, data_dir))
             for name in sorted({p.cfg.dataset for p in plan if p.cfg is not None})}
    return [dataclasses.replace(p, cfg=p.cfg.replace(data_dir=roots[p.cfg.dataset])) if p.cfg is not None else p
            for p in plan]


def _terminate_as_interrupt() -> Any:
    """SIGTERM (a scheduler, `kill`, a background job whose Ctrl-C is ignored) stops the bench like Ctrl-C:
    the running engine is told to stop, finished runs are kept, the manifest says 'interrupted'."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


@dataclass(frozen=True)
class IdlePolicy:
    """How long the bench may wait for other processes to stop using CPU before a run."""

    mode: str  # "bounded": one budget for the whole bench; "strict": a limit before each run
    wait_s: float

    BOUNDED_DEFAULT_S = 30.0
    STRICT_DEFAULT_S = 600.0

    @classmethod
    def make(cls, wait_s: float | None, strict: bool) -> IdlePolicy:
        if wait_s is not None and (wait_s < 0 or wait_s != wait_s):
            raise ConfigError(f"--wait-idle must be >= 0 seconds; got {wait_s}")
        default = cls.STRICT_DEFAULT_S if strict else cls.BOUNDED_DEFAULT_S
        return cls("strict" if strict else "bounded", default if wait_s is None else float(wait_s))

    def limit_now(self, waited_so_far: float) -> float:
        """Seconds the next wait may last."""
        return self.wait_s if self.mode == "strict" else max(0.0, self.wait_s - waited_so_far)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "wait_s": self.wait_s}


def _wait_for_idle(limit_s: float, echo: Printer) -> float:
    """Wait (up to limit_s) until other processes use under BUSY_CORES of CPU; return what they use."""
    load = other_cpu_load(2.0 if limit_s > 0 else 0.5)
    if load < BUSY_CORES or limit_s <= 0:
        return load
    engines = busy_engine_processes()
    echo(f"    waiting for the machine to be quiet: other processes use {load:.1f} cores"
         + (f" (engine pids {engines})" if engines else "")
         + f" — so they do not skew the timing (up to {fmt_duration(limit_s)}) …")
    deadline = time.monotonic() + limit_s
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:  # quiet for three samples in a row (~6 s), not a lull
        load = other_cpu_load()
        quiet = quiet + 1 if load < BUSY_CORES else 0
    if load >= BUSY_CORES:
        echo(f"    still busy after {fmt_duration(limit_s)}; running anyway and flagging the run")
    return load
