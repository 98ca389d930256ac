"""`python -m parallel_vision.engines.torch.linktest ROOT [options]`: one rank of the all-reduce sweep.

The process `pvision linktest` starts (one per rank on this host), or the one torchrun's worker starts
on each node: it joins the process group from the environment (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT), with the backend the engine uses (gloo on CPU, NCCL on GPU), all-reduces fp32 tensors of
4 KB … 64 MB, and rank 0 writes ROOT/linktest.json (projection/linktest.py: the record and the fit).

Each sample: a barrier, then one all-reduce timed launch to completion (device synchronised); the
sample is the slowest rank's time (a MAX all-reduce of the times), so every rank agrees on it and on
when to stop: once a size's median exceeds --budget-s, larger sizes are not tried.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from datetime import datetime, timezone

import torch
import torch.distributed as dist

from parallel_vision.engines.torch.dist import timeout
from parallel_vision.failure import report_error
from parallel_vision.projection.linktest import make_record, sweep_sizes, write_record


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sweep(sizes: list[int], repeats: int, budget_s: float, device: torch.device) -> tuple[dict[int, list[float]],
                                                                                          int | None]:
    samples: dict[int, list[float]] = {}
    clock = torch.zeros(1, dtype=torch.float64)
    for size in sizes:
        tensor = torch.ones(size // 4, dtype=torch.float32, device=device)
        times: list[float] = []
        for rep in range(repeats + 1):  # the first is a warm-up (connections, allocation)
            dist.barrier()
            _sync(device)
            start = time.perf_counter()
            dist.all_reduce(tensor)
            _sync(device)
            clock[0] = time.perf_counter() - start
            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
            if rep:
                times.append(float(clock[0]))
            elif float(clock[0]) > 4 * budget_s:  # hopeless: do not repeat a size this slow
                samples[size] = [float(clock[0])]
                return samples, size * 4
            if rep and float(clock[0]) * (repeats - rep) > 3 * budget_s:
                break  # enough samples of a slow size
        samples[size] = times
        if sorted(times)[len(times) // 2] > budget_s:
            return samples, size * 4 if size != sizes[-1] else None
    return samples, None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="linktest-rank")
    p.add_argument("root")
    p.add_argument("--min-bytes", type=int, default=4 * 1024)
    p.add_argument("--max-bytes", type=int, default=64 * 1024 * 1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=2.0)
    p.add_argument("--backend", default="auto")
    p.add_argument("--label", default=None)
    args = p.parse_args(argv)
    try:
        cuda = torch.cuda.is_available() and args.backend in ("auto", "nccl")
        backend = "nccl" if cuda else "gloo"
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=timeout())
        try:
            sizes = sweep_sizes(args.min_bytes, args.max_bytes)
            samples, stopped = sweep(sizes, max(1, args.repeats), args.budget_s, device)
            world = dist.get_world_size()
            nodes = int(os.environ.get("GROUP_WORLD_SIZE", 1))
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            if dist.get_rank() == 0:
                record = make_record(samples, backend=backend, device=device.type, world_size=world, nodes=nodes,
                                     processes_per_node=per_node, host=socket.gethostname(),
                                     created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                     label=args.label, stopped_at=stopped)
                path = write_record(record, args.root)
                print(f"linktest: {path}", flush=True)
            dist.barrier()
        finally:
            dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - the launcher gets one line
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        return report_error(exc if not isinstance(exc, KeyboardInterrupt) else RuntimeError("interrupted"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
