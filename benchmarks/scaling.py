"""Weak scaling of CPU DDP: 2 workers x 1 thread against one 1-thread worker, same per-worker batch.

efficiency = X(2) / (2 x X(1)), X = steady images/s (epochs 2..E) of the whole job; the per-worker
batch is fixed (--per-worker-batch, default 1024: global 1024 for one worker, 2048 for two) and so
is the number of steps per epoch (the 2-worker run gets twice the training images).
Variants, alternating (ABCD…DCBA):
  single       one worker, 1 thread                       (strategy single)
  ddp          two gloo DDP workers, 1 thread each        (strategy ddp, torch.multiprocessing.spawn)
  single_pin / ddp_pin   the same with pin_threads on (each worker on its own core)
  pair         control: two independent 1-thread single runs at the same time, one per core
               (affinity set from outside): what two cores give with no communication at all,
               i.e. how much the shared caches, memory bandwidth and clock cost by themselves.
Where the rest goes, per step (from the epoch records): data indexing (data_time_s), the
all-reduce (comm_time_s: launch to completion of the gradient buckets, overlapping backward),
and the remaining compute.

Usage:  python benchmarks/scaling.py [--repeats 2] [--steps 8] [--epochs 3] [--no-pin] [--no-pair]
Writes benchmarks/results/scaling-<date>.json; prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


def configs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    per, n1 = args.per_worker_batch, args.per_worker_batch * args.steps
    common = {"framework": "torch", "epochs": args.epochs, "limit_test": args.limit_test, "seed": args.seed,
              "threads_per_worker": 1}
    single = dict(common, strategy="single", workers=1, batch_size=per, limit_train=n1)
    ddp = dict(common, strategy="ddp", workers=2, batch_size=2 * per, limit_train=2 * n1)
    out = {"single": single, "ddp": ddp}
    if args.pin:
        out["single_pin"] = dict(single, pin_threads=True)
        out["ddp_pin"] = dict(ddp, pin_threads=True)
    return out


def _pair_worker(cfg_json: str, scratch: str) -> None:
    run = C.run_engine(Path(scratch), **json.loads(cfg_json))
    print(json.dumps({"summary": run["summary"], "epochs": run["epochs"]}))


def run_pair(cfg: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Two independent single runs at once, each confined to its own core from outside."""
    procs = []
    for core in (0, 1):
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--_pair", json.dumps(cfg), str(scratch)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda c=core: os.sched_setaffinity(0, {c}),  # noqa: PLW1509
        ))
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"pair run failed: {(err.strip().splitlines() or ['?'])[-1]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    rates = [r["summary"]["images_per_s_excl_warmup"] for r in results]
    return {"images_per_s": sum(rates), "each_images_per_s": rates,
            "epochs": results[0]["epochs"], "summary": results[0]["summary"]}


