"""Run a bench matrix: one run at a time, resumable, every finished run kept.

`run_bench` is a loop over the plan, in four steps per configuration: *plan* (what ROOT already
holds), *skip* (configurations this machine cannot run), *run one* (through `launch.run`, like
`pvision train`, into ROOT/runs/<name>-r<k>) and *record* (into ROOT/results.sqlite as soon as it
finishes, with how busy the machine was). Re-running an interrupted bench picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parallel_vision import launch
from parallel_vision.bench.machine import (
    BUSY_CORES,
    IdlePolicy,
    MachineMeter,
    Printer,
    fmt_duration,
    gpu_count,
    load_average,
    wait_for_idle,
)
from parallel_vision.bench.matrix import PlannedRun, expand
from parallel_vision.bench.presets import BenchSpec, resolve_workers
from parallel_vision.bench.records import (
    clear_skip,
    complete_result,
    known_skip,
    now,
    record_skip,
    run_folder,
    same_run,
    skip_record,
    write_json,
)
from parallel_vision.config import usable_cores
from parallel_vision.data.paths import absolute
from parallel_vision.data.ready import ensure_dataset
from parallel_vision.errors import ConfigError, DiskFullError, EngineError, PVisionError, RunInterrupted
from parallel_vision.projection.linktest import LINKTEST_FILE, read_record
from parallel_vision.provenance import code_version
from parallel_vision.results.run_result import RunResult
from parallel_vision.results.schema import RESULT_FILE
from parallel_vision.results.store import BENCH_RUN_FILE, identity_hash, open_store

MANIFEST = "bench.json"
#: `pvision linktest` as the bench runs it after a plan with a DDP run: sizes up to 16 MiB (the fit's slope needs
#: those from 1 MiB), 3 repeats, a few seconds on loopback; ROOT/linktest.json then lets `pvision project`
#: show its error against the measured DDP run.
LINKTEST_ARGS = ("--max-bytes", str(16 * 1024 * 1024), "--repeats", "3", "--budget-s", "1")


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
    """Of `seconds`, the time spent waiting for a quiet machine."""
    busy_runs: list[str] = field(default_factory=list)


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
    bench = Bench(spec, absolute(root), echo, IdlePolicy.make(wait_idle_s, strict_idle), overwrite)
    todo = bench.plan()
    previous_term = _terminate_as_interrupt()
    try:
        for position, i in enumerate(todo, 1):
            bench.run_one(i, bench.heading(position, len(todo), i))
        bench.linktest()
        bench.explain()
    except (KeyboardInterrupt, RunInterrupted):
        bench.interrupted()
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return bench.finish()


def linktest_workers(plan: list[PlannedRun]) -> int | None:
    """Ranks for the linktest of this host when the plan holds a PyTorch DDP run of N > 1 workers (the largest N;
    None: no DDP run, nothing to measure)."""
    sizes = [p.cfg.workers for p in plan if p.cfg is not None and p.cfg.framework == "torch"
             and p.cfg.strategy == "ddp" and p.cfg.workers > 1]
    return max(sizes) if sizes else None


def run_linktest(root: Path, workers: int, log_file: Path) -> None:
    """`pvision linktest ROOT --workers N` (short sweep) in a child process, its output in `log_file`."""
    cmd = [sys.executable, "-m", "parallel_vision", "linktest", str(root), "--workers", str(workers), *LINKTEST_ARGS]
    with open(log_file, "wb") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if code:
        raise EngineError(f"pvision linktest exited with {code}")


def run_explain(root: Path, log_file: Path) -> None:
    """`pvision explain ROOT` (every run explained on the same images and compared) in a child process."""
    cmd = [sys.executable, "-m", "parallel_vision", "explain", str(root)]
    with open(log_file, "wb") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if code:
        raise EngineError(f"pvision explain exited with {code}")


def prepare_data(plan: list[PlannedRun], data_dir: str | None) -> list[PlannedRun]:
    """Verify (or fetch, once) every dataset the plan needs before the first run; hand each run the
    verified absolute folder. A dataset that cannot be had stops the bench here, in one line."""
    roots = {name: str(ensure_dataset(name, data_dir).root)
             for name in sorted({p.cfg.dataset for p in plan if p.cfg is not None}) if name != "synthetic"}
    return [dataclasses.replace(p, cfg=p.cfg.replace(data_dir=roots.get(p.cfg.dataset)))
            if p.cfg is not None else p for p in plan]


class Bench:
    """One bench into one ROOT: its plan, its manifest (ROOT/bench.json), its store and outcome."""

    def __init__(self, spec: BenchSpec, root: Path, echo: Printer, idle: IdlePolicy, overwrite: bool) -> None:
        cores, gpus = usable_cores(), gpu_count()
        self.spec = resolve_workers(spec, gpus if (gpus and spec.device != "cpu") else cores)
        self.plan_runs = prepare_data(expand(self.spec, cores=cores, gpus=gpus), self.spec.data_dir)
        self.root, self.echo, self.idle, self.overwrite = root, echo, idle, overwrite
        root.mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        self.code = code_version()
        self.store = open_store(root, create_empty=True)
        self.outcome = BenchOutcome(root=root, planned=len(self.plan_runs))
        self.history = self._history()
        self.manifest: dict[str, Any] = {
            "spec": self.spec.to_dict(), "idle_policy": idle.describe(), "code_version": self.code,
            "cores": cores, "gpus": gpus, "started_at": now(), "finished_at": None, "status": "running",
            "runs": [{"name": p.run_name, "state": "pending"} for p in self.plan_runs], "history": self.history,
        }
        self.impossible: set[str] = set()
        self.durations: list[float] = []
        self.start = time.monotonic()

    # -- the manifest -----------------------------------------------------------------------
    def _history(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads((self.root / MANIFEST).read_text()).get("history", []))
        except (OSError, json.JSONDecodeError, AttributeError, TypeError):
            return []

    def save_manifest(self) -> None:
        write_json(self.root / MANIFEST, self.manifest)

    def set_state(self, i: int, state: str, **info: Any) -> None:
        self.manifest["runs"][i].update(state=state, **info)
        self.save_manifest()

    # -- plan -------------------------------------------------------------------------------
    def plan(self) -> list[int]:
        """Indices of the runs still to do; what ROOT already holds (same identity, code version and
        repeat) is reused, known-impossible configurations are skipped, before the clock starts."""
        todo: list[int] = []
        host = socket.gethostname()
        for i, planned in enumerate(self.plan_runs):
            if planned.cfg is None:
                todo.append(i)
                continue
            known = known_skip(self.root, planned, self.code, host)
            if known is not None and not self.overwrite:
                self.outcome.skipped.append((planned.name, known))
                self.manifest["runs"][i].update(state="skipped", reason=known)
            elif not self.overwrite and self._already_done(i, planned):
                continue
            else:
                todo.append(i)
        self.save_manifest()
        self.echo(f"bench {self.spec.preset or 'custom'}: {len(self.plan_runs)} run(s) planned, "
                  f"{len(self.outcome.reused)} already done for code {self.code}, {len(todo)} to run → {self.root}")
        self.start = time.monotonic()
        return todo

    def _already_done(self, i: int, planned: PlannedRun) -> bool:
        assert planned.cfg is not None
        stored = self.store.done(identity_hash(planned.cfg), self.code, planned.repeat)
        if stored is not None and (self.root / stored["path"] / RESULT_FILE).exists():
            self._reuse(i, planned, stored["path"], stored["run_id"])
            return True
        folder = self.root / "runs" / planned.run_name
        data = complete_result(folder)
        if data is not None and same_run(data, planned.cfg, self.code, planned.repeat):
            self.store.insert_result(data, folder)  # finished, but not indexed (e.g. interrupted just after)
            self._reuse(i, planned, f"runs/{folder.name}", data["run_id"])
            return True
        return False

    def _reuse(self, i: int, planned: PlannedRun, folder: str, run_id: str) -> None:
        self.outcome.reused.append(planned.run_name)
        self.manifest["runs"][i].update(state="reused", folder=folder, run_id=run_id)

    def heading(self, position: int, total: int, i: int) -> str:
        planned = self.plan_runs[i]
        remaining = total - position + 1
        eta = fmt_duration(sum(self.durations) / len(self.durations) * remaining) if self.durations else "—"
        head = (f"[{position}/{total} · {fmt_duration(time.monotonic() - self.start)} elapsed · ETA {eta}] "
                f"{planned.run_name}")
        if planned.cfg is not None and planned.cfg.threads_per_worker is not None:
            n = planned.cfg.threads_per_worker
            per = "per process" if planned.cfg.strategy_spec.shares_process else "per worker"
            head += f" ({n} thread{'s' if n > 1 else ''} {per})"
        return head

    # -- skip -------------------------------------------------------------------------------
    def skip(self, i: int, reason: str, *, record: bool) -> None:
        planned = self.plan_runs[i]
        if record:
            record_skip(self.store, self.root, skip_record(planned, reason, "skipped", self.code))
        self.outcome.skipped.append((planned.name, reason))
        self.set_state(i, "skipped", reason=reason)

    # -- run one ----------------------------------------------------------------------------
    def run_one(self, i: int, head: str) -> None:
        planned = self.plan_runs[i]
        if planned.cfg is None or planned.name in self.impossible:
            reason = planned.error or next(r for n, r in self.outcome.skipped if n == planned.name)
            self.skip(i, reason, record=planned.cfg is None)
            self.echo(f"{head}: skipped — {reason}")
            return
        t_wait = time.monotonic()
        idle_load = wait_for_idle(self.idle.limit_now(self.outcome.waited_s), self.echo)
        self.outcome.waited_s += time.monotonic() - t_wait
        folder, finished = run_folder(self.root, planned, self.code)
        if finished and not self.overwrite:
            data = complete_result(folder)
            assert data is not None
            self.store.insert_result(data, folder)
            self.outcome.reused.append(planned.run_name)
            self.set_state(i, "reused", folder=str(folder.relative_to(self.root)), run_id=data["run_id"])
            self.echo(f"{head}: already done in {folder.name}")
            return
        if finished:
            shutil.rmtree(folder)
        log_file = self.root / "logs" / f"{folder.name}.log"
        log_file.unlink(missing_ok=True)
        load = load_average()
        meter = MachineMeter()
        self.set_state(i, "running", folder=str(folder.relative_to(self.root)), started_at=now(),
                       other_cores_at_start=round(idle_load, 2), load_average_at_start=load)
        busy_note = f" (other processes use {idle_load:.1f} cores)" if idle_load >= BUSY_CORES else ""
        self.echo(f"{head} …{busy_note}")
        t0 = time.monotonic()
        try:
            result = launch.run(planned.cfg.replace(out_dir=str(folder)), progress=False, log_file=log_file)
        except RunInterrupted:
            data = complete_result(folder)
            if data is not None:  # it finished while the interrupt was being handled: keep it
                self.store.insert_result(data, folder)
                self.outcome.ran.append(planned.run_name)
                self.set_state(i, "done", run_id=data["run_id"], finished_at=now())
            raise
        except ConfigError as exc:  # this machine cannot run it (e.g. DataParallel without GPUs)
            shutil.rmtree(folder, ignore_errors=True)
            self.impossible.add(planned.name)
            self.skip(i, _first_line(exc), record=True)
            self.echo(f"    skipped — {_first_line(exc)}")
            return
        except DiskFullError:
            raise  # every later run would fail the same way: stop now, in one line
        except (EngineError, PVisionError) as exc:
            self.failed(i, _first_line(exc), log_file)
            return
        self.record(i=i, folder=folder, result=result, seconds=time.monotonic() - t0, others=meter.others_cores(),
                    idle_load=idle_load, load=load)

    def failed(self, i: int, reason: str, log_file: Path) -> None:
        planned = self.plan_runs[i]
        why = f"failed: {reason} (log: logs/{log_file.name})"
        record_skip(self.store, self.root, skip_record(planned, why, "failed", self.code))
        self.outcome.failed.append((planned.run_name, reason))
        self.set_state(i, "failed", reason=reason)
        self.echo(f"    FAILED — {reason} (see {log_file})")

    # -- record -----------------------------------------------------------------------------
    def record(self, i: int, folder: Path, result: RunResult, seconds: float, others: float,
               idle_load: float, load: float | None) -> None:
        """Store a finished run with how much CPU other processes took while it trained (flagged above
        BUSY_CORES), beside it in bench_run.json so later benches into the same ROOT keep it."""
        planned = self.plan_runs[i]
        self.durations.append(seconds)
        self.store.insert_result(result.data, folder)
        clear_skip(self.store, self.root, planned.name)
        if others >= BUSY_CORES:
            self.outcome.busy_runs.append(planned.run_name)
        self.outcome.ran.append(planned.run_name)
        write_json(folder / BENCH_RUN_FILE, {
            "run": folder.name, "bench_started_at": self.manifest["started_at"], "preset": self.spec.preset,
            "started_at": self.manifest["runs"][i].get("started_at"), "finished_at": now(),
            "seconds": round(seconds, 2), "other_cores": round(others, 3),
            "other_cores_at_start": round(idle_load, 3), "load_average_at_start": load,
        })
        self.store.insert_result(result.data, folder)  # again, now with how busy the machine was
        self.set_state(i, "done", run_id=result.run_id, seconds=round(seconds, 2), finished_at=now(),
                       other_cores=round(others, 2))
        s = result.summary
        self.echo(f"    done in {seconds:.1f} s · steady epoch {s['mean_epoch_time_excl_warmup_s']:.2f} s · "
                  f"{s['images_per_s_excl_warmup']:.0f} img/s · test acc {100 * s['test_accuracy']:.2f} %"
                  + (f" · other processes used {others:.1f} cores meanwhile" if others >= BUSY_CORES else ""))

    # -- the link -----------------------------------------------------------------------------
    def linktest(self, runner: Any = None) -> None:
        """After a plan with a DDP run: measure this host's all-reduce link into ROOT/linktest.json (a few seconds),
        so `pvision project ROOT` can show its error against the measured run. A record already there is kept
        (a user's multi-node one above all); `--overwrite` measures a single-host one again. A failure is a
        warning: the runs are what the bench is for."""
        workers = linktest_workers(self.plan_runs)
        if workers is None:
            return
        path = self.root / LINKTEST_FILE
        kept = _readable_record(path)
        if kept is not None and not (self.overwrite and int(kept.get("nodes") or 1) == 1):
            self.manifest["linktest"] = {"state": "kept", "path": LINKTEST_FILE}
            return
        log_file = self.root / "logs" / "linktest.log"
        self.echo(f"linktest: all-reduce among {workers} ranks on this host (for `pvision project`) …")
        t0 = time.monotonic()
        try:
            (runner or run_linktest)(self.root, workers, log_file)
            read_record(path)
        except (PVisionError, OSError) as exc:
            self.manifest["linktest"] = {"state": "failed", "reason": _first_line(exc)}
            self.echo(f"    linktest FAILED — {_first_line(exc)} (see {log_file}); `pvision linktest {self.root}` "
                      "measures it by hand")
            return
        self.manifest["linktest"] = {"state": "done", "path": LINKTEST_FILE, "workers": workers,
                                     "seconds": round(time.monotonic() - t0, 2)}
        self.echo(f"    done in {time.monotonic() - t0:.1f} s → {path}")

    def explain(self, runner: Any = None) -> None:
        """With `spec.explain` (the trust preset): `pvision explain ROOT` after the runs, so the report can say
        whether the parallel-trained models look at the same pixels. A failure is a warning, as the linktest's."""
        if not self.spec.explain:
            return
        log_file = self.root / "logs" / "explain.log"
        self.echo("explain: every run on the same test images, compared against the seed band …")
        t0 = time.monotonic()
        try:
            (runner or run_explain)(self.root, log_file)
        except (PVisionError, OSError) as exc:
            self.manifest["explain"] = {"state": "failed", "reason": _first_line(exc)}
            self.echo(f"    explain FAILED — {_first_line(exc)} (see {log_file}); `pvision explain {self.root}` "
                      "runs it by hand")
            return
        self.manifest["explain"] = {"state": "done", "seconds": round(time.monotonic() - t0, 2)}
        self.echo(f"    done in {time.monotonic() - t0:.1f} s → {self.root / 'explain'}")

    # -- the end ----------------------------------------------------------------------------
    def interrupted(self) -> None:
        self.manifest.update(status="interrupted", finished_at=now())
        for run in self.manifest["runs"]:
            if run["state"] == "running":
                run["state"] = "interrupted"
        self.save_manifest()
        self.store.close()
        kept = len(self.outcome.ran) + len(self.outcome.reused)
        raise RunInterrupted(
            f"bench interrupted; {kept} finished run(s) kept in {self.root}; run the same command again to resume",
            exit_code=130,
        ) from None

    def finish(self) -> BenchOutcome:
        self.outcome.seconds = time.monotonic() - self.start
        self.manifest.update(status="complete", finished_at=now(), seconds=round(self.outcome.seconds, 2),
                             waited_s=round(self.outcome.waited_s, 2))
        keys = ("spec", "code_version", "started_at", "finished_at", "status", "seconds", "waited_s", "idle_policy")
        self.manifest["history"] = (self.history + [{k: self.manifest.get(k) for k in keys}])[-20:]
        self.save_manifest()
        self.store.close()
        return self.outcome


def _readable_record(path: Path) -> dict[str, Any] | None:
    """The linktest record at `path`, or None when there is none or it cannot be read."""
    if not path.exists():
        return None
    try:
        return read_record(path)
    except PVisionError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _terminate_as_interrupt() -> Any:
    """SIGTERM (a scheduler, `kill`, a background job whose Ctrl-C is ignored) stops the bench like Ctrl-C:
    the running engine is told to stop, finished runs are kept, the manifest says 'interrupted'."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
