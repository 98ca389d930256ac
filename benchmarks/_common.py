"""Shared helpers of the CPU benchmark scripts: machine facts, a quiet-machine gate, engine runs,
subprocess baselines, statistics, JSON output and the final table.

Nothing here imports torch or TensorFlow: every measured run happens in its own process, so
the scripts compare like with like (fresh interpreter, same start-up) and never share a thread
pool or an allocator with the thing they measure.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
BASELINES_DIR = ROOT / "benchmarks" / "baselines"
ENGINE_MARK = "parallel_vision.launch.child"
#: glibc allocator variables our launcher sets for torch engine children; baselines run without them.
ALLOCATOR_VARS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_TOP_PAD_", "LD_PRELOAD",
                  "TCMALLOC_RELEASE_RATE", "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD")
#: The paper CNN's training cost per image (3 x 59.9 MFLOP forward), the issue's yardstick.
TRAIN_FLOP_PER_IMAGE = 180e6
#: Appended to every measured subprocess command line so colleagues' idle checks (which look for
#: engine processes by this name) see our baselines and GEMM runs as busy too; scripts ignore it.
MARK_ARGS = ("--mark", "parallel_vision.launch.child-equivalent:benchmark")
T = TypeVar("T")


# --------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    """CPU model, cores, SIMD flags, memory and the package versions that decide the numbers."""
    from parallel_vision.provenance import cpu_flags, cpu_model, memory_gib, package_versions

    versions = package_versions()
    for name in ("pytorch-lightning", "pillow", "py-spy"):
        try:
            import importlib.metadata

            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


# --------------------------------------------------------------------------- a quiet machine
def load1() -> float:
    return os.getloadavg()[0]


def _descendants(pid: int) -> set[int]:
    """PIDs below `pid` in the process tree (from /proc; Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    seen: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def foreign_engine_processes() -> list[int]:
    """Engine processes on this machine that this script did not start (someone else is measuring)."""
    mine = _descendants(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ENGINE_MARK in cmd or "torch.multiprocessing.spawn" in cmd and "parallel_vision" in cmd:
            found.append(int(entry.name))
    return found


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0


def _stat_totals() -> tuple[int, int]:
    parts = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(parts[:8]), parts[3] + (parts[4] if len(parts) > 4 else 0)


def sample_machine(window_s: float = 1.0) -> dict[str, Any]:
    """Busy cores (all processes) and the CPU use of other people's engine process trees over `window_s`.

    A foreign engine process tree that used under 5 % of a core in the window (e.g. a hung,
    sleeping run) is listed but does not count as running.
    """
    engines = foreign_engine_processes()
    trees = {pid: {pid} | _descendants(pid) for pid in engines}
    before = {pid: sum(_cpu_ticks(p) for p in tree) for pid, tree in trees.items()}
    total0, idle0 = _stat_totals()
    time.sleep(window_s)
    total1, idle1 = _stat_totals()
    hz = os.sysconf("SC_CLK_TCK")
    use = {pid: (sum(_cpu_ticks(p) for p in tree) - before[pid]) / hz / window_s for pid, tree in trees.items()}
    busy = (1.0 - (idle1 - idle0) / max(1, total1 - total0)) * (os.cpu_count() or 1)
    return {"busy_cores": busy, "foreign_engines": engines,
            "foreign_engines_running": [pid for pid, u in use.items() if u >= 0.05],
            "foreign_cpu_cores": {str(pid): round(u, 3) for pid, u in use.items()}}


def wait_until_quiet(
    *, first: bool, max_load: float = 1.0, max_busy: float = 0.3, poll_s: float = 60.0, enabled: bool = True
) -> dict[str, Any]:
    """Block until nobody else is measuring; return what the machine looked like when we went on.

    Before the first run of a script: no other engine process running and the 1-minute load
    below `max_load`. Between the script's own alternating runs the load average still carries
    our previous run, so there the test is instantaneous instead: no other engine process
    running and fewer than `max_busy` cores busy over one second.
    """
    waited = 0.0
    while True:
        m = sample_machine()
        load = load1()
        running = m["foreign_engines_running"]
        quiet = not running and (load < max_load if first else m["busy_cores"] < max_busy)
        if quiet or not enabled:
            return {"load1": round(load, 2), "busy_cores": round(m["busy_cores"], 2),
                    "foreign_engines": len(m["foreign_engines"]), "foreign_engines_running": len(running),
                    "foreign_cpu_cores": m["foreign_cpu_cores"], "waited_s": round(waited, 1), "quiet": quiet,
                    "at": datetime.now().isoformat(timespec="seconds")}
        print(f"  [wait] load1 {load:.2f}, busy cores {m['busy_cores']:.2f}, other engine processes running "
              f"{len(running)} of {len(m['foreign_engines'])}; sleeping {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
        waited += poll_s


def _own_ticks() -> int:
    """CPU ticks of this process plus every child it has reaped (finished runs roll up into these)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime


def _busy_ticks() -> int:
    total, idle = _stat_totals()
    return total - idle


def measured(fn: Callable[[], T], *, first: bool, enabled: bool = True, attempts: int = 3) -> tuple[T, dict[str, Any]]:
    """Wait for a quiet machine, run `fn`, and redo it if anything else used the CPU meanwhile.

    "Anything else": CPU time of the whole machine (/proc/stat) minus that of this script and
    the children it started and reaped, over the run. More than 2 s and more than 3 % of the
    machine's capacity during the run counts as disturbed. Returns fn's result and the machine
    state (load before, foreign CPU seconds during, attempt number).
    """
    hz = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    for attempt in range(1, attempts + 1):
        state = wait_until_quiet(first=first and attempt == 1, enabled=enabled)
        busy0, own0, t0 = _busy_ticks(), _own_ticks(), time.perf_counter()
        result = fn()
        busy1, own1, wall = _busy_ticks(), _own_ticks(), time.perf_counter() - t0
        foreign = max(0.0, ((busy1 - busy0) - (own1 - own0)) / hz)
        state.update({"foreign_cpu_s_during": round(foreign, 1), "run_wall_s": round(wall, 1),
                      "attempt": attempt})
        if foreign <= max(2.0, 0.03 * wall * cores) or not enabled:
            return result, state
        print(f"  [redo] other processes used {foreign:.0f} CPU s during this {wall:.0f} s run; measuring again",
              flush=True)
    state["disturbed"] = True
    return result, state


# --------------------------------------------------------------------------- runs
def run_engine(scratch: Path, **fields: Any) -> dict[str, Any]:
    """One run of our engine through `launch.run` (child processes, as `pvision train` does).

    Returns the result's summary, timing, epochs and config, and the run's wall time.
    """
    from parallel_vision import launch
    from parallel_vision.config import RunConfig

    fields.setdefault("tensorboard", False)
    fields.setdefault("device", "cpu")
    out = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    cfg = RunConfig(out_dir=str(out), **fields)
    t = time.perf_counter()
    result = launch.run(cfg, progress=False, overwrite=True, log_file=out / "engine.log")
    wall = time.perf_counter() - t
    return {
        "summary": result.summary,
        "timing": result.data["timing"],
        "epochs": result.epochs,
        "environment": {k: result.data["environment"].get(k) for k in
                        ("torch_threads", "intra_op_threads", "inter_op_threads", "torch_version", "tf_version")},
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("out_dir", "data_dir", "extra")},
        "wall_s": wall,
        "out_dir": str(out),
    }


def baseline_env(threads: int) -> dict[str, str]:
    """The environment a user would run a baseline in: ours minus our allocator settings.

    Thread counts are set the same as for our engine (the only setting the baselines share),
    so every contestant uses the same two cores.
    """
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARS}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[var] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_json_subprocess(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 3600,
                        log: Path | None = None) -> dict[str, Any]:
    """Run a Python script in a fresh interpreter; its last stdout line that is JSON is the result."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, *args, *MARK_ARGS], env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    if log is not None:
        log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{' '.join(args[:1])} failed ({proc.returncode}): {tail}")
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            data["wall_s"] = wall
            return data
    raise RuntimeError(f"{args[0]} printed no JSON line")


def steady_rate(epoch_times: Sequence[float], epoch_images: Sequence[int]) -> float:
    """Images/s over every epoch but the first (the warm-up epoch), as results.schema defines it."""
    times, images = list(epoch_times[1:]) or list(epoch_times), list(epoch_images[1:]) or list(epoch_images)
    return sum(images) / sum(times)


# --------------------------------------------------------------------------- statistics
def spread(values: Iterable[float]) -> dict[str, Any]:
    """Median, min, max, relative spread ((max-min)/median) and the raw values."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return {"n": 0, "median": None, "min": None, "max": None, "rel_spread": None, "values": []}
    med = statistics.median(v)
    return {"n": len(v), "median": med, "min": min(v), "max": max(v),
            "rel_spread": (max(v) - min(v)) / med if med else None, "values": v}


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """a[i]/b[i] for the i-th alternation round (each pair ran back to back)."""
    return spread(x / y for x, y in zip(a, b, strict=False) if x and y)


def fmt(x: Any, digits: int = 0) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def fmt_spread(s: dict[str, Any], digits: int = 0) -> str:
    if not s.get("n"):
        return "-"
    if s["n"] == 1:
        return fmt(s["median"], digits)
    return f"{fmt(s['median'], digits)} [{fmt(s['min'], digits)}-{fmt(s['max'], digits)}]"


# --------------------------------------------------------------------------- output
def write_json(name: str, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>-<date>.json (a second run the same day gets -2, -3, ...)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y-%m-%d")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    n = 2
    while path.exists():
        path = RESULTS_DIR / f"{name}-{stamp}-{n}.json"
        n += 1
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print(line)
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print(line)
    print(line)


def goal_line(name: str, value: float | None, goal: float, *, higher_is_better: bool = True, unit: str = "") -> str:
    if value is None:
        return f"{name}: not measured (goal {goal}{unit})"
    met = value >= goal if higher_is_better else value <= goal
    sign = ">=" if higher_is_better else "<="
    return f"{name}: {value:.3f}{unit} (goal {sign} {goal}{unit}) -> {'MET' if met else 'MISSED'}"


def header(script: str, args: Any) -> dict[str, Any]:
    """Start-of-script record: when, where, with which arguments."""
    return {
        "script": script,
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "args": vars(args),
        "machine": machine_info(),
        "data_dir": os.environ.get("PVISION_DATA_DIR"),
    }


def scratch_dir(keep: bool) -> Path:
    """Where engine runs write their outputs (removed at exit unless --keep)."""
    path = Path(tempfile.mkdtemp(prefix="pvision-bench-"))
    if not keep:
        import atexit
        import shutil

        atexit.register(shutil.rmtree, path, True)
    return path
