"""Our engines against the ways people usually train this CNN: same model, data, batch, epochs, threads.

Contestants, run alternately (round r in order a..e, round r+1 in reverse), each in a fresh process:
  (a) ours_torch   our PyTorch engine through `launch.run` (as `pvision train`): engine defaults
                   (channels_last, allocator settings, resident uint8 tensors normalised per batch);
  (b) paper_loop   the paper-style loop: per-sample PIL image -> ToTensor -> Normalize in a
                   DataLoader(batch 2048, shuffle, num_workers=0 as the paper's code), Adam,
                   plain model(x), loss.item() every step          (benchmarks/baselines/paper_loop.py);
  (c) keras_fit    plain Keras model.fit on numpy arrays / 255 (keras-io mnist_convnet style)
                                                                   (benchmarks/baselines/keras_fit.py);
  (d) lightning    a Lightning Trainer (cpu, 1 device, defaults; progress bar, checkpointing,
                   logger and model summary off)                   (benchmarks/baselines/lightning_loop.py);
  (e) ours_tf      our TensorFlow engine through `launch.run` (tf.data pipeline, Keras fit);
  (f) lightning_same_alloc  (d) under the allocator our engine's workers get (allocator.py: tcmalloc
                   keeping freed memory where installed, else glibc's tuned heap): the step alone compared.
Baselines run in the environment a user has: our allocator variables are removed from
their environment and nothing is pinned; only the thread count is the same for all
(OMP/MKL_NUM_THREADS and torch.set_num_threads / TF intra-op threads = --threads).

Steady-state images/s = training images of epochs 2..E / their summed epoch wall time (epoch 1,
with its one-off costs, is left out; evaluation is never inside an epoch's time).
Goals: (a) >= 2x (b), >= 2x (c), >= 1.5x (d) and (f) (issue #31); (e) >= 1.0x (c).

Usage:  python benchmarks/vs_baselines.py [--repeats 2] [--limit-train 8192] [--epochs 3]
        [--only ours_torch paper_loop ...]
Writes benchmarks/results/vs_baselines-<date>.json; prints a table last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

CONTESTANTS = ("ours_torch", "paper_loop", "keras_fit", "lightning", "ours_tf", "lightning_same_alloc")
SCRIPTS = {"paper_loop": "paper_loop.py", "keras_fit": "keras_fit.py", "lightning": "lightning_loop.py",
           "lightning_same_alloc": "lightning_loop.py"}
#: (numerator, denominator, goal)
GOALS = (
    ("ours_torch", "paper_loop", 2.0),
    ("ours_torch", "keras_fit", 2.0),
    ("ours_torch", "lightning", 1.5),
    ("ours_torch", "lightning_same_alloc", 1.5),
    ("ours_tf", "keras_fit", 1.0),
)


def run_one(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    if name in ("ours_torch", "ours_tf"):
        run = C.run_engine(
            scratch, framework="torch" if name == "ours_torch" else "tensorflow", strategy="single",
            batch_size=args.batch_size, epochs=args.epochs, limit_train=args.limit_train,
            limit_test=args.limit_test, threads_per_worker=args.threads, seed=args.seed,
        )
        return {
            "images_per_s": run["summary"]["images_per_s_excl_warmup"],
            "epoch_times_s": [e["epoch_time_s"] for e in run["epochs"]],
            "epoch_images": [e["n_train_images"] for e in run["epochs"]],
            "test_accuracy": run["summary"]["test_accuracy"],
            "wall_s": run["wall_s"],
            "threads": run["environment"].get("torch_threads") or run["environment"].get("intra_op_threads"),
        }
    cmd = [str(C.BASELINES_DIR / SCRIPTS[name]), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--seed", str(args.seed)]
    if args.limit_train:
        cmd += ["--limit-train", str(args.limit_train)]
    if args.limit_test:
        cmd += ["--limit-test", str(args.limit_test)]
    log = scratch / f"{name}-{len(list(scratch.glob(name + '-*')))}.log"
    env = C.baseline_env(args.threads)
    if name == "lightning_same_alloc":
        from parallel_vision import allocator

        env.update(allocator.environment("auto", True, env))
    out = C.run_json_subprocess(cmd, env=env, log=log)
    out["images_per_s"] = out.pop("images_per_s_excl_warmup")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=8192)
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", choices=CONTESTANTS, default=list(CONTESTANTS))
    p.add_argument("--no-wait", action="store_true", help="measure even on a busy machine (recorded)")
    p.add_argument("--keep", action="store_true", help="keep run folders and baseline logs")
    args = p.parse_args()
    if args.limit_train is not None and args.limit_train <= 0:
        args.limit_train = None  # 0 means the full training set
    record = C.header("vs_baselines", args)
    scratch = C.scratch_dir(args.keep)
    names = [n for n in CONTESTANTS if n in args.only]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    first = True
    for rnd in range(args.repeats):
        for name in names if rnd % 2 == 0 else list(reversed(names)):
            try:
                row, state = C.measured(lambda n=name: run_one(n, args, scratch), first=first,
                                        enabled=not args.no_wait)
            except Exception as exc:  # noqa: BLE001 - one broken contestant must not lose the others
                print(f"  round {rnd + 1}: {name} FAILED: {exc}", flush=True)
                runs[name].append({"error": str(exc), "round": rnd + 1})
                continue
            finally:
                first = False
            row["machine"], row["round"] = state, rnd + 1
            runs[name].append(row)
            print(f"  round {rnd + 1}: {name:11s} {row['images_per_s']:7.1f} img/s  epochs "
                  f"{', '.join(f'{t:.2f}' for t in row['epoch_times_s'])} s  acc {row['test_accuracy']:.4f} "
                  f"(load1 {state['load1']}, busy {state['busy_cores']})", flush=True)

    def rates(name: str) -> list[float | None]:
        return [r.get("images_per_s") for r in runs.get(name, [])]

    summary: dict[str, Any] = {"images_per_s": {n: C.spread(rates(n)) for n in names}, "goals": []}
    for a, b, goal in GOALS:
        if a in runs and b in runs:
            pr = C.paired_ratios(rates(a), rates(b))  # type: ignore[arg-type]
            summary["goals"].append({"ratio": f"{a} / {b}", "goal": goal, **pr,
                                     "met": pr["median"] is not None and pr["median"] >= goal})
    states = [r["machine"] for rs in runs.values() for r in rs if "machine" in r]
    record.update({"runs": runs, "summary": summary,
                   "load1_range": [min(s["load1"] for s in states), max(s["load1"] for s in states)]})
    path = C.write_json("vs_baselines", record)

    ref = summary["images_per_s"].get("ours_torch", {}).get("median")
    C.print_table(
        f"Steady images/s (epochs 2..{args.epochs}), batch {args.batch_size}, {args.threads} threads, "
        f"{args.limit_train or 'all'} training images, {args.repeats} alternating round(s)",
        ["contestant", "img/s median [range]", "ours_torch / this", "test acc (last round)"],
        [[n, C.fmt_spread(summary["images_per_s"][n], 1),
          f"{ref / summary['images_per_s'][n]['median']:.2f}" if ref and summary["images_per_s"][n]["median"] else "-",
          C.fmt(next((r.get("test_accuracy") for r in reversed(runs[n]) if "test_accuracy" in r), None), 4)]
         for n in names],
    )
    C.print_table("Ratios against goals (paired per round)", ["ratio", "median [range]", "goal", "met"],
                  [[g["ratio"], C.fmt_spread(g, 2), f">= {g['goal']}", "yes" if g["met"] else "NO"]
                   for g in summary["goals"]])
    lo, hi = record["load1_range"]
    print(f"load1 before runs: {lo:.2f}..{hi:.2f}; written {path.relative_to(C.ROOT)}")


if __name__ == "__main__":
    main()
