"""How close does our PyTorch engine get to this CPU's GEMM rate, and what does each lever buy?

In one run, alternating (ABC…CBA order, so slow drift cancels):
  * the machine's GEMM rates: `torch.mm` of 4096x4096 matrices in fp32 on 1 and --threads threads
    and in bf16 on --threads threads (several times the fp32 rate where the CPU has AVX512-BF16 or
    AMX, far below it where bf16 is emulated), best of --gemm-reps, each in a fresh process;
  * our engine (`launch.run`, child processes as `pvision train`) at batch 2048 on --threads
    threads, steady images/s (epochs 2..E; epoch 1 is the warm-up epoch) x 180 MFLOP per image
    (3 x 59.9 MFLOP forward, the issue's yardstick; the FLOPs actually counted by
    torch.utils.flop_counter are printed beside it) -> ratio to the GEMM rate of the same
    precision (goal >= 0.65): fp32 runs against the fp32 GEMM, bf16 autocast against the bf16 GEMM;
  * each lever switched away from the engine's default, one at a time: the reference BatchNorm
    modules instead of the fused step, contiguous memory format, glibc's allocator defaults, glibc's tuned
    heap instead of tcmalloc, ATen's BatchNorm backward instead of the in-place one, both of these (the
    defaults before issue #31), pin_threads on, torch.compile on (compile time reported apart), bf16 autocast.

`--format-accuracy` instead trains full MNIST for 3 epochs in channels_last and contiguous
(alternating, per seed) and reports speed AND final test accuracy of both, plus a gradient
check of both formats against an fp64 reference on one real batch.

Usage:  python benchmarks/ceiling.py [--repeats 2] [--limit-train 8192] [--epochs 3]
        python benchmarks/ceiling.py --format-accuracy [--seeds 0 1]
        python benchmarks/ceiling.py --precision-accuracy [--seeds 0 1] [--format-epochs 3]
        python benchmarks/ceiling.py --profile        (per-operator time of one training step)
Writes benchmarks/results/ceiling-<date>.json (or ceiling-format-<date>.json); prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

#: Each lever: (name, the RunConfig changes that switch it away from the engine's default).
LEVERS: dict[str, dict[str, Any]] = {
    "reference_bn": {"fused_bn": False},
    "contiguous": {"memory_format": "contiguous"},
    "no_malloc_tuning": {"allocator": "glibc", "malloc_tuning": False},  # glibc's defaults
    # Issue #31's two new defaults taken back, one at a time and together (the defaults before it).
    "glibc_tuned": {"allocator": "glibc"},
    "aten_bn_backward": {"inplace_bn_backward": False},
    "before_31": {"allocator": "glibc", "inplace_bn_backward": False},
    "pin_threads": {"pin_threads": True},
    "compile": {"compile": True},
    "bf16": {"precision": "bf16"},
    "bf16_before_31": {"precision": "bf16", "allocator": "glibc", "inplace_bn_backward": False},
    # The same 2 threads and global batch as two DDP processes of 1 thread (gloo): no intra-op threading.
    "ddp_2x1": {"strategy": "ddp", "workers": 2, "threads_per_worker": 1},
}


# --------------------------------------------------------------------------- in a fresh process
def _gemm_worker(threads: int, size: int, reps: int, dtype_name: str = "fp32") -> None:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    c = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=c)  # warm-up: MKL/oneDNN set-up, page faults
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(2 * size**3 / (time.perf_counter() - t) / 1e9)
    print(json.dumps({"threads": torch.get_num_threads(), "size": size, "dtype": dtype_name, "gflops": rates,
                      "best": max(rates)}))


def _flop_worker() -> None:
    """FLOPs of one training image (forward + backward) of PaperCNN, as torch's FLOP counter sees them."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from parallel_vision.models.torch_cnn import PaperCNN

    model = PaperCNN().train()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    with FlopCounterMode(display=False) as fwd:
        logits = model(x)
    with FlopCounterMode(display=False) as bwd:
        F.cross_entropy(logits, y).backward()
    print(json.dumps({"forward_flop_per_image": fwd.get_total_flops() / 16,
                      "backward_flop_per_image": bwd.get_total_flops() / 16,
                      "note": "convolutions and matmuls only; the input needs no gradient"}))


