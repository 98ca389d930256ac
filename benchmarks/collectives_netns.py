"""Check the projection's per-collective costs on a shaped link: gloo's all-gather, reduce-scatter and broadcast
against what `projection.collectives` predicts from an all-reduce sweep over the same link.

Two network-namespace hosts joined by a veth pair (tests/netns.py), each pinned to its own core, a tbf on both
ends (benchmarks/projection_netns.py's shaping). Per link setting, torchrun starts one rank per host; each size
is timed launch to completion after a barrier, the slowest rank's time, the median of --repeats:

- all_reduce of S bytes (the linktest's collective: the link B and α are fitted from these, as `pvision
  linktest` does);
- all_gather_into_tensor into S bytes (S/2 from each rank), reduce_scatter_tensor of S bytes, broadcast of
  S bytes from rank 0 (what FSDP2 and ZeRO-1 call);
- ZeRO-1's pattern: wide_mlp's sorted-greedy split (84 % of the bytes owned by rank 0 in one tensor, 16 %
  by rank 1 in nine), every tensor broadcast from its owner, all issued async in rank order, then waited
  (ZeroRedundancyOptimizer._sync_params).

Then each measured time beside the model over the fitted link (projection.collectives): all-gather
(N−1)/N·S/B + (N−1)α, reduce-scatter on gloo as an all-reduce, broadcast S/B + α at N = 2, the ZeRO-1 pattern
Broadcasts.cost_s. Needs root, iproute2, tc (tbf) and 2 cores.

Usage:  python benchmarks/collectives_netns.py [--settings 100mbit,1gbit] [--repeats 3]
Writes benchmarks/results/collectives-netns-<date>.json and prints the table (markdown).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES = (64 * 1024, 1 << 20, 4 << 20, 16 << 20)
#: wide_mlp's ZeRO-1 split over 2 ranks (collectives.zero1_broadcasts): elements of each rank's tensors.
ZERO1_SPLIT = ((16_777_216,), (3_211_264, 40_960, 4096, 4096, 4096, 4096, 4096, 4096, 10))
ZERO1_SCALE = 1 / 8  # the same shape at an eighth of the bytes (10 MB in all), so a step fits in seconds


def worker(out: Path, repeats: int, sizes: tuple[int, ...] = SIZES) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, n = dist.get_rank(), dist.get_world_size()
    clock = torch.zeros(1, dtype=torch.float64)

    samples: list[list[float]] = []

    def timed(fn: Any) -> float:
        times: list[float] = []
        samples.append(times)
        for rep in range(repeats + 1):  # the first: warm-up
            dist.barrier()
            start = time.perf_counter()
            fn()
            clock[0] = time.perf_counter() - start
            dist.all_reduce(clock, op=dist.ReduceOp.MAX)
            if rep:
                times.append(float(clock[0]))
        return sorted(times)[len(times) // 2]

    rows: list[dict[str, Any]] = []
    for size in sizes:
        full = torch.ones(size // 4)
        shard = torch.ones(size // 4 // n)
        rows.append({"op": "all_reduce", "bytes": size, "seconds": timed(lambda t=full: dist.all_reduce(t))})
        rows.append({"op": "all_gather", "bytes": size, "seconds": timed(
            lambda o=full, i=shard: dist.all_gather_into_tensor(o, i))})
        rows.append({"op": "reduce_scatter", "bytes": size, "seconds": timed(
            lambda o=shard, i=full: dist.reduce_scatter_tensor(o, i))})
        rows.append({"op": "broadcast", "bytes": size, "seconds": timed(lambda t=full: dist.broadcast(t, src=0))})
    tensors = [[torch.ones(max(1, int(c * ZERO1_SCALE))) for c in split] for split in ZERO1_SPLIT]

    def zero1() -> None:
        handles = [dist.broadcast(t, src=r, async_op=True) for r in range(n) for t in tensors[r]]
        for h in handles:
            h.wait()

    rows.append({"op": "zero1_broadcasts", "bytes": sum(t.numel() * 4 for ts in tensors for t in ts),
                 "bytes_per_root": [sum(t.numel() * 4 for t in ts) for ts in tensors],
                 "tensors": sum(len(ts) for ts in tensors), "seconds": timed(zero1)})
    for row, times in zip(rows, samples, strict=True):
        row["samples"] = times
    if rank == 0:
        out.write_text(json.dumps(rows, indent=2) + "\n")
    dist.destroy_process_group()


def predict(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from parallel_vision.projection.collectives import Broadcasts, allgather_s, broadcast_s, reduce_scatter_s
    from parallel_vision.projection.model import fit_allreduce, ring_allreduce_s

    fit = fit_allreduce([(r["bytes"], r["seconds"]) for r in rows if r["op"] == "all_reduce"], workers=2)
    link = fit.link("fitted")
    model = {"all_reduce": lambda s: ring_allreduce_s(s, 2, link),
             "all_gather": lambda s: allgather_s(s, 2, link),
             "reduce_scatter": lambda s: reduce_scatter_s(s, 2, link, "gloo"),
             "reduce_scatter_ring": lambda s: reduce_scatter_s(s, 2, link, "nccl"),
             "broadcast": lambda s: broadcast_s(s, 2, link, "gloo")}
    out = []
    for r in rows:
        if r["op"] == "zero1_broadcasts":
            b = Broadcasts(tuple(float(x) for x in r["bytes_per_root"]), r["tensors"])
            pred, low = b.cost_s(2, link, "gloo"), b.low_s(2, link)
        else:
            pred, low = model[r["op"]](r["bytes"]), None
        extra = {"ring_reduce_scatter_s": model["reduce_scatter_ring"](r["bytes"])} if r["op"] == "reduce_scatter" \
            else {}
        out.append({**r, "predicted_s": pred, "low_s": low, "error": pred / r["seconds"] - 1, **extra,
                    "link": link.as_dict()})
    return out


def main() -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    sys.path.insert(0, str(HERE))
    from projection_netns import RDZV_PORT, _env, shape

    from netns import HostPair, kill_group

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="100mbit,1gbit")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("/tmp/pvision-collectives-netns"))
    p.add_argument("--sizes-mib", default=None, help="sizes to time, MiB, comma-separated [default: 1/16,1,4,16]")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"started": datetime.now().isoformat(timespec="seconds"),
                              "load_start": open("/proc/loadavg").read().split()[:3], "settings": {}}
    with HostPair(subnet="10.203.0") as pair:
        for setting in [s for s in args.settings.split(",") if s]:
            qdisc = shape(pair, setting)
            result = args.out / f"{setting}.json"
            procs = []
            for rank, host in enumerate(pair.hosts):
                argv = host.command(["taskset", "-c", str(rank), sys.executable, "-m", "torch.distributed.run",
                                     "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank),
                                     "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{pair.a.addr}:{RDZV_PORT}",
                                     "--rdzv-id", f"coll-{setting}", "--local-addr", host.addr,
                                     "--rdzv-conf", f"is_host={int(rank == 0)},join_timeout=60",
                                     str(Path(__file__).resolve()), "--worker", str(result),
                                     "--repeats", str(args.repeats),
                                     *(["--sizes-mib", args.sizes_mib] if args.sizes_mib else [])])
                procs.append(subprocess.Popen(argv, env=_env(GLOO_SOCKET_IFNAME=host.ifname),
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            try:
                outs = [proc.communicate(timeout=600)[0].decode(errors="replace") for proc in procs]
            finally:
                for proc in procs:
                    kill_group(proc)
            if any(proc.returncode for proc in procs):
                raise RuntimeError("\n".join(o[-2000:] for o in outs))
            rows = predict(json.loads(result.read_text()))
            record["settings"][setting] = {"qdisc": qdisc, "rows": rows}
            print(f"{setting}: done", flush=True)
    record["load_end"] = open("/proc/loadavg").read().split()[:3]
    dest = HERE / "results" / f"collectives-netns-{datetime.now():%Y-%m-%d-%H%M}.json"
    dest.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"written: {dest}")


def table(record: dict[str, Any]) -> str:
    lines = ["| link | collective | MB | measured (ms) | model (ms) | error |", "|---|---|---:|---:|---:|---:|"]
    for setting, got in record["settings"].items():
        for r in got["rows"]:
            if r["bytes"] < 1 << 20 and r["op"] != "zero1_broadcasts":
                continue
            note = f" (ring RS would be {r['ring_reduce_scatter_s'] * 1e3:.0f})" if "ring_reduce_scatter_s" in r else ""
            note += f" (all roots at once {r['low_s'] * 1e3:.0f})" if r.get("low_s") else ""
            lines.append(f"| {setting} | {r['op']} | {r['bytes'] / 1e6:.1f} | {r['seconds'] * 1e3:.0f} | "
                         f"{r['predicted_s'] * 1e3:.0f}{note} | {r['error'] * 100:+.1f} % |")
    lines.append(f"\nload average at start {record['load_start']}, at end {record['load_end']}")
    return "\n".join(lines)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        a = argparse.ArgumentParser()
        a.add_argument("--worker", type=Path)
        a.add_argument("--repeats", type=int, default=3)
        a.add_argument("--sizes-mib", default=None)
        ns = a.parse_args()
        chosen = tuple(int(float(x) * (1 << 20)) // 16 * 16 for x in ns.sizes_mib.split(",")) if ns.sizes_mib else SIZES
        worker(ns.worker, ns.repeats, chosen)
    else:
        main()
