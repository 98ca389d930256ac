"""`pvision project --strategy pipeline|tensor` (docs/projection.md, *Model parallelism*): the pipeline step
(m + p − 1 slowest-stage slots plus the exposed sends) and the tensor step (compute split N ways plus the forward
all-reduce) worked by hand from hand-made records, the refusal of more stages than blocks, and one real pipeline
run through the command."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from parallel_vision.errors import ConfigError
from parallel_vision.projection import mp_calibrate, records, root_inputs, store
from parallel_vision.projection.linktest import link_of, make_record
from parallel_vision.projection.model import Link
from parallel_vision.projection.mp_model import balanced_split, cut_elements, send_s
from shared_runs import TORCH_ACCUM4, TORCH_PIPELINE  # tests/ on sys.path

LINK = Link("test", 1e9, 10e-6)  # 1 GB/s each way, 10 µs a hop


def _run(path: str, batch: int, step: float, *, strategy: str = "single", workers: int = 1,
         summary: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"path": path, "workers": workers, "strategy": strategy, "config": {"extra": {}},
            "summary": {"per_worker_batch": batch, "steps_per_epoch": 4, "mean_epoch_time_excl_warmup_s": 4 * step,
                        **(summary or {})}}


def _linktest() -> dict[str, Any]:
    sizes = [4096, 65536, 1 << 20, 4 << 20, 16 << 20]
    return make_record({s: [2e-4 + s / 1e8] for s in sizes}, backend="gloo", device="cpu", world_size=2, nodes=1,
                       processes_per_node=1, host="h", created_at="2026-12-07T00:00:00+00:00")


# T_c(b) = 2.5 ms × b: 40 ms at a micro-batch of 16, 160 ms at 64
SINGLES = [_run("s16", 16, 0.04), _run("s64", 64, 0.16)]
PIPE = _run("pipe", 64, 0.8, strategy="pipeline", workers=2, summary={
    "comm_bytes_by_op": {"send_recv": 2 * 64 * 12544 * 4.0},  # rank 0: conv2's output out, its gradient back
    "pipeline": {"schedule": "1f1b", "microbatches": 4, "stages": 2, "micro_batch": 16,
                 "split": {"cuts": [2], "block_ms": [10.0, 50.0, 30.0, 5.0, 3.0, 2.0]},
                 "per_stage": [{"forward_ms": 200.0, "backward_ms": 400.0},
                               {"forward_ms": 100.0, "backward_ms": 200.0}]}})


def _inputs(model: str, runs: list[dict[str, Any]], strategy: str) -> root_inputs.Inputs:
    return root_inputs.Inputs(Path("."), model, "torch", 1.0, (1, 28, 28), 10, SINGLES, runs, [],
                              linktests=[_linktest()], strategy=strategy, backend="gloo")


def test_cut_widths_and_the_engines_split() -> None:
    # paper_cnn: conv1's 32×28×28, conv2's pooled 64×14×14, conv3's pooled 128×7×7, dense 128, 64
    assert cut_elements("paper_cnn") == [25088, 12544, 6272, 128, 64]
    assert cut_elements("wide_mlp") == [4096, 4096]
    assert cut_elements("resnet18")[-2:] == [8192, 512]  # layer4.1's input 512×4×4; the head's after pooling
    assert balanced_split([4, 20, 12, 2, 1.2, 0.8], 3) == [[0], [1], [2, 3, 4, 5]]
    with pytest.raises(ValueError):
        balanced_split([1.0, 2.0], 3)


def test_pipeline_step_worked_by_hand() -> None:
    doc = mp_calibrate.project(_inputs("paper_cnn", [PIPE], "pipeline"), [2, 3], LINK)
    two, three = doc["rows"]
    # p = 2, measured: the slowest stage (600 ms ÷ 4 micro-batches) in m + p − 1 = 5 slots, plus 2 sends of
    # conv2's output for a micro-batch of 16 (802 816 B at 1 GB/s + 10 µs) on the critical path
    assert two["stage_s"] == pytest.approx(0.15) and two["microbatches"] == 4 and two["bubble"] == pytest.approx(0.2)
    assert two["step_time_s"] == pytest.approx(5 * 0.15 + 2 * (10e-6 + 802816 / 1e9))
    assert two["step_time_high_s"] == pytest.approx(5 * 0.15 + 4 * 2 * (10e-6 + 802816 / 1e9))
    assert "measured" in two["stage_time_from"]
    # p = 3, modelled: T_c(16) = 40 ms split by the start-up block times [4, 20, 12, 2, 1.2, 0.8] ms; the engine's
    # cut [conv1 | conv2 | the rest] has its slowest stage at 20 ms; 6 slots; cuts after conv1 and conv2
    assert three["stage_s"] == pytest.approx(0.020) and three["bubble"] == pytest.approx(2 / 6)
    assert three["send_bytes"] == pytest.approx([25088 * 16 * 4, 12544 * 16 * 4])
    assert three["step_time_s"] == pytest.approx(6 * 0.020 + 2 * (2 * 10e-6 + (25088 + 12544) * 64 / 1e9))
    assert "modelled" in three["stage_time_from"] and three["speedup"] == pytest.approx(0.16 / three["step_time_s"])
    assert "×" in doc["calibration"]["notes"][2]  # the measured stage beside the block model's, at p = 2
    [m] = doc["measured"]  # the run over its linktest's link
    link = link_of(_linktest())
    want = 0.75 + 2 * send_s(802816, link)
    assert m["projected_step_s"] == pytest.approx(want) and m["error"] == pytest.approx(want / 0.8 - 1)
    assert m["stage_time_from_this_run"]
    # without a pipeline run: the blocks by FLOPs, m = 4·p
    flops = mp_calibrate.project(_inputs("paper_cnn", [], "pipeline"), [2], LINK)
    assert flops["rows"][0]["microbatches"] == 8 and "FLOPs" in flops["rows"][0]["stage_time_from"]


def test_pipeline_refuses_more_stages_than_blocks() -> None:
    for model, blocks in (("paper_cnn", 6), ("wide_mlp", 3), ("resnet18", 10)):
        mp_calibrate.project(_inputs(model, [], "pipeline"), [blocks], LINK)
        with pytest.raises(ConfigError, match=f"{model} has {blocks} pipeline blocks"):
            mp_calibrate.project(_inputs(model, [], "pipeline"), [2, blocks + 1], LINK)


def test_tensor_step_worked_by_hand() -> None:
    tensor = _run("tp", 64, 0.25, strategy="tensor", workers=2, summary={"comm_bytes_by_op": {
        "all_reduce": 64 * 4096 * 4.0, "send_recv": 0.0}})
    doc = mp_calibrate.project(_inputs("wide_mlp", [tensor], "tensor"), [1, 2, 4], LINK)
    one, two, four = doc["rows"]
    share = (784 * 4096 + 4096 * 4096) / (784 * 4096 + 4096 * 4096 + 4096 * 10)  # fc1, fc2 of all FLOPs
    assert two["sharded_share"] == pytest.approx(share)
    assert one["step_time_s"] == pytest.approx(0.16) and one["exposed_comm_s"] == 0.0
    # N = 2: half of the sharded compute, one ring all-reduce of 64 × 4096 × 4 B: S/B + 2α
    assert two["step_time_s"] == pytest.approx(0.16 * (1 - share / 2) + 1048576 / 1e9 + 2 * 10e-6)
    # N = 4: a quarter, 2(N−1)/N·S/B + 2(N−1)α
    assert four["step_time_s"] == pytest.approx(0.16 * (1 - 3 * share / 4) + 1.5 * 1048576 / 1e9 + 6 * 10e-6)
    assert four["step_time_low_s"] <= four["step_time_s"] <= four["step_time_high_s"]
    assert "backward" in doc["calibration"]["notes"][1]  # why one all-reduce, not Megatron's two
    assert doc["measured"][0]["run"] == "tp" and math.isfinite(doc["measured"][0]["error"])
    with pytest.raises(ConfigError, match="wide_mlp only"):
        mp_calibrate.project(_inputs("paper_cnn", [], "tensor"), [2], LINK)


def test_default_strategy_is_pipeline_for_a_root_of_pipeline_runs() -> None:
    assert records.default_strategy([SINGLES[0], PIPE]) == "pipeline"


def _pvision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "160"})


@pytest.mark.slow
def test_project_a_real_pipeline_run(trained: Any, tmp_path: Path) -> None:
    """test_pipeline.py's pair of runs (2 stages × 4 micro-batches of paper_cnn, and `single --grad-accum 4`,
    the 1-worker compute) through `pvision project --strategy pipeline`; 7 stages refused in one line."""
    pipe, accum = trained.together(TORCH_PIPELINE, TORCH_ACCUM4)
    shutil.copytree(pipe.out_dir, tmp_path / "pipe")
    shutil.copytree(accum.out_dir, tmp_path / "single")
    out = _pvision("project", str(tmp_path), "--link", "10gbe", "--workers", "2,3,6")
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / store.PROJECTION_FILE).read_text())
    assert doc["strategy"] == "pipeline" and [r["workers"] for r in doc["rows"]] == [2, 3, 6]
    two, three, six = doc["rows"]
    assert "measured" in two["stage_time_from"] and "block_ms" in three["stage_time_from"]
    assert doc["calibration"]["notes"][1].endswith("summary.comm_bytes_by_op.send_recv")
    for r in doc["rows"]:
        assert r["step_time_low_s"] <= r["step_time_s"] <= r["step_time_high_s"] and r["microbatches"] == 4
    assert six["bubble"] == pytest.approx(5 / 9)
    bad = _pvision("project", str(tmp_path), "--link", "10gbe", "--workers", "2,7")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "paper_cnn has 6 pipeline blocks" in bad.stderr and "Traceback" not in bad.stderr
    spread = _pvision("project", str(tmp_path), "--link", "10gbe", "--workers", "2", "--nodes", "1")
    assert spread.returncode == 2 and len(spread.stderr.strip().splitlines()) == 1
    assert "not modelled for pipeline" in spread.stderr
