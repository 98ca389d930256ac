"""RunResult: the narrow waist between the engines and everything else.

Both frameworks write exactly these keys, with the same definitions (see
docs/definitions.md). The JSON file is the source of truth; the SQLite store
and the report are derived from it. Bump SCHEMA_VERSION on any breaking change.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes  # re-exported: older call sites import it from here
from parallel_vision.errors import ResultsError

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"

#: Keys every result.json has at top level.
TOP_LEVEL_KEYS = (
    "schema_version",
    "run_id",
    "status",
    "created_at",
    "config",
    "environment",
    "epochs",
    "summary",
    "timing",
    "classification_report",
    "confusion_matrix",
    "artifacts",
)

#: Keys of each per-epoch record.
EPOCH_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "epoch_time_s",
    "images_per_s",
    "data_time_s",
    "compute_time_s",
    "comm_time_s",
    "eval_time_s",
    "n_train_images",
    "n_test_evaluated",
)

#: Epoch keys newer results carry as well (docs/levers.md); older schema-1 files lack them.
#: comm_bytes: bytes one worker handed to the gradient all-reduce that epoch (torch DDP; null elsewhere).
OPTIONAL_EPOCH_KEYS = ("comm_bytes",)

#: Keys of the summary block that every complete result has.
REQUIRED_SUMMARY_KEYS = (
    "test_accuracy",
    "test_loss",
    "n_test_evaluated",
    "train_time_s",
    "mean_epoch_time_s",
    "mean_epoch_time_excl_warmup_s",
    "warmup_epoch_time_s",
    "images_per_s",
    "images_per_s_excl_warmup",
    "total_time_s",
    "epochs_completed",
    "world_size",
    "global_batch",
    "per_worker_batch",
    "steps_per_epoch",
    "n_train",
)
#: Summary keys the engines write as well; not required of older schema-1 files that predate them.
SUMMARY_KEYS = REQUIRED_SUMMARY_KEYS + ("peak_rss_mib_per_worker", "restarts")
#: Optional summary keys of the levers (docs/levers.md): present when the run used the option, else absent.
#: target_*: with --target-accuracy; comm_bytes_per_step: torch DDP; lr_effective etc.: every new result;
#: per_rank: torch DDP on the CPU, every rank's step-time distribution (results/stragglers.py).
LEVER_SUMMARY_KEYS = ("target_accuracy", "target_reached", "time_to_target_s", "epochs_to_target",
                      "comm_bytes_per_step", "lr_effective", "lr_schedule_used", "warmup_steps", "grad_accum",
                      "micro_batch", "per_rank")
#: Optional summary keys of what a worker holds and sends (docs/parallelism.md): every torch and JAX run records
#: some of them, the sharded and model-splitting strategies the rest.
PARALLELISM_SUMMARY_KEYS = ("state_bytes_per_worker", "activation_bytes_per_worker", "comm_bytes_by_op",
                            "n_parameters", "zero1_partition", "same_batch", "pipeline", "bubble_fraction")

#: Keys of the timing block (set-up costs kept out of the epoch clock).
TIMING_KEYS = (
    "startup_s",
    "data_load_s",
    "model_build_s",
    "compile_s",
    "eval_total_s",
    "final_eval_s",
)

STATUSES = ("complete", "incomplete")


def summarise_epochs(epochs: list[dict[str, Any]], total_time_s: float) -> dict[str, Any]:
    """The summary fields that follow from the epoch records by definition.

    Epoch time is the synchronised wall time of the training loop only; the first
    epoch is also reported alone as warm-up, and the "excl_warmup" figures drop it
    (they equal the plain ones when a run has a single epoch).
    """
    if not epochs:
        raise ResultsError("a run result needs at least one finished epoch")
    times = [float(e["epoch_time_s"]) for e in epochs]
    images = [int(e["n_train_images"]) for e in epochs]
    last = epochs[-1]
    steady_t = times[1:] or times
    steady_n = images[1:] or images
    return {
        "test_accuracy": last["test_accuracy"],
        "test_loss": last["test_loss"],
        "n_test_evaluated": last["n_test_evaluated"],
        "train_time_s": sum(times),
        "mean_epoch_time_s": sum(times) / len(times),
        "mean_epoch_time_excl_warmup_s": sum(steady_t) / len(steady_t),
        "warmup_epoch_time_s": times[0],
        "images_per_s": sum(images) / sum(times),
        "images_per_s_excl_warmup": sum(steady_n) / sum(steady_t),
        "total_time_s": total_time_s,
        "epochs_completed": len(epochs),
    }


def target_summary(target: float, epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """Time to accuracy: the training time (sum of epoch times, evaluation excluded) up to the end of the first
    epoch whose full-test-set accuracy reaches `target`, and that epoch's number; None (and `target_reached`
    False) when no finished epoch reached it."""
    elapsed = 0.0
    for record in epochs:
        elapsed += float(record["epoch_time_s"])
        accuracy = record.get("test_accuracy")
        if accuracy is not None and float(accuracy) >= target:
            return {"target_accuracy": target, "target_reached": True, "time_to_target_s": elapsed,
                    "epochs_to_target": int(record["epoch"])}
    return {"target_accuracy": target, "target_reached": False, "time_to_target_s": None, "epochs_to_target": None}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf; store them as null rather than write invalid JSON."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return _finite_or_none(obj)


def validate_result(data: Any, source: str = "result") -> dict[str, Any]:
    """Check a loaded result has the schema's shape; raise ResultsError naming what is wrong."""
    if not isinstance(data, dict):
        raise ResultsError(f"{source}: not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{source}: schema_version {version!r}, this version reads {SCHEMA_VERSION}")
    missing = [k for k in TOP_LEVEL_KEYS if k not in data]
    if missing:
        raise ResultsError(f"{source}: missing key(s) {', '.join(missing)}")
    if data["status"] not in STATUSES:
        raise ResultsError(f"{source}: status must be one of {STATUSES}, got {data['status']!r}")
    for i, epoch in enumerate(data["epochs"]):
        gaps = [k for k in EPOCH_KEYS if k not in epoch]
        if gaps:
            raise ResultsError(f"{source}: epoch record {i} lacks {', '.join(gaps)}")
    if data["status"] == "complete":
        gaps = [k for k in REQUIRED_SUMMARY_KEYS if k not in data["summary"]]
        if gaps:
            raise ResultsError(f"{source}: summary lacks {', '.join(gaps)}")
    return data


def write_result(data: dict[str, Any], out_dir: str | os.PathLike[str], *, kept: str | None = None) -> Path:
    """Validate and atomically write `out_dir/result.json` (`kept`: what a full disk leaves, for its message)."""
    cleaned = _clean(data)
    validate_result(cleaned, source=str(Path(out_dir) / RESULT_FILE))
    path = Path(out_dir) / RESULT_FILE
    atomic_write_bytes(path, (json.dumps(cleaned, indent=2, sort_keys=False) + "\n").encode(), kept=kept)
    return path


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate one result.json (a folder holding one is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such result file") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None
    return validate_result(data, source=str(path))
