"""`pvision linktest ROOT`: all-reduce 4 KB … 64 MB through the engine's backend, fit t(S) = a + S/B.

This process imports no framework: it starts one rank process per worker on this host (loopback), or,
under torchrun, one rank process that joins torchrun's job (so it measures the link between nodes).
Rank 0 writes ROOT/linktest.json; the store indexes it and `pvision project` uses it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import typer

from parallel_vision.errors import ConfigError
from parallel_vision.launch.cluster import cluster_env
from parallel_vision.launch.processes import run_children
from parallel_vision.ports import free_port
from parallel_vision.projection.linktest import LINKTEST_FILE, read_record

RANK_MODULE = "parallel_vision.engines.torch.linktest"


def rank_command(root: Path, min_bytes: int, max_bytes: int, repeats: int, budget_s: float, backend: str,
                 label: str | None) -> list[str]:
    cmd = [sys.executable, "-m", RANK_MODULE, str(root), "--min-bytes", str(min_bytes), "--max-bytes",
           str(max_bytes), "--repeats", str(repeats), "--budget-s", str(budget_s), "--backend", backend]
    return cmd + (["--label", label] if label else [])


def linktest(
    root: Path = typer.Argument(..., help="Results folder: linktest.json is written here."),
    workers: int = typer.Option(2, "--workers", "-n", help="Ranks on this host (ignored under torchrun, "
                                "whose world size is used)."),
    min_bytes: int = typer.Option(4 * 1024, "--min-bytes", help="Smallest all-reduce (bytes)."),
    max_bytes: int = typer.Option(64 * 1024 * 1024, "--max-bytes", help="Largest all-reduce (bytes)."),
    repeats: int = typer.Option(5, "--repeats", help="Timed all-reduces per size (after one warm-up)."),
    budget_s: float = typer.Option(2.0, "--budget-s", help="Stop growing the size once one all-reduce takes "
                                   "longer than this (a slow link would otherwise take minutes)."),
    backend: str = typer.Option("auto", "--backend", help="auto (NCCL on GPU, else gloo), gloo or nccl."),
    threads: int = typer.Option(1, "--threads", help="CPU threads per rank."),
    label: str | None = typer.Option(None, "--label", help="A name for this link, kept in the record."),
) -> None:
    """Measure the all-reduce time of the link the engine would use and fit t(S) = a + S/B (a from the
    smallest sizes, B from the slope over the sizes ≥ 1 MiB)."""
    if backend not in ("auto", "gloo", "nccl"):
        raise ConfigError(f"--backend must be auto, gloo or nccl; got {backend!r}")
    if not 4 <= min_bytes <= max_bytes:
        raise ConfigError(f"need 4 ≤ --min-bytes ≤ --max-bytes; got {min_bytes}, {max_bytes}")
    if repeats < 1 or not budget_s > 0:
        raise ConfigError("--repeats must be ≥ 1 and --budget-s > 0")
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    cmd = rank_command(root=root, min_bytes=min_bytes, max_bytes=max_bytes, repeats=repeats, budget_s=budget_s,
                       backend=backend, label=label)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(max(1, threads))
    scratch = Path(tempfile.mkdtemp(prefix="pvision-linktest-"))
    try:
        torchrun = cluster_env("torch", "ddp")  # the torch engine's EngineSpec.cluster: a torchrun job
        if torchrun is not None:  # this process is torchrun's worker: its one rank process joins the job
            run_children([(cmd, env)], scratch, None)
            if not torchrun.is_writer(None):
                return
        else:
            if workers < 2:
                raise ConfigError("--workers must be at least 2: an all-reduce among one rank moves nothing")
            port = str(free_port())
            jobs = []
            for rank in range(workers):
                rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(workers),
                                LOCAL_WORLD_SIZE=str(workers), GROUP_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                                MASTER_PORT=port)
                if os.path.exists("/sys/class/net/lo"):
                    rank_env.setdefault("GLOO_SOCKET_IFNAME", "lo")
                jobs.append((cmd, rank_env))
            run_children(jobs, scratch, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    record = read_record(root / LINKTEST_FILE)
    _print(record)


def _print(record: dict) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table

    fit, link = record["fit"], record["link"]
    table = Table(title=f"all-reduce, {record['backend']}, {record['world_size']} ranks on {record['nodes']} node(s)")
    for col in ("bytes", "median time", "fit", "algorithm bandwidth"):
        table.add_column(col, justify="right")
    for p in record["points"]:
        model = fit["a_s"] + p["bytes"] / fit["bandwidth_Bps"]
        table.add_row(f"{p['bytes']:,}", f"{p['seconds'] * 1e3:.3f} ms", f"{model * 1e3:.3f} ms",
                      f"{p['bytes'] / p['seconds'] / 1e6:.1f} MB/s")
    console = Console()
    console.print(table)
    console.print(f"t(S) = {fit['a_s'] * 1e6:.1f} µs + S / {fit['bandwidth_Bps'] / 1e6:.1f} MB/s "
                  f"(a from the sizes ≤ 64 KiB, B from the slope over the sizes ≥ 1 MiB; max relative residual there "
                  f"{fit['max_rel_residual'] * 100:.0f} %); as a ring: link "
                  f"{link['bandwidth_gbps']:.3g} Gb/s each way, {link['latency_us']:.1f} µs per hop")
    if record.get("stopped_before_bytes"):
        console.print(f"stopped before {record['stopped_before_bytes']:,} bytes (--budget-s)")


def register(app: typer.Typer) -> None:
    app.command("linktest")(linktest)