def _grad_worker(n: int, data_dir: str | None) -> None:
    """Gradient error of fp32 channels_last and fp32 contiguous against fp64, one real normalised batch."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from parallel_vision.data import load
    from parallel_vision.models.torch_cnn import PaperCNN

    torch.set_num_threads(2)
    images, labels = load("mnist", "train", data_dir)
    x64 = torch.from_numpy(np.ascontiguousarray(images[:n])).double().div(255).sub(0.1307).div(0.3081).unsqueeze(1)
    y = torch.from_numpy(labels[:n])
    torch.manual_seed(0)
    base = PaperCNN(dropout=0.0).train()

    def grads(dtype: torch.dtype, fmt: torch.memory_format) -> tuple[dict[str, torch.Tensor], float]:
        model = PaperCNN(dropout=0.0).train()
        model.load_state_dict(base.state_dict())
        model = model.to(dtype).to(memory_format=fmt)
        x = x64.to(dtype).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return {k: p.grad.double().contiguous() for k, p in model.named_parameters()}, float(loss)

    ref, ref_loss = grads(torch.float64, torch.contiguous_format)
    out: dict[str, Any] = {"batch": n}
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        g, loss = grads(torch.float32, fmt)
        rel = {k: float((g[k] - ref[k]).norm() / ref[k].norm()) for k in ref}
        whole = float(torch.cat([(g[k] - ref[k]).flatten() for k in ref]).norm()
                      / torch.cat([ref[k].flatten() for k in ref]).norm())
        worst = max(rel, key=rel.get)  # type: ignore[arg-type]
        out[name] = {"rel_err_all_grads": whole, "rel_err_worst_tensor": rel[worst], "worst_tensor": worst,
                     "rel_err_median_tensor": float(np.median(list(rel.values()))),
                     "loss_abs_err": abs(loss - ref_loss)}
    print(json.dumps(out))


def _profile_worker(cfg_json: str, steps: int) -> None:
    """torch.profiler over `steps` training steps of the engine's own Trainer (its real _step)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from parallel_vision.config import RunConfig
    from parallel_vision.engines.torch.devices import set_threads
    from parallel_vision.engines.torch.dist import Dist
    from parallel_vision.engines.torch.loop import Trainer

    cfg = RunConfig.from_json(cfg_json)
    set_threads(cfg, local_rank=0)
    trainer = Trainer(cfg, Dist())
    per = cfg.batch_size
    order = torch.randperm(trainer.train.n)
    batches = [trainer.train.batch(order[i * per:(i + 1) * per])
               for i in range(steps + 2)]
    trainer.model.train()
    for x, y in batches[:2]:
        trainer._step(x, y)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for x, y in batches[2:]:
            trainer._step(x, y)
    wall = time.perf_counter() - t
    rows = []
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:25]:
        rows.append({"op": e.key, "calls": e.count, "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / steps})
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3 / steps
    keys = ("memory_format", "fused_bn", "precision", "compile", "batch_size")
    print(json.dumps({"config": {k: getattr(cfg, k) for k in keys},
                      "threads": torch.get_num_threads(), "step_ms_profiled": wall * 1e3 / steps,
                      "self_cpu_ms_per_step_total": total, "top_ops": rows}))


def profile_run(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Where one training step's time goes, per operator, for the default and each `--profile-variants` lever."""
    from parallel_vision.config import RunConfig
    from parallel_vision.launch.environment import child_environment

    out: dict[str, Any] = {}
    first = True
    for fmt_name in args.profile_variants:
        need = (args.profile_steps + 2) * args.batch_size
        cfg = RunConfig(**dict(base_config(args), **LEVERS.get(fmt_name, {}), tensorboard=False, device="cpu",
                               limit_train=max(args.limit_train, need), data_dir=os.environ.get("PVISION_DATA_DIR")))
        env = child_environment(cfg, progress=False)
        res, state = C.measured(lambda c=cfg, e=env: C.run_json_subprocess(
            [__file__, "--_profile", c.to_json(), str(args.profile_steps)], env=e), first=first,
            enabled=not args.no_wait)
        first = False
        res["machine"] = state
        out[fmt_name] = res
        C.print_table(f"{fmt_name}: self CPU ms per step (batch {args.batch_size}, {res['threads']} threads, "
                      f"{res['step_ms_profiled']:.0f} ms/step under the profiler)",
                      ["op", "calls", "ms/step", "share"],
                      [[r["op"], r["calls"], f"{r['self_cpu_ms_per_step']:.1f}",
                        f"{r['self_cpu_ms_per_step'] / res['self_cpu_ms_per_step_total']:.1%}"]
                       for r in res["top_ops"][:15]])
    record.update({"profiles": out})
    path = C.write_json("ceiling-profile", record)
    print(f"written {path.relative_to(C.ROOT)}")


def _subprocess(mode: list[str], threads: int) -> dict[str, Any]:
    return C.run_json_subprocess([__file__, *mode], env=C.baseline_env(threads))


# --------------------------------------------------------------------------- the runs
def base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's defaults, stated explicitly so each lever is exactly one change."""
    return {
        "framework": "torch", "strategy": "single", "workers": 1, "batch_size": args.batch_size,
        "epochs": args.epochs, "limit_train": args.limit_train, "limit_test": args.limit_test,
        "threads_per_worker": args.threads, "seed": args.seed, "memory_format": "channels_last",
        "fused_bn": True, "inplace_bn_backward": True, "malloc_tuning": True, "allocator": "auto",
        "pin_threads": False, "compile": False, "precision": "fp32",
    }


def engine_row(run: dict[str, Any]) -> dict[str, Any]:
    s, t = run["summary"], run["timing"]
    return {"images_per_s": s["images_per_s_excl_warmup"], "warmup_epoch_s": s["warmup_epoch_time_s"],
            "steady_epoch_s": s["mean_epoch_time_excl_warmup_s"], "compile_s": t.get("compile_s"),
            "test_accuracy": s["test_accuracy"], "epoch_images_per_s": [e["images_per_s"] for e in run["epochs"]],
            "test_accuracy_per_epoch": [e["test_accuracy"] for e in run["epochs"]], "wall_s": run["wall_s"],
            "threads": run["environment"].get("torch_threads")}


def levers_run(args: argparse.Namespace, record: dict[str, Any]) -> None:
    scratch = C.scratch_dir(args.keep)
    base = base_config(args)
    names = ["default"] + [n for n in args.levers]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    gemm: dict[str, list[dict[str, Any]]] = {"fp32/1": [], f"fp32/{args.threads}": [], f"bf16/{args.threads}": []}
    machine_states = []
    first = True
    for rnd in range(args.repeats):
        order = names if rnd % 2 == 0 else list(reversed(names))
        for key in gemm:
            dtype, threads = key.split("/")
            g, state = C.measured(
                lambda t=threads, d=dtype: _subprocess(["--_gemm", t, str(args.gemm_size), str(args.gemm_reps), d],
                                                       int(t)),
                first=first, enabled=not args.no_wait)
            first = False
            g["machine"] = state
            gemm[key].append(g)
            print(f"  round {rnd + 1}: GEMM {dtype} {threads} thread(s): best {g['best']:.1f} GFLOP/s "
                  f"(load1 {state['load1']})", flush=True)
        for name in order:
            cfg = dict(base, **(LEVERS.get(name, {})))
            try:
                run, state = C.measured(lambda c=cfg: C.run_engine(scratch, **c), first=False,
                                        enabled=not args.no_wait)
                row = engine_row(run)
            except Exception as exc:  # noqa: BLE001 - one failing lever must not lose the others
                print(f"  round {rnd + 1}: {name} FAILED: {exc}", flush=True)
                runs[name].append({"error": str(exc), "images_per_s": None, "compile_s": None,
                                   "test_accuracy": None, "round": rnd + 1})
                continue
            row["machine"], row["round"] = state, rnd + 1
            runs[name].append(row)
            machine_states.append(state)
            extra = f", compile {row['compile_s']:.1f} s" if row["compile_s"] else ""
            print(f"  round {rnd + 1}: {name:18s} {row['images_per_s']:7.1f} img/s, acc "
                  f"{row['test_accuracy']:.4f}{extra} (load1 {state['load1']}, busy {state['busy_cores']})",
                  flush=True)

    flops = _subprocess(["--_flops"], 1)
    gemm_best = {key: C.spread(g["best"] for g in gemm[key]) for key in gemm}
    fp32_key = f"fp32/{args.threads}"
    peak = gemm_best[fp32_key]["median"]
    default_rates = [r["images_per_s"] for r in runs["default"]]  # None where a run failed
    ratio_per_round = [
        r * C.TRAIN_FLOP_PER_IMAGE / 1e9 / g["best"]
        for r, g in zip(default_rates, gemm[fp32_key], strict=False) if r
    ]
    summary: dict[str, Any] = {
        "gemm_gflops_best": {str(t): s for t, s in gemm_best.items()},
        "counted_flop_per_image": flops,
        "engine_images_per_s": C.spread(default_rates),
        "engine_gflops": C.spread(r * C.TRAIN_FLOP_PER_IMAGE / 1e9 for r in default_rates if r),
        "ratio_to_gemm": C.spread(ratio_per_round),
        "ratio_goal": 0.65,
        "levers": {},
    }
    for name in args.levers:
        rates = [r["images_per_s"] for r in runs[name]]
        matching = f"{LEVERS[name].get('precision', 'fp32')}/{args.threads}"  # the GEMM of the lever's precision
        summary["levers"][name] = {
            "change": LEVERS[name],
            "images_per_s": C.spread(rates),
            "ratio_to_default": C.paired_ratios(rates, default_rates),
            "compile_s": C.spread(r["compile_s"] for r in runs[name] if r["compile_s"] is not None),
            "test_accuracy": C.spread(r["test_accuracy"] for r in runs[name]),
            "gemm": matching,
            "ratio_to_gemm": C.spread(
                r * C.TRAIN_FLOP_PER_IMAGE / 1e9 / g["best"]
                for r, g in zip(rates, gemm[matching], strict=False) if r),
        }
    record.update({"base_config": base, "runs": runs, "gemm_runs": {str(k): v for k, v in gemm.items()},
                   "summary": summary,
                   "load1_range": [min(s["load1"] for s in machine_states), max(s["load1"] for s in machine_states)]})
    path = C.write_json("ceiling", record)

    counted = flops["forward_flop_per_image"] + flops["backward_flop_per_image"]
    C.print_table(
        f"GEMM (torch.mm {args.gemm_size}^3), best of {args.gemm_reps} per round, {args.repeats} round(s)",
        ["precision/threads", "GFLOP/s median [min-max of rounds]"],
        [[key, C.fmt_spread(s, 1)] for key, s in gemm_best.items()],
    )
    rows = [["default (fused BN, channels_last, malloc on, no pin, eager, fp32)",
             C.fmt_spread(summary["engine_images_per_s"], 1), "1.000", "-",
             C.fmt_spread(C.spread(r["test_accuracy"] for r in runs["default"]), 4)]]
    for name in args.levers:
        lv = summary["levers"][name]
        rows.append([f"{name} {LEVERS[name]}", C.fmt_spread(lv["images_per_s"], 1),
                     C.fmt_spread(lv["ratio_to_default"], 3), C.fmt_spread(lv["compile_s"], 1),
                     C.fmt_spread(lv["test_accuracy"], 4)])
    C.print_table(
        f"Our engine, batch {args.batch_size}, {args.threads} threads, {args.limit_train} images x {args.epochs} "
        f"epochs (steady = epochs 2..{args.epochs}), {args.repeats} alternating round(s)",
        ["variant", "img/s median [range]", "x default (paired)", "compile s", "test acc"], rows,
    )
    print(f"\nTraining FLOP/image: nominal 180e6; counted by torch.utils.flop_counter {counted / 1e6:.1f}e6 "
          f"(fwd {flops['forward_flop_per_image'] / 1e6:.1f}e6)")
    print(f"Engine: {C.fmt_spread(summary['engine_gflops'], 1)} GFLOP/s vs GEMM {peak:.1f} GFLOP/s "
          f"on {args.threads} threads")
    print(C.goal_line("ratio to GEMM (per round)", summary["ratio_to_gemm"]["median"], 0.65)
          + f"  [rounds: {', '.join(f'{v:.3f}' for v in ratio_per_round)}]")
    for name, lv in summary["levers"].items():
        if lv["ratio_to_gemm"]["median"] is not None:
            print(f"  {name}: ratio to the {lv['gemm']} GEMM {C.fmt_spread(lv['ratio_to_gemm'], 3)}")
    lo, hi = record["load1_range"]
    print(f"load1 before runs: {lo:.2f}..{hi:.2f}; written {path.relative_to(C.ROOT)}")


def format_accuracy_run(args: argparse.Namespace, record: dict[str, Any]) -> None:
    scratch = C.scratch_dir(args.keep)
    grad = _subprocess(["--_grad", str(args.grad_batch), os.environ.get("PVISION_DATA_DIR", "")], 2)
    runs: dict[str, list[dict[str, Any]]] = {"channels_last": [], "contiguous": []}
    first = True
    for i, seed in enumerate(args.seeds):
        order = ["channels_last", "contiguous"] if i % 2 == 0 else ["contiguous", "channels_last"]
        for fmt_name in order:
            cfg = dict(base_config(args), memory_format=fmt_name, seed=seed, limit_train=None, limit_test=None,
                       epochs=args.format_epochs)
            run, state = C.measured(lambda c=cfg: C.run_engine(scratch, **c), first=first,
                                    enabled=not args.no_wait)
            first = False
            row = engine_row(run)
            row["machine"], row["seed"] = state, seed
            runs[fmt_name].append(row)
            print(f"  seed {seed}: {fmt_name:13s} {row['images_per_s']:6.1f} img/s, test acc "
                  f"{row['test_accuracy']:.4f} (load1 {state['load1']})", flush=True)
    cl = [r["images_per_s"] for r in runs["channels_last"]]
    co = [r["images_per_s"] for r in runs["contiguous"]]
    summary = {
        "gradient_check": grad,
        "channels_last": {"images_per_s": C.spread(cl),
                          "test_accuracy": C.spread(r["test_accuracy"] for r in runs["channels_last"])},
        "contiguous": {"images_per_s": C.spread(co),
                       "test_accuracy": C.spread(r["test_accuracy"] for r in runs["contiguous"])},
        "contiguous_speed_ratio": C.paired_ratios(co, cl),
    }
    record.update({"runs": runs, "summary": summary})
    path = C.write_json("ceiling-format", record)
    C.print_table(
        f"Gradient error vs fp64 (one batch of {args.grad_batch} real MNIST images, dropout 0)",
        ["format", "rel err, all grads", "worst tensor", "median tensor", "|loss err|"],
        [[n, f"{grad[n]['rel_err_all_grads']:.2e}",
          f"{grad[n]['rel_err_worst_tensor']:.2e} ({grad[n]['worst_tensor']})",
          f"{grad[n]['rel_err_median_tensor']:.2e}", f"{grad[n]['loss_abs_err']:.1e}"]
         for n in ("contiguous", "channels_last")],
    )
    C.print_table(
        f"Full MNIST, {args.format_epochs} epochs, batch {args.batch_size}, {args.threads} threads, "
        f"seeds {args.seeds} (alternating)",
        ["format", "img/s (epochs 2..) median [range]", "final test acc per seed"],
        [[n, C.fmt_spread(summary[n]["images_per_s"], 1),
          ", ".join(f"{r['test_accuracy']:.4f}" for r in runs[n])] for n in ("channels_last", "contiguous")],
    )
    print(f"contiguous / channels_last speed (paired): {C.fmt_spread(summary['contiguous_speed_ratio'], 3)}")
    print(f"written {path.relative_to(C.ROOT)}")


def precision_accuracy_run(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """fp32 against bf16 autocast on full MNIST: speed and final test accuracy, alternating per seed, the
    figures `--precision auto` is decided from (engines/levers.auto_precision)."""
    scratch = C.scratch_dir(args.keep)
    names = ("fp32", "bf16")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    first = True
    for i, seed in enumerate(args.seeds):
        for name in names if i % 2 == 0 else tuple(reversed(names)):
            cfg = dict(base_config(args), precision=name, seed=seed, limit_train=None, limit_test=None,
                       epochs=args.format_epochs)
            run, state = C.measured(lambda c=cfg: C.run_engine(scratch, **c), first=first, enabled=not args.no_wait)
            first = False
            row = engine_row(run)
            row["machine"], row["seed"] = state, seed
            runs[name].append(row)
            print(f"  seed {seed}: {name} {row['images_per_s']:6.1f} img/s, test acc {row['test_accuracy']:.4f} "
                  f"per epoch {[round(a, 4) for a in row['test_accuracy_per_epoch']]} (load1 {state['load1']})",
                  flush=True)
    rates = {n: [r["images_per_s"] for r in runs[n]] for n in names}
    summary = {n: {"images_per_s": C.spread(rates[n]), "test_accuracy": C.spread(r["test_accuracy"] for r in runs[n])}
               for n in names}
    summary["bf16_speed_ratio"] = C.paired_ratios(rates["bf16"], rates["fp32"])
    record.update({"runs": runs, "summary": summary})
    path = C.write_json("ceiling-precision", record)
    C.print_table(
        f"Full MNIST, {args.format_epochs} epochs, batch {args.batch_size}, {args.threads} threads, "
        f"seeds {args.seeds} (alternating)",
        ["precision", "img/s (epochs 2..) median [range]", "final test acc per seed"],
        [[n, C.fmt_spread(summary[n]["images_per_s"], 1), ", ".join(f"{r['test_accuracy']:.4f}" for r in runs[n])]
         for n in names],
    )
    print(f"bf16 / fp32 speed (paired): {C.fmt_spread(summary['bf16_speed_ratio'], 3)}")
    print(f"written {path.relative_to(C.ROOT)}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_gemm":
        _gemm_worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_flops":
        _flop_worker()
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_profile":
        _profile_worker(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_grad":
        _grad_worker(int(sys.argv[2]), sys.argv[3] or None)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds (default 2)")
    p.add_argument("--limit-train", type=int, default=8192)
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levers", nargs="*", default=list(LEVERS), choices=list(LEVERS))
    p.add_argument("--gemm-size", type=int, default=4096)
    p.add_argument("--gemm-reps", type=int, default=5)
    p.add_argument("--format-accuracy", action="store_true",
                   help="full-MNIST channels_last vs contiguous speed and accuracy instead of the levers")
    p.add_argument("--precision-accuracy", action="store_true",
                   help="full-MNIST fp32 vs bf16 autocast speed and accuracy instead of the levers")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--format-epochs", type=int, default=3,
                   help="epochs of the full-MNIST runs of --format-accuracy and --precision-accuracy")
    p.add_argument("--grad-batch", type=int, default=2048)
    p.add_argument("--profile", action="store_true",
                   help="torch.profiler breakdown of the engine's training step (channels_last, contiguous)")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--profile-variants", nargs="+", default=["default", "reference_bn"],
                   choices=["default", *LEVERS], help="what --profile compares (default: default reference_bn)")
    p.add_argument("--no-wait", action="store_true", help="measure even on a busy machine (recorded)")
    p.add_argument("--keep", action="store_true", help="keep the engine runs' output folders")
    args = p.parse_args()
    record = C.header("ceiling", args)
    if args.profile:
        profile_run(args, record)
    elif args.format_accuracy:
        format_accuracy_run(args, record)
    elif args.precision_accuracy:
        precision_accuracy_run(args, record)
    else:
        levers_run(args, record)


if __name__ == "__main__":
    main()
