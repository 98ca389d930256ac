"""`pvision bench`: expand a preset or explicit matrix into RunConfigs and run them one at a time."""

from parallel_vision.bench.matrix import PlannedRun, expand
from parallel_vision.bench.presets import PRESETS, BenchSpec, get_preset
from parallel_vision.bench.runner import BenchOutcome, run_bench

__all__ = ["PRESETS", "BenchOutcome", "BenchSpec", "PlannedRun", "expand", "get_preset", "run_bench"]
