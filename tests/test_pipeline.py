"""The pipeline strategy: the same training as `single --grad-accum M`, split over stages, measured.

Parity: BatchNorm under a pipeline normalises each micro-batch alone, as gradient accumulation does in one process,
and the schedule's per-micro-batch mean loss with its gradients divided by M is accumulation's loss ÷ M. So 2 stages
× 4 micro-batches of paper_cnn end 4 SGD steps with `single --grad-accum 4`'s weights and BatchNorm statistics
(measured on torch 2.13 CPU/gloo at one thread per process: identical, max |Δ| = 0). The same run is checked for
the contract (model.pt is the plain model, the accuracy is its predictions') and for what it measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from parallel_vision.config import RunConfig
from parallel_vision.data import load
from parallel_vision.errors import ConfigError
from parallel_vision.models.catalog import MODEL_NAMES, pipeline_blocks
from shared_runs import TORCH_ACCUM4, TORCH_PIPELINE  # tests/ on sys.path


def weights(result: Any) -> dict[str, torch.Tensor]:
    return torch.load(Path(result.out_dir) / "model.pt", weights_only=True)


@pytest.fixture(scope="module")
def runs(trained: Any) -> tuple[Any, Any]:
    """(pipeline, single --grad-accum 4), trained at once."""
    pipe, accum = trained.together(TORCH_PIPELINE, TORCH_ACCUM4)
    return pipe, accum


@pytest.mark.slow
def test_pipeline_ends_with_the_weights_of_gradient_accumulation(runs: tuple[Any, Any]) -> None:
    pipe, accum = (weights(r) for r in runs)
    assert pipe.keys() == accum.keys()  # the stages' state dicts merged under the plain model's names
    worst = max(float((pipe[k].double() - accum[k].double()).abs().max()) for k in pipe if pipe[k].numel())
    assert worst <= 1e-5, f"pipeline differs from single --grad-accum 4 by {worst}"
    from parallel_vision.engines.torch.build import build_model

    start = build_model(RunConfig(**TORCH_ACCUM4), (1, 28, 28), 10, torch.device("cpu")).state_dict()  # type: ignore[arg-type]
    moved = max(float((pipe[k].double() - start[k].double()).abs().max()) for k in pipe if pipe[k].is_floating_point())
    assert moved > 1e-3  # 4 steps moved the weights far beyond the tolerance: a loss scaled by M would show


@pytest.mark.slow
def test_a_pipeline_run_reports_its_model_its_split_and_its_bubble(runs: tuple[Any, Any], data_dir: Path) -> None:
    pipe = runs[0]
    summary = pipe.data["summary"]
    predictions = np.load(Path(pipe.out_dir) / "predictions.npy")
    labels = load("mnist", "test", data_dir)[1][:100]
    assert len(predictions) == 100  # every test image once, from the last stage
    assert summary["test_accuracy"] == float(np.mean(predictions == labels))
    info = summary["pipeline"]
    assert (info["schedule"], info["microbatches"], info["stages"], info["micro_batch"]) == ("1f1b", 4, 2, 16)
    blocks = [b for stage in info["split"]["stages"] for b in stage["blocks"]]
    assert blocks == [b[0] for b in pipeline_blocks("paper_cnn")]  # every block once, in order
    assert len(info["split"]["block_ms"]) == 6 and all(ms > 0 for ms in info["split"]["block_ms"])
    assert sum(info["parameters_per_stage"]) == summary["n_parameters"]
    assert 0.0 < summary["bubble_fraction"] < 1.0
    assert info["bubble_formula"] == pytest.approx(1 / 5, abs=1e-4)
    assert [s["stage"] for s in info["per_stage"]] == [0, 1]
    assert all(s["forward_ms"] > 0 and s["backward_ms"] > 0 for s in info["per_stage"])
    # 1F1B holds at most (stages from here on) micro-batches' activations at once: 2 on stage 0, 1 on the last
    assert [s["most_microbatches_in_flight"] for s in info["per_stage"]] == [2, 1]
    # Each step the activations at the cut go forward and their gradients back: 2 x batch x the cut's width, fp32.
    cut = info["split"]["cuts"][0]
    width = {1: 32 * 28 * 28, 2: 64 * 14 * 14, 3: 128 * 7 * 7 * 1, 4: 128, 5: 64}[cut]
    assert summary["comm_bytes_by_op"]["send_recv"] == 2 * 64 * width * 4
    held = summary["state_bytes_per_worker"]["per_rank"]
    assert [h["parameters"] for h in held] == [4 * n for n in info["parameters_per_stage"]]


def test_the_blocks_run_in_order_are_the_model() -> None:
    from parallel_vision.engines.torch.pipeline import balanced_cuts, model_blocks
    from parallel_vision.models.torch_zoo import build_torch_model

    for name in MODEL_NAMES:
        model = build_torch_model(name, 1, 28, 10).eval()
        blocks = model_blocks(model)
        assert len(blocks) == len(pipeline_blocks(name)), name
        x = torch.rand(2, 1, 28, 28)
        h = x
        for block in blocks:
            for _, module in block:
                h = module(h)
        assert torch.equal(h, model(x)), name
    assert balanced_cuts([1, 1, 1, 1], 2) == [2]
    assert balanced_cuts([3, 16, 0.1], 2) == [1]  # wide_mlp's shape: the 4096 x 4096 layer alone is the slowest
    assert balanced_cuts([2, 2, 1, 1, 1, 1], 3) == [1, 3]  # 2 | 2 1 | 1 1 1: the only split at 3


@pytest.mark.parametrize(("changes", "words"), [
    ({"grad_accum": 2}, "micro-batches .* already are the accumulation"),
    ({"batch_size": 60, "microbatches": 8}, "does not divide into 8 pipeline micro-batches"),
    ({"workers": 4, "model": "wide_mlp", "microbatches": 4}, "wide_mlp has 3 blocks"),
    ({"microbatches": 1}, "1f1b needs at least one micro-batch per stage"),
    ({"pipeline_schedule": "zigzag"}, "1f1b or gpipe"),
    ({"strategy": "ddp", "microbatches": 4}, "--microbatches applies to strategy pipeline only"),
    ({"strategy": "ddp", "pipeline_schedule": "gpipe"}, "--pipeline-schedule applies to strategy pipeline only"),
    ({"framework": "tensorflow", "strategy": "pipeline"}, "TensorFlow has no pipeline strategy .*torch's"),
    ({"framework": "jax", "strategy": "pipeline"}, "JAX has no pipeline strategy .*torch's"),
    ({"workers": 1}, "needs at least 2"),
    ({"compile": True}, "--compile is not supported with strategy pipeline"),
])
def test_impossible_pipeline_configs_are_refused_in_one_line(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        RunConfig(**{"strategy": "pipeline", "workers": 2, "batch_size": 64, **changes})  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_the_cli_refuses_before_any_worker_starts(tmp_path: Path) -> None:
    """The options reach the configuration, which refuses before anything runs (the CLI prints a ConfigError as one
    line and exits 2: tests/test_bad_input.py)."""
    import typer
    from typer.testing import CliRunner

    from parallel_vision.cli import train_cmd

    app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
    train_cmd.register(app)
    app.command("unused")(lambda: None)
    refused = CliRunner().invoke(app, ["train", "-s", "pipeline", "-n", "2", "--batch-size", "100", "--microbatches",
                                       "8", "-o", str(tmp_path / "run")])
    assert isinstance(refused.exception, ConfigError) and "8 pipeline micro-batches" in str(refused.exception)
    assert not (tmp_path / "run").exists()
