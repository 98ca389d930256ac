"""How busy is this machine? Other processes' CPU, GPUs, and the bench's quiet-machine policy.

A timing taken while something else used the CPU is skewed; the bench measures that (whole-machine
busy time from /proc/stat minus its own process tree), waits for quiet within its policy, and
flags every run that shared the machine. Framework-free: GPUs are counted with nvidia-smi.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parallel_vision.errors import ConfigError

#: The command line of an engine process (what `engine_cpu` looks for).
ENGINE_MARK = "parallel_vision.launch.child"

Printer = Callable[[str], None]


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


def wait_for_idle(limit_s: float, echo: Printer) -> float:
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


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
