"""Summarise a `benchmarks/gpu.sh` output folder: one table, one JSON (gpu-summary.json).

Training time is the sum of epoch times (synchronised, evaluation excluded); time to 99 %
is the training time up to the end of the first epoch whose full-test-set accuracy is >= 99.0 %.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarise(run_dir: Path) -> dict:
    data = json.loads((run_dir / "result.json").read_text())
    epochs, s, cfg = data["epochs"], data["summary"], data["config"]
    elapsed, to99 = 0.0, None
    for e in epochs:
        elapsed += e["epoch_time_s"]
        if to99 is None and e["test_accuracy"] >= 0.99:
            to99 = elapsed
    return {
        "run": run_dir.name,
        "epochs": len(epochs),
        "batch": cfg["batch_size"],
        "precision": cfg["precision"],
        "compile": cfg["compile"],
        "strategy": cfg["strategy"],
        "train_time_s": round(s["train_time_s"], 3),
        "warmup_epoch_s": round(s["warmup_epoch_time_s"], 3),
        "steady_epoch_s": round(s["mean_epoch_time_excl_warmup_s"], 4),
        "images_per_s": round(s["images_per_s_excl_warmup"]),
        "compile_s": data["timing"].get("compile_s"),
        "test_accuracy": s["test_accuracy"],
        "n_test": s["n_test_evaluated"],
        "time_to_99_s": None if to99 is None else round(to99, 3),
        "total_time_s": round(s["total_time_s"], 1),
        "gpu": (data["environment"].get("gpus") or ["?"])[0],
    }


def main(out: Path) -> None:
    rows = [summarise(d) for d in sorted(out.iterdir()) if (d / "result.json").exists()]
    (out / "gpu-summary.json").write_text(json.dumps(rows, indent=2))
    cols = ["run", "epochs", "batch", "train_time_s", "steady_epoch_s", "images_per_s", "compile_s",
            "test_accuracy", "time_to_99_s"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
