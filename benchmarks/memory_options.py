"""The fused step's memory options side by side (issue #31): step time and peak memory of one worker-sized process.

Each variant runs in a fresh interpreter (the allocator is chosen at start-up), the variants interleaved over
--rounds rounds (A B C ... then ... C B A), so that a drifting machine load falls on all of them alike:
  * defaults:          the engine's defaults since issue #31: the in-place BatchNorm backward under
                       `allocator="auto"` (tcmalloc keeping freed memory where installed, else glibc's tuned heap);
  * glibc tuned:       the same step on glibc's tuned heap (`envvars.ALLOCATOR`);
  * ATen BN backward:  `inplace_bn_backward` off (ATen's kernel: bit for bit the reference modules);
  * before #31:        both of those: the defaults before issue #31;
  * recompute:         `recompute_stem` (the first conv block recomputed in backward; bit-identical);
  * glibc defaults:    glibc returning freed memory (`--allocator glibc --no-malloc-tuning`).
Per variant: the median CPU seconds per step (`time.process_time`, steps 2..N: user + system, so the kernel's page
zeroing counts) and its ratio to the defaults, the kernel's VmHWM after the last step, and glibc's heap then (0
under tcmalloc).
The process is one DDP worker's share at batch 2048 x 2 (batch 1024, 1 thread, the engine's model, optimiser and
batch path); a DDP worker holds more besides (docs/performance.md, "Issue #31"), so the goal itself is judged by
`memory.py`.

Usage:  python benchmarks/memory_options.py [--steps 8] [--rounds 2]     (about 4 minutes on two quiet cores)
Writes benchmarks/results/memory_options-<date>.json; prints the table last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

#: Each variant: the allocator (allocator.py's choice, and whether it keeps freed memory) and RunConfig changes.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {"allocator": "auto", "keep_freed": True},
    "glibc tuned": {"allocator": "glibc", "keep_freed": True},
    "ATen BN backward": {"allocator": "auto", "keep_freed": True, "inplace_bn_backward": False},
    "before #31": {"allocator": "glibc", "keep_freed": True, "inplace_bn_backward": False},
    "recompute": {"allocator": "auto", "keep_freed": True, "recompute_stem": True},
    "glibc defaults": {"allocator": "glibc", "keep_freed": False},
}


def child(name: str, steps: int, batch: int) -> dict[str, Any]:
    """`steps` training steps of one worker-sized process; CPU time per step, VmHWM and glibc's heap."""
    import torch
    import torch.nn.functional as F
    from memory_timeline import _mallinfo, _vm_hwm_mib

    from parallel_vision.config import RunConfig
    from parallel_vision.engines.torch import build
    from parallel_vision.engines.torch.data import epoch_permutation, load_data

    torch.set_num_threads(1)
    options = {k: v for k, v in VARIANTS[name].items() if k not in ("allocator", "keep_freed")}
    cfg = RunConfig(framework="torch", strategy="single", batch_size=batch, threads_per_worker=1, device="cpu",
                    data_dir=os.environ.get("PVISION_DATA_DIR"), **options)
    device = torch.device("cpu")
    train = load_data(cfg, "train", device)
    model = build.build_model(cfg, train.image_shape, len(train.class_names), device)
    optimizer = build.optimizer(cfg, model, device)
    order = epoch_permutation(train.n, cfg.seed, 0)
    seconds = []
    for i in range(steps):
        t = time.process_time()
        x, y = train.batch(order[i * batch:(i + 1) * batch])
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        seconds.append(time.process_time() - t)
    return {"cpu_s_per_step": statistics.median(seconds[1:]), "vm_hwm_mib": _vm_hwm_mib(), **_mallinfo()}


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from parallel_vision import allocator

    env = {k: v for k, v in os.environ.items() if k not in C.ALLOCATOR_VARS}
    env.update(allocator.environment(VARIANTS[name]["allocator"], VARIANTS[name]["keep_freed"], env))
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--batch", str(args.batch),
           *C.MARK_ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the measuring process failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="steps per process (the tuned heap settles in 3-4)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=1024, help="per-worker batch (ddp x 2 at batch 2048: 1024)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--mark", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.batch)))
        return
    record = C.header("memory_options", args)
    names = list(VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for rnd in range(args.rounds):
        for name in names if rnd % 2 == 0 else names[::-1]:
            r = run_variant(name, args)
            runs[name].append(r)
            print(f"  round {rnd + 1}: {name:12s} {r['cpu_s_per_step']:.2f} CPU s/step, "
                  f"VmHWM {r['vm_hwm_mib']:.0f} MiB, heap {r['heap_mib']:.0f} MiB "
                  f"(load1 {os.getloadavg()[0]:.1f})", flush=True)
    base = statistics.median(r["cpu_s_per_step"] for r in runs["defaults"])
    rows = []
    for name in names:
        step = statistics.median(r["cpu_s_per_step"] for r in runs[name])
        rows.append([name, f"{step:.2f}", f"{step / base:.3f}",
                     ", ".join(f"{r['vm_hwm_mib']:.0f}" for r in runs[name]),
                     ", ".join(f"{r['heap_mib']:.0f}" for r in runs[name])])
    record.update({"variants": VARIANTS, "runs": runs})
    path = C.write_json("memory_options", record)
    C.print_table(f"One worker-sized process, batch {args.batch}, 1 thread, {args.steps} steps, {args.rounds} rounds",
                  ["variant", "CPU s/step", "÷ defaults", "VmHWM MiB (each round)", "heap held MiB"], rows)
    print(f"written {path.relative_to(C.ROOT)}")


if __name__ == "__main__":
    main()
