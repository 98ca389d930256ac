"""Did a change move the numbers? One `pvision train` configuration, run side by side from two source trees.

A refactor must not change what the tool measures: the same seed must give the same test accuracy, loss
and predictions bit for bit, and the throughput must stay within noise. This script runs one configuration
(default: the quick bench's torch single run, paper CNN) from the working tree and from a base revision
(a temporary `git worktree`), alternating A and B over `--rounds` rounds so a slow drift of the machine hits
both, and prints the per-round pairs, the median images/s of each and their ratio.

    python benchmarks/ab_train.py --base b14ad30 --rounds 3
    python benchmarks/ab_train.py --base HEAD~3 -- -f tensorflow --epochs 2   # other train options after --
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The quick bench's 1-worker torch run (bench/presets.py "quick"; 1 thread = 2 cores ÷ 2 workers).
QUICK_TORCH_SINGLE = ["-f", "torch", "-s", "single", "-n", "1", "--epochs", "2", "--batch-size", "512",
                      "--limit-train", "6144", "--limit-test", "2000", "--threads", "1", "--seed", "0"]


def run_once(src: Path, train_args: list[str], out: Path) -> dict[str, Any]:
    """One `pvision train` from the tree at `src`, in a fresh interpreter; what it measured."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "parallel_vision", "train", *train_args, "--out", str(out), "--quiet",
           "--no-tensorboard"]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    data = json.loads((out / "result.json").read_text())
    s = data["summary"]
    return {
        "test_accuracy": s["test_accuracy"], "test_loss": s["test_loss"], "images_per_s": s["images_per_s"],
        "steady_epoch_s": s["mean_epoch_time_excl_warmup_s"], "wall_s": round(wall, 2),
        "predictions_sha256": hashlib.sha256((out / "predictions.npy").read_bytes()).hexdigest(),
        "code_version": data.get("code_version"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("train_args", nargs="*", help="pvision train options (default: the quick torch single)")
    args = parser.parse_args()
    train_args = args.train_args or QUICK_TORCH_SINGLE
    with tempfile.TemporaryDirectory(prefix="ab-train-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=ROOT, check=True)
        trees = {"A (base)": base_tree / "src", "B (working tree)": ROOT / "src"}
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        try:
            for r in range(args.rounds):
                order = list(trees) if r % 2 == 0 else list(reversed(trees))
                for name in order:
                    rows[name].append(run_once(trees[name], train_args, Path(tmp) / f"run-{r}-{name[0]}"))
                    print(f"round {r + 1} {name}: {rows[name][-1]}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
    a, b = rows["A (base)"], rows["B (working tree)"]
    keys = ("test_accuracy", "test_loss", "predictions_sha256")
    same = all(x[k] == y[k] for x, y in zip(a, b, strict=True) for k in keys)
    med_a, med_b = (statistics.median(r["images_per_s"] for r in rows_) for rows_ in (a, b))
    pairs = [y["images_per_s"] / x["images_per_s"] for x, y in zip(a, b, strict=True)]
    print(f"\ntrain {' '.join(train_args)}")
    print(f"accuracy, loss and predictions bit-identical in every round: {same}")
    print(f"test accuracy A {a[0]['test_accuracy']:.4f}  B {b[0]['test_accuracy']:.4f}")
    print(f"images/s median A {med_a:.1f}  B {med_b:.1f}  B/A {med_b / med_a:.3f} "
          f"(per round {', '.join(f'{p:.3f}' for p in pairs)}; {args.rounds} rounds, alternating)")
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, "train_args": train_args, "rows": rows,
                                         "bit_identical": same, "ratio_b_over_a": med_b / med_a}, indent=2))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
