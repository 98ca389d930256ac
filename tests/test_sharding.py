"""The sharded strategies, zero1 and fsdp: the same training as ddp, less state per worker, measured.

Parity: with dropout off and SGD with momentum, 2 workers of zero1 and of fsdp end 4 steps of wide_mlp with
the parameters ddp ends with, to fp32 rounding (measured on torch 2.13 CPU/gloo: identical, max |Δ| = 0). The
state each worker holds is counted from its tensors and compared with what sharding must give: fsdp's
parameters, gradients and optimizer state are each half of ddp's; zero1's optimizer state is that of the
parameters its share names (ZeroRedundancyOptimizer's greedy split: uneven when one tensor dominates). The
same runs serve every test here (SGD keeps one momentum buffer per parameter; Adam's two change only the factor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError
from shared_runs import WIDE_SGD, WIDE_SGD_RUNS  # tests/ on sys.path

pytestmark = pytest.mark.slow

#: 4 steps of 128 on wide_mlp (20 M parameters: its 4096 × 4096 layer is 84 % of them); no dropout, SGD.
PARITY: dict[str, object] = WIDE_SGD  # shared with test_report_sharding.py, which reports these same runs


@pytest.fixture(scope="module")
def trained(trained: Any) -> Any:
    """The session's `trained` (tests/conftest.py), once every WIDE_SGD run is trained: all at once, here or already
    by test_report_sharding.py. A new strategy's case on WIDE_SGD goes in shared_runs.WIDE_SGD_RUNS to train with
    them."""
    trained.together(*WIDE_SGD_RUNS)
    return trained


def initial_weights(cfg: RunConfig) -> dict[str, torch.Tensor]:
    from parallel_vision.engines.torch.build import build_model

    return build_model(cfg, (1, 28, 28), 10, torch.device("cpu")).state_dict()


def weights(result: Any) -> dict[str, torch.Tensor]:
    return torch.load(Path(result.out_dir) / "model.pt", weights_only=True)


@pytest.mark.parametrize("strategy", ["zero1", "fsdp"])
def test_sharded_training_ends_with_ddps_parameters(trained: Any, strategy: str) -> None:
    ddp, sharded = weights(trained(strategy="ddp", **PARITY)), weights(trained(strategy=strategy, **PARITY))
    assert ddp.keys() == sharded.keys()  # model.pt is the plain model's state dict: no `module.`, no shards
    worst = max(float((ddp[k].double() - sharded[k].double()).abs().max()) for k in ddp if ddp[k].numel())
    assert worst <= 1e-6, f"{strategy} differs from ddp by {worst}"
    # 4 SGD steps moved the weights by far more than the tolerance: a gradient off by the world size would show
    start = initial_weights(RunConfig(strategy="ddp", **PARITY))  # type: ignore[arg-type]
    moved = max(float((ddp[k].double() - start[k].double()).abs().max()) for k in ddp if ddp[k].is_floating_point())
    assert moved > 1e-3


def state(result: Any) -> dict[str, Any]:
    return result.data["summary"]["state_bytes_per_worker"]


def test_fsdp_holds_half_of_ddps_state_per_worker_and_gathers_one_unit_at_a_time(trained: Any) -> None:
    ddp, fsdp = trained(strategy="ddp", **PARITY), trained(strategy="fsdp", **PARITY)
    full, half = state(ddp), state(fsdp)
    n = ddp.data["summary"]["n_parameters"]
    assert n == fsdp.data["summary"]["n_parameters"] == 20_054_026
    assert full["parameters"] == full["gradients"] == 4 * n
    assert full["optimizer"] == 4 * n  # SGD's momentum buffer
    for kind in ("parameters", "gradients", "optimizer"):
        # each rank holds its shard: half, give or take the padding of odd-sized dimensions
        assert 0.49 * full[kind] <= half[kind] <= 0.51 * full[kind], kind
    assert half["total"] <= 0.6 * full["total"]
    # resharded after forward: at most the 4096 x 4096 unit (+ the root's BatchNorm, a prefetched unit) is
    # gathered at once, never the whole model
    largest_unit = 4096 * 4096 * 4 + 4096 * 4
    assert largest_unit <= half["unsharded_peak"] < 4 * n
    assert full["unsharded_peak"] is None
    # the collectives that moved the bytes: fsdp all-gathers forward and backward, reduce-scatters once
    by_op = fsdp.data["summary"]["comm_bytes_by_op"]
    assert by_op["all_gather"] == pytest.approx(2 * 4 * n, rel=0.01)
    assert by_op["reduce_scatter"] == pytest.approx(4 * n, rel=0.01)
    assert ddp.data["summary"]["comm_bytes_by_op"]["all_reduce"] == pytest.approx(4 * n, rel=0.01)
    # and the same model came out of it
    assert fsdp.data["summary"]["test_accuracy"] == ddp.data["summary"]["test_accuracy"]


def test_zero1_holds_the_optimizer_state_of_its_share_and_broadcasts_the_update(trained: Any) -> None:
    ddp, zero1 = trained(strategy="ddp", **PARITY), trained(strategy="zero1", **PARITY)
    full, mine = state(ddp), state(zero1)
    n = ddp.data["summary"]["n_parameters"]
    shares = zero1.data["summary"]["zero1_partition"]
    assert sum(shares) == 4 * n and len(shares) == 2
    assert max(shares) == 4096 * 4096 * 4  # the greedy split: the big layer alone on one rank
    for rank, share in enumerate(shares):
        held = mine["per_rank"][rank]
        assert held["optimizer"] == share  # the momentum buffers of its share
        assert held["parameters"] == held["gradients"] == 4 * n  # replicated, as under ddp
    assert mine["optimizer"] < full["optimizer"]
    by_op = zero1.data["summary"]["comm_bytes_by_op"]
    assert by_op["all_reduce"] == pytest.approx(4 * n, rel=0.01)
    assert by_op["broadcast"] == pytest.approx(4 * n, rel=0.01)


@pytest.mark.parametrize(("changes", "words"), [
    ({"strategy": "fsdp", "workers": 1}, "needs at least 2"),
    ({"strategy": "zero1", "workers": 1}, "needs at least 2"),
    ({"framework": "tensorflow", "strategy": "fsdp", "workers": 2}, "TensorFlow has no supported sharded strategy"),
    ({"framework": "jax", "strategy": "zero1", "workers": 2}, "model parallelism"),
    ({"strategy": "fsdp", "workers": 2, "precision": "fp16"}, "use bf16"),
    ({"strategy": "fsdp", "workers": 2, "grad_compression": "fp16"}, "reduce-scatter"),
    ({"strategy": "fsdp", "workers": 2, "sync_batchnorm": True}, "does not support"),
    ({"strategy": "ddp", "workers": 2, "reshard_after_forward": False}, "fsdp only"),
])
def test_impossible_sharded_configs_are_refused_in_one_line(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        RunConfig(**changes)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_bf16_autocast_under_fsdp_keeps_its_collectives_in_fp32(trained: Any) -> None:
    """Over gloo, only fp32 is communicated: bf16 is autocast's compute type; parameters, gradients and so the
    all-gathers and reduce-scatters stay fp32 (4 bytes a parameter), and the model trains as in fp32."""
    fp32, bf16 = trained(strategy="fsdp", **PARITY), trained(strategy="fsdp", precision="bf16", **PARITY)
    n = bf16.data["summary"]["n_parameters"]
    by_op = bf16.data["summary"]["comm_bytes_by_op"]
    assert by_op["all_gather"] == pytest.approx(2 * 4 * n, rel=0.01)
    assert by_op["reduce_scatter"] == pytest.approx(4 * n, rel=0.01)
    assert abs(bf16.data["summary"]["test_accuracy"] - fp32.data["summary"]["test_accuracy"]) <= 0.05
