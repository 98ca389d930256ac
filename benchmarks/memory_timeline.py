"""Where a worker's peak memory goes: the live tensors over one training step, and glibc's heap around them.

`memory.py` measures the peak per worker; this script explains it. It runs one worker-sized process (the
per-worker batch of `ddp` x 2 at batch 2048, one thread, the engine's own model, optimiser and data path)
under each allocator setting, in a fresh interpreter each (glibc reads its settings at start-up):
  * tuned:   the engine's default (`envvars.ALLOCATOR`: no mmap, no trim; freed memory is kept for reuse);
  * glibc:   glibc's defaults (`--no-malloc-tuning`: large blocks are mmapped and returned on free).
and reports side by side, per setting:
  * per step: its time, glibc's heap (mallinfo2 `arena` + `hblkhd`) against the bytes it has in use
    (`uordblks` + `hblkhd`), and the kernel's VmHWM: how much the heap holds beyond what is live;
  * from `torch.profiler`'s memory events over --profile-steps steps: the peak of live tensor bytes
    above the step boundary, the operation at that peak, every tensor alive at it (size and the
    operation that allocated it), and the allocation sizes of a step;
  * what two caching allocators would hold for the same allocation trace of blocks >= 1 MiB: one that reuses
    freed blocks by exact size only, and a separate large-block pool that places first-fit, splits and merges
    (whether a better allocator alone, keeping the speed, could bring the worker under the goal).

Usage:  python benchmarks/memory_timeline.py [--batch 1024] [--steps 6] [--reference-bn | --inplace-bn-backward]
                                            [--recompute-stem]
Writes benchmarks/results/memory_timeline-<date>.json; prints the tables last.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

MIB = 2**20
BIG = 1 * MIB  # blocks a caching allocator would keep (smaller ones are glibc's bins either way)


# --------------------------------------------------------------------------- child: one allocator setting
def _mallinfo() -> dict[str, float]:
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    return {"heap_mib": (m.arena + m.hblkhd) / MIB, "in_use_mib": (m.uordblks + m.hblkhd) / MIB,
            "mmapped_mib": m.hblkhd / MIB}


def _vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _innermost(ops: list[dict[str, Any]], ts: float, prefix: str = "") -> str:
    best = None
    for op in ops:
        if op["ts"] <= ts <= op["ts"] + op["dur"] and op["name"].startswith(prefix):
            if best is None or op["dur"] < best["dur"]:
                best = op
    return best["name"] if best else "-"


def pooled_extent(events: list[tuple[int, int]]) -> int:
    """Replay (address, +bytes | -bytes) events of blocks >= BIG through a pool of their own that places each block
    first-fit at the lowest free offset, splits what is left and merges neighbours on free (what a caching
    allocator with a separate large-block pool does); returns the pool's highest extent in bytes."""
    free: list[tuple[int, int]] = []  # (offset, size), sorted, never adjacent
    placed: dict[int, tuple[int, int]] = {}
    top = extent = 0
    for addr, nbytes in events:
        if nbytes > 0:
            fit = next((i for i, (_, size) in enumerate(free) if size >= nbytes), None)
            if fit is None:
                if free and sum(free[-1]) == top:  # grow the free block at the top instead of leaving it
                    offset, _ = free.pop()
                else:
                    offset = top
                top = offset + nbytes
            else:
                offset, size = free.pop(fit)
                if size > nbytes:
                    free.insert(fit, (offset + nbytes, size - nbytes))
            placed[addr] = (offset, nbytes)
            extent = max(extent, top)
        elif addr in placed:
            offset, size = placed.pop(addr)
            i = bisect.bisect(free, (offset, 0))
            if i > 0 and sum(free[i - 1]) == offset:
                offset, size = free[i - 1][0], free[i - 1][1] + size
                free.pop(i - 1)
                i -= 1
            if i < len(free) and offset + size == free[i][0]:
                size += free.pop(i)[1]
            free.insert(i, (offset, size))
    return extent


