"""How far DDP × 2 and `--grad-accum 2` on one worker end apart, at 1 and at 2 threads in the single worker.

docs/levers.md's parity statement rests on this. Each run is a real engine run (`launch.run`, its own
processes), paper_cnn, SGD lr 0.05 momentum 0.9, dropout 0, contiguous memory format, deterministic kernels,
global batch 512, K optimiser steps (limit_train = K × 512, one epoch). The reference is DDP with 2 workers ×
1 thread (per-worker batch 256); against it:

  accum_t1   one worker, --grad-accum 2 (micro-batch 256), 1 thread
  accum_t2   the same at 2 threads (the default on a 2-core machine)
  accum_t2b  accum_t2 again: is the 2-thread run itself reproducible?
  single_t1 vs single_t2  one worker, no accumulation, 1 vs 2 threads: the thread count alone, no DDP involved

For every parameter tensor it prints max|a − b| ÷ max|a| (the difference relative to the tensor's largest
value) after K = 1, 2, 4, 8 steps, and writes everything to benchmarks/results/parity_threads-<date>.json.

Where it starts: one forward and backward of the same batch of 256 through the same freshly initialised paper_cnn
(this process, the zoo model without the engine's fused BatchNorm step) at 1 and at 2 threads in fp32, and once
in fp64 as the reference: the per-tensor max relative difference of the logits and of every gradient, before any
optimiser step has compounded it.

    python benchmarks/parity_threads.py            # ~5 min on a 2-core CPU
    python benchmarks/parity_threads.py --steps 8  # one K only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine_info  # noqa: E402

BATCH = 512
RECIPE: dict[str, object] = {"model": "paper_cnn", "batch_size": BATCH, "epochs": 1, "limit_test": 200, "device": "cpu",
                             "dropout": 0.0, "memory_format": "contiguous", "tensorboard": False, "optimizer": "sgd",
                             "lr": 0.05, "momentum": 0.9, "deterministic": True}
RUNS: dict[str, dict[str, object]] = {
    "ddp_2x1": {"strategy": "ddp", "workers": 2, "threads_per_worker": 1},
    "accum_t1": {"grad_accum": 2, "threads_per_worker": 1},
    "accum_t2": {"grad_accum": 2, "threads_per_worker": 2},
    "accum_t2b": {"grad_accum": 2, "threads_per_worker": 2},
    "single_t1": {"threads_per_worker": 1},
    "single_t2": {"threads_per_worker": 2},
}
PAIRS = (("ddp_2x1", "accum_t1"), ("ddp_2x1", "accum_t2"), ("accum_t2", "accum_t2b"), ("single_t1", "single_t2"))


def train(name: str, steps: int, out: Path, data_dir: str | None) -> dict[str, Any]:
    from parallel_vision.config import RunConfig
    from parallel_vision.launch import run

    cfg = RunConfig(**dict(RECIPE, **RUNS[name], limit_train=steps * BATCH, out_dir=str(out),  # type: ignore[arg-type]
                           **({"data_dir": data_dir} if data_dir else {})))
    run(cfg, progress=False)
    result = json.loads((out / "result.json").read_text())
    return {"torch_threads": result["environment"].get("torch_threads"),
            "fused_bn_blocks": result["environment"].get("fused_bn_blocks"),
            "train_loss": result["epochs"][-1]["train_loss"]}


def parameters(out: Path) -> dict[str, Any]:
    import torch

    from parallel_vision.models.torch_zoo import build_torch_model

    names = [n for n, _ in build_torch_model("paper_cnn", 1, 28, 10, 0.0).named_parameters()]
    state = torch.load(out / "model.pt")
    return {n: state[n].double() for n in names}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {n: float((a[n] - b[n]).abs().max() / a[n].abs().max().clamp_min(1e-30)) for n in a}


def one_step_gradients(data_dir: str | None, batch: int = 256) -> dict[str, dict[str, float]]:
    """Logits and gradients of one batch at 1 and at 2 threads (fp32) and in fp64 (1 thread), identical weights
    and input: max relative differences, 1 vs 2 threads and each against fp64."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from parallel_vision.data import load
    from parallel_vision.models.torch_zoo import build_torch_model

    torch.use_deterministic_algorithms(True)
    images, labels = load("mnist", "train", data_dir, download=False)
    x = torch.from_numpy(np.ascontiguousarray(images[:batch])).float().div(255.0).sub(0.1307).div(0.3081)[:, None]
    y = torch.from_numpy(labels[:batch])
    torch.manual_seed(0)
    model = build_torch_model("paper_cnn", 1, 28, 10, 0.0).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out: dict[str, dict[str, Any]] = {}
    for name, threads, dtype in (("fp32_t1", 1, torch.float32), ("fp32_t2", 2, torch.float32),
                                 ("fp64", 1, torch.float64)):
        torch.set_num_threads(threads)
        model = model.to(dtype)
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)
        logits = model(x.to(dtype))
        F.cross_entropy(logits, y).backward()
        out[name] = {"logits": logits.detach().double(),
                     **{f"grad {n}": p.grad.double() for n, p in model.named_parameters()}}
    ref = out["fp64"]
    return {"1_vs_2_threads": compare(out["fp32_t1"], out["fp32_t2"]),
            "1_thread_vs_fp64": compare(ref, out["fp32_t1"]), "2_threads_vs_fp64": compare(ref, out["fp32_t2"]),
            "fp64_max_abs": {n: float(v.abs().max()) for n, v in ref.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    data_dir = os.environ.get("PVISION_DATA_DIR")
    doc: dict[str, Any] = {"kind": "parity_threads", "created_at": datetime.now().isoformat(timespec="seconds"),
                           "machine": machine_info(), "recipe": RECIPE, "runs": RUNS, "by_steps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.steps:
            facts, params = {}, {}
            for name in RUNS:
                out = Path(tmp) / f"{name}-{k}"
                facts[name] = train(name, k, out, data_dir)
                params[name] = parameters(out)
            pairs = {f"{a} vs {b}": compare(params[a], params[b]) for a, b in PAIRS}
            doc["by_steps"][str(k)] = {"runs": facts, "max_rel_diff": pairs}
            print(f"\nK = {k} step(s) of {BATCH}; runs: " + "; ".join(
                f"{n} threads={f['torch_threads']} fused_bn={f['fused_bn_blocks']}" for n, f in facts.items()))
            names = list(params["ddp_2x1"])
            print(f"{'tensor':<24}" + "".join(f"{p:>24}" for p in pairs))
            for n in names:
                print(f"{n:<24}" + "".join(f"{pairs[p][n]:>24.2e}" for p in pairs))
            print(f"{'(largest)':<24}" + "".join(f"{max(pairs[p].values()):>24.2e}" for p in pairs))
    grads = one_step_gradients(data_dir)
    doc["one_step_1_vs_2_threads"] = grads
    print("\nOne forward + backward, same weights and batch (max relative difference; fp64 = 1 thread, fp64):")
    print(f"{'':<28}{'max |fp64|':>12}{'1 vs 2 thr':>12}{'1 thr-fp64':>12}{'2 thr-fp64':>12}")
    for n in grads["1_vs_2_threads"]:
        print(f"{n:<28}{grads['fp64_max_abs'][n]:>12.2e}" + "".join(
            f"{grads[k][n]:>12.2e}" for k in ("1_vs_2_threads", "1_thread_vs_fp64", "2_threads_vs_fp64")))
    path = RESULTS_DIR / f"parity_threads-{datetime.now():%Y-%m-%d}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
