"""Strategy tensor (torch tensor parallelism on wide_mlp): the same training as one worker, half the hidden
layers' state per worker, one activation all-reduce per step, refusals in one line.

Parity: with dropout off and SGD with momentum, 2 workers of tensor end 4 steps of 128 with the parameters and
the training loss `single` ends with, to fp32 rounding: max |Δ| ≤ 4e-7 measured on torch 2.13 CPU/gloo, except
one of fc2's 4096 output features whose ReLU input fell on the other side of 0 for one image (fc2's row-parallel
sum adds its two halves in another order): its row of fc2 and its bn2 entries differ by up to 9.3e-6.
test_accuracy_contract.py reloads the tensor run's model.pt.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError
from shared_runs import TORCH_TENSOR, WIDE_SGD_SINGLE  # tests/ on sys.path

pytestmark = pytest.mark.slow


#: fp32 rounding after 4 steps; what a wrong scaling or a split batch would change is 1e-3 and more.
TOLERANCE = 1e-6
#: The per-feature tensors of fc2's output (bn2's): a flipped ReLU changes their entry of that feature.
SECOND_LAYER = ("fc2.bias", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var")


def weights(result: Any) -> dict[str, torch.Tensor]:
    return torch.load(Path(result.out_dir) / "model.pt", weights_only=True)


@pytest.fixture(scope="module")
def runs(trained: Any) -> tuple[Any, Any]:
    """(single, tensor), trained at once."""
    single, tensor = trained.together(WIDE_SGD_SINGLE, TORCH_TENSOR)
    return single, tensor


def test_tensor_parallel_training_ends_with_singles_parameters(runs: tuple[Any, Any]) -> None:
    single, tensor = runs
    one, two = weights(single), weights(tensor)
    assert one.keys() == two.keys()  # model.pt is the plain model's state dict, every DTensor gathered
    assert all(one[k].shape == two[k].shape for k in one)
    off = {k: (one[k].double() - two[k].double()).abs() for k in one if one[k].is_floating_point()}
    # fc2's output features whose ReLU input rounded to the other side of 0 in one run (fc2's row-parallel sum
    # adds its halves in another order): that sample's gradient is in one run and not the other, for that feature
    flipped = set(off["fc2.weight"].amax(1).gt(TOLERANCE).nonzero().flatten().tolist())
    for k in SECOND_LAYER:
        flipped |= set(off[k].gt(TOLERANCE).nonzero().flatten().tolist())
    assert len(flipped) <= 2, f"{len(flipped)} of fc2's features differ"
    for k, d in off.items():
        assert float(d.max()) <= 1e-4, (k, float(d.max()))
        if k in SECOND_LAYER or k == "fc2.weight":
            d = d.clone()
            d[sorted(flipped)] = 0
        assert float(d.max()) <= TOLERANCE, (k, float(d.max()))
    from parallel_vision.engines.torch.build import build_model  # 4 SGD steps moved the weights far more

    start = build_model(RunConfig(**WIDE_SGD_SINGLE), (1, 28, 28), 10, torch.device("cpu")).state_dict()  # type: ignore[arg-type]
    assert max(float((one[k].double() - start[k].double()).abs().max()) for k in off) > 1e-3
    # the group trained on each image once: the same loss, image count and evaluation as one worker
    a, b = single.data["epochs"][0], tensor.data["epochs"][0]
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6)
    assert a["n_train_images"] == b["n_train_images"] == 512
    assert b["n_test_evaluated"] == 200
    assert tensor.data["summary"]["test_accuracy"] == single.data["summary"]["test_accuracy"]


def test_each_worker_holds_its_half_of_the_hidden_layers_and_all_reduces_the_activations_once(
        runs: tuple[Any, Any]) -> None:
    single, tensor = runs
    summary = tensor.data["summary"]
    # fc1 (weight rows, bias), bn1 (weight, bias) and fc2's weight columns are split in two; fc2's bias, bn2 and
    # fc3 are replicated. From the model's shapes, in fp32 bytes:
    split = 4096 * 784 + 4096 + 2 * 4096 + 4096 * 4096
    replicated = 4096 + 2 * 4096 + 10 * 4096 + 10
    assert summary["n_parameters"] == split + replicated == 20_054_026
    held = summary["state_bytes_per_worker"]
    for rank in held["per_rank"]:
        assert rank["parameters"] == rank["gradients"] == rank["optimizer"] == 4 * (split // 2 + replicated)
    full = single.data["summary"]["state_bytes_per_worker"]
    assert full["parameters"] == 4 * (split + replicated)
    # one all-reduce of fc2's (batch x 4096) fp32 partial output per step, forward only: DTensor issues it as a
    # functional collective (funcol.all_reduce), which torch.distributed.all_reduce's wrapper alone would miss;
    # backward has none (fc1's input gradient, ColwiseParallel's all-reduce, is not needed for images)
    assert summary["comm_bytes_by_op"] == {"all_reduce": 128 * 4096 * 4, "all_gather": 0, "reduce_scatter": 0,
                                           "broadcast": 0, "send_recv": 0}
    assert summary["per_worker_batch"] == 128 and "whole global batch" in summary["same_batch"]


@pytest.mark.parametrize(("changes", "words"), [
    ({"model": "paper_cnn"}, "does not support model paper_cnn; it supports wide_mlp (ColwiseParallel"),
    ({"model": "resnet18"}, "does not support model resnet18"),
    ({"workers": 1}, "needs at least 2"),
    ({"precision": "fp16"}, "use bf16"),
    ({"grad_compression": "fp16"}, "all-reduces activations, not gradients"),
    ({"sync_batchnorm": True}, "already normalises over the whole batch"),
    ({"framework": "tensorflow"}, "TensorFlow has no tensor strategy: tensor parallelism is torch's"),
    ({"framework": "jax"}, "JAX has no tensor strategy: tensor parallelism is torch's"),
])
def test_what_tensor_cannot_honour_is_refused_in_one_line(changes: dict[str, object], words: str) -> None:
    config = {"strategy": "tensor", "workers": 2, "model": "wide_mlp", **changes}
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")) as caught:
        RunConfig(**config)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_the_cli_refuses_a_conv_model_before_any_worker_starts() -> None:
    proc = subprocess.run([sys.executable, "-m", "parallel_vision", "train", "-f", "torch", "-s", "tensor", "-n", "2",
                           "-m", "paper_cnn"], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("pvision: error: torch's tensor strategy does not support model paper_cnn")