def analyse_trace(trace: dict[str, Any]) -> dict[str, Any]:
    """Live tensor bytes over the profiled steps (relative to the first step boundary), the peak and what is
    alive at it, the allocation sizes, and what an exact-size block cache would hold."""
    events = trace["traceEvents"]
    mem = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    ops = [e for e in events if e.get("ph") == "X"]
    live, peak, peak_ts, alive, alive_at_peak = 0, 0, 0.0, {}, {}
    cache: collections.Counter[int] = collections.Counter()
    held = held_peak = 0
    sizes: collections.Counter[int] = collections.Counter()
    big_events: list[tuple[int, int]] = []
    for e in mem:
        nbytes, addr = e["args"]["Bytes"], e["args"]["Addr"]
        if abs(nbytes) >= BIG:  # a free reports the block's size, negated
            big_events.append((addr, nbytes))
        if nbytes > 0:
            live += nbytes
            alive[addr] = (nbytes, e["ts"])
            if nbytes >= BIG:
                sizes[nbytes] += 1
                if cache[nbytes]:
                    cache[nbytes] -= 1
                else:
                    held += nbytes
                    held_peak = max(held_peak, held)
        else:
            size, _ = alive.pop(addr, (-nbytes, 0.0))
            live -= size
            if size >= BIG:
                cache[size] += 1
        if live > peak:
            peak, peak_ts, alive_at_peak = live, e["ts"], dict(alive)
    # Label what was alive at the peak with the autograd node (or module) and the ATen op that allocated it.
    scopes = [o for o in ops if o["name"].startswith(("autograd::engine::evaluate_function", "module:"))]
    atens = [o for o in ops if o["name"].startswith("aten::")]
    at_peak = sorted(((size, ts) for size, ts in alive_at_peak.values() if size >= BIG), reverse=True)
    return {
        "live_peak_mib": peak / MIB,
        "peak_in": f"{_innermost(scopes, peak_ts)} / {_innermost(atens, peak_ts)}",
        "alive_at_peak": [{"mib": round(size / MIB, 1),
                           "allocated_in": f"{_innermost(scopes, ts)} / {_innermost(atens, ts)}"}
                          for size, ts in at_peak],
        "alive_at_peak_small_mib": sum(s for s, _ in alive_at_peak.values() if s < BIG) / MIB,
        "allocations_per_step": {f"{s / MIB:.1f}": n for s, n in sorted(sizes.items(), reverse=True)},
        "exact_size_cache_holds_mib": held_peak / MIB,
        "large_block_pool_extent_mib": pooled_extent(big_events) / MIB,
    }