def per_step(epochs: list[dict[str, Any]], steps: int) -> dict[str, float | None]:
    """Mean per-step seconds over epochs 2..E: total, data, compute (= total - data) and comm."""
    steady = epochs[1:] or epochs
    n = steps * len(steady)
    comm = [e["comm_time_s"] for e in steady if e.get("comm_time_s") is not None]
    return {
        "step_s": sum(e["epoch_time_s"] for e in steady) / n,
        "data_s": sum(e["data_time_s"] for e in steady) / n,
        "compute_s": sum(e["compute_time_s"] for e in steady) / n,
        "comm_s": sum(comm) / n if comm else None,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_pair":
        _pair_worker(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--per-worker-batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=8, help="steps per epoch (default 8)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-pin", dest="pin", action="store_false", help="skip the pin_threads variants")
    p.add_argument("--no-pair", dest="pair", action="store_false", help="skip the two-independent-runs control")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("scaling needs at least 2 cores")
    record = C.header("scaling", args)
    scratch = C.scratch_dir(args.keep)
    cfgs = configs(args)
    names = list(cfgs) + (["pair"] if args.pair else [])
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    first = True
    for rnd in range(args.repeats):
        for name in names if rnd % 2 == 0 else list(reversed(names)):
            if name == "pair":
                res, state = C.measured(lambda: run_pair(cfgs["single"], scratch), first=first,
                                        enabled=not args.no_wait)
                row = {"images_per_s": res["images_per_s"], "each_images_per_s": res["each_images_per_s"],
                       "per_step": per_step(res["epochs"], args.steps)}
            else:
                res, state = C.measured(lambda n=name: C.run_engine(scratch, **cfgs[n]), first=first,
                                        enabled=not args.no_wait)
                row = {"images_per_s": res["summary"]["images_per_s_excl_warmup"],
                       "per_step": per_step(res["epochs"], args.steps), "epochs": res["epochs"],
                       "test_accuracy": res["summary"]["test_accuracy"],
                       "peak_rss_mib_per_worker": res["summary"].get("peak_rss_mib_per_worker")}
            first = False
            row["machine"], row["round"] = state, rnd + 1
            runs[name].append(row)
            ps = row["per_step"]
            comm = f", comm {ps['comm_s'] * 1e3:.0f} ms" if ps["comm_s"] is not None else ""
            print(f"  round {rnd + 1}: {name:10s} {row['images_per_s']:6.1f} img/s, step "
                  f"{ps['step_s'] * 1e3:.0f} ms (data {ps['data_s'] * 1e3:.1f} ms{comm}) "
                  f"(load1 {state['load1']}, busy {state['busy_cores']})", flush=True)

    def rates(name: str) -> list[float]:
        return [r["images_per_s"] for r in runs[name]]

    def eff(two: str, one: str) -> dict[str, Any]:
        return C.spread(a / (2 * b) for a, b in zip(rates(two), rates(one), strict=False))

    summary: dict[str, Any] = {"images_per_s": {n: C.spread(rates(n)) for n in names},
                               "efficiency": {"ddp": eff("ddp", "single")}, "goal": 0.95}
    if args.pin:
        summary["efficiency"]["ddp_pin"] = eff("ddp_pin", "single_pin")
        summary["efficiency"]["ddp_pin_vs_unpinned_single"] = eff("ddp_pin", "single")
    if args.pair:
        summary["efficiency"]["pair_control"] = eff("pair", "single")
        summary["efficiency"]["ddp_vs_pair"] = C.spread(a / b for a, b in zip(rates("ddp"), rates("pair"),
                                                                                strict=False))
    summary["per_step_ms"] = {
        n: {k: C.spread(r["per_step"][k] * 1e3 for r in runs[n] if r["per_step"][k] is not None)
            for k in ("step_s", "data_s", "compute_s", "comm_s")} for n in names}
    states = [r["machine"] for rs in runs.values() for r in rs]
    record.update({"configs": cfgs, "runs": runs, "summary": summary,
                   "load1_range": [min(s["load1"] for s in states), max(s["load1"] for s in states)]})
    path = C.write_json("scaling", record)

    C.print_table(
        f"Per-worker batch {args.per_worker_batch}, {args.steps} steps/epoch, steady = epochs 2..{args.epochs}, "
        f"{args.repeats} alternating round(s); ms per step, median [range]",
        ["variant", "img/s", "step ms", "data ms", "compute ms", "all-reduce ms (overlaps)"],
        [[n, C.fmt_spread(summary["images_per_s"][n], 1)] +
         [C.fmt_spread(summary["per_step_ms"][n][k], 1) for k in ("step_s", "data_s", "compute_s", "comm_s")]
         for n in names],
    )
    C.print_table("Weak-scaling efficiency X(2) / (2 X(1)), paired per round", ["ratio", "median [range]", "goal"],
                  [[k, C.fmt_spread(v, 3), ">= 0.95" if k in ("ddp", "ddp_pin") else "(diagnostic)"]
                   for k, v in summary["efficiency"].items()])
    print(C.goal_line("DDP 2x1 efficiency", summary["efficiency"]["ddp"]["median"], 0.95))
    lo, hi = record["load1_range"]
    print(f"load1 before runs: {lo:.2f}..{hi:.2f}; written {path.relative_to(C.ROOT)}")


if __name__ == "__main__":
    main()