def _label_forward(module: Any, name: str) -> None:
    """Open a profiler range `module: <name>` around the module's forward (hooks return None: inputs unchanged)."""
    import torch

    ranges: list[Any] = []

    def enter(_module: Any, _inputs: Any) -> None:
        ranges.append(torch.autograd.profiler.record_function(f"module: {name}"))
        ranges[-1].__enter__()

    def leave(_module: Any, _inputs: Any, _output: Any) -> None:
        ranges.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One worker-sized training process: the engine's model, optimiser and batch path, `args.steps` steps."""
    import torch
    import torch.nn.functional as F

    from parallel_vision.config import RunConfig
    from parallel_vision.engines.torch import build
    from parallel_vision.engines.torch.data import epoch_permutation, load_data

    torch.set_num_threads(1)
    cfg = RunConfig(framework="torch", strategy="single", batch_size=args.batch, threads_per_worker=1,
                    fused_bn=not args.reference_bn, data_dir=os.environ.get("PVISION_DATA_DIR"), device="cpu",
                    inplace_bn_backward=args.inplace_bn_backward, recompute_stem=args.recompute_stem)
    device = torch.device("cpu")
    train, test = load_data(cfg, "train", device), load_data(cfg, "test", device)
    model = build.build_model(cfg, train.image_shape, len(train.class_names), device)
    optimizer = build.optimizer(cfg, model, device)
    for name, module in model.named_modules():  # module scopes in the profile, for labelling
        if name and not isinstance(module, (torch.nn.Sequential, torch.nn.Identity)):
            _label_forward(module, name)
    order = epoch_permutation(train.n, cfg.seed, 0)
    start = {"vm_hwm_mib": _vm_hwm_mib(), **_mallinfo()}

    def step(i: int) -> float:
        t = time.perf_counter()
        x, y = train.batch(order[i * args.batch:(i + 1) * args.batch])
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        return time.perf_counter() - t

    steps = []
    for i in range(args.steps):
        seconds = step(i)
        steps.append({"step": i + 1, "seconds": seconds, "vm_hwm_mib": _vm_hwm_mib(), **_mallinfo()})
    trace_path = Path(args.trace)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        for i in range(args.steps, args.steps + args.profile_steps):
            step(i)
    prof.export_chrome_trace(str(trace_path))
    analysis = analyse_trace(json.loads(trace_path.read_text()))
    trace_path.unlink()
    model.eval()
    with torch.no_grad():  # the evaluation the engine runs after each epoch (batch 500)
        for i in range(0, test.n, 500):
            model(test.batch(slice(i, i + 500))[0])
    persistent = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    persistent += sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    persistent += sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                      if torch.is_tensor(v))
    data = sum(t.numel() * t.element_size() for d in (train, test) for t in (d.pixels, d.labels))
    return {"start": start, "steps": steps, "after_eval": {"vm_hwm_mib": _vm_hwm_mib(), **_mallinfo()},
            "model_grads_adam_mib": persistent / MIB, "data_mib": data / MIB, "trace": analysis,
            "steady_step_s": sorted(s["seconds"] for s in steps[1:])[len(steps[1:]) // 2]}


# --------------------------------------------------------------------------- parent
def run_setting(setting: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from parallel_vision.envvars import ALLOCATOR

    env = {k: v for k, v in os.environ.items() if k not in C.ALLOCATOR_VARS}
    if setting == "tuned":
        env.update(ALLOCATOR)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, __file__, "--child", "--batch", str(args.batch), "--steps", str(args.steps),
           "--profile-steps", str(args.profile_steps), "--trace", str(scratch / f"trace-{setting}.json"),
           *(["--reference-bn"] if args.reference_bn else []),
           *(["--inplace-bn-backward"] if args.inplace_bn_backward else []),
           *(["--recompute-stem"] if args.recompute_stem else []), *C.MARK_ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{setting}: the measuring process failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1024, help="per-worker batch (ddp x 2 at batch 2048: 1024)")
    p.add_argument("--steps", type=int, default=6, help="steps before the profiled ones (the heap settles)")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--reference-bn", action="store_true", help="the reference BatchNorm/ReLU/pool modules")
    p.add_argument("--inplace-bn-backward", action="store_true", help="the fused step's in-place BatchNorm backward")
    p.add_argument("--recompute-stem", action="store_true", help="the first conv block recomputed in backward")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trace", default="", help=argparse.SUPPRESS)
    p.add_argument("--mark", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    record = C.header("memory_timeline", args)
    scratch = C.scratch_dir(False)
    results: dict[str, Any] = {}
    for i, setting in enumerate(("tuned", "glibc")):
        results[setting], record[f"machine_{setting}"] = C.measured(lambda s=setting: run_setting(s, args, scratch),
                                                                    first=i == 0, enabled=not args.no_wait)
    record["results"] = results
    path = C.write_json("memory_timeline", record)

    rows = []
    for setting, r in results.items():
        last = r["steps"][-1]
        rows.append([setting, f"{r['steady_step_s']:.2f}", f"{last['in_use_mib']:.0f}", f"{last['heap_mib']:.0f}",
                     f"{r['trace']['live_peak_mib']:.0f}", f"{r['trace']['exact_size_cache_holds_mib']:.0f}",
                     f"{r['trace']['large_block_pool_extent_mib']:.0f}", f"{r['after_eval']['vm_hwm_mib']:.0f}"])
    path_name = "reference modules" if args.reference_bn else "fused step"
    path_name += ", in-place BN backward" if args.inplace_bn_backward else ""
    path_name += ", block 1 recomputed" if args.recompute_stem else ""
    C.print_table(f"One worker, batch {args.batch}, 1 thread, {path_name} (MiB; live: tensors above the step start)",
                  ["allocator", "s/step", "heap in use", "heap held", "live peak in step",
                   "exact-size cache would hold", "first-fit pool would span", "VmHWM"], rows)
    tuned = results["tuned"]
    print(f"\nstep time tuned / glibc: {tuned['steady_step_s'] / results['glibc']['steady_step_s']:.2f}; "
          f"model + grads + Adam {tuned['model_grads_adam_mib']:.0f} MiB, data {tuned['data_mib']:.0f} MiB, "
          f"process at start: VmHWM {tuned['start']['vm_hwm_mib']:.0f} MiB, "
          f"heap in use {tuned['start']['in_use_mib']:.0f}")
    print(f"live peak in {tuned['trace']['peak_in']}; alive then (>= 1 MiB, plus "
          f"{tuned['trace']['alive_at_peak_small_mib']:.0f} MiB in smaller blocks):")
    for a in tuned["trace"]["alive_at_peak"]:
        print(f"  {a['mib']:7.1f} MiB  allocated in {a['allocated_in']}")
    print("allocations per step (MiB: count): " + ", ".join(
        f"{k}: {v // args.profile_steps}" for k, v in tuned["trace"]["allocations_per_step"].items()))
    print(f"written {path.relative_to(C.ROOT)}")


if __name__ == "__main__":
    main()
