"""The fused BatchNorm → ReLU → max-pool step: gradients checked against finite differences and against
the reference modules bit for bit on real MNIST batches, state-dict compatibility, what it keeps."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from parallel_vision.models.torch_fused import BatchNormReLUMaxPool2d, fuse_bn_relu_pool  # noqa: E402
from parallel_vision.models.torch_zoo import build_torch_model  # noqa: E402
from saved_tensors import saved_bytes  # noqa: E402  (tests/ on sys.path)

LAYOUTS = [torch.channels_last, torch.contiguous_format]


def _reference_block(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.MaxPool2d(2))


@pytest.mark.parametrize("layout", LAYOUTS, ids=["channels_last", "contiguous"])
def test_gradcheck_fp64(layout: torch.memory_format) -> None:
    """Against finite differences in float64 (input, weight and bias), both memory layouts."""
    torch.manual_seed(0)
    block = _reference_block(3).double()
    fuse_bn_relu_pool(block)
    fused = block[0]
    assert isinstance(fused, BatchNormReLUMaxPool2d)
    with torch.no_grad():
        fused.weight.uniform_(0.5, 1.5)
        fused.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()

    def f(inp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(fused, {"weight": weight, "bias": bias}, (inp,))

    w = fused.weight.detach().clone().requires_grad_()
    b = fused.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-5)


def test_fused_block_gradient_equals_reference_module_gradient_exactly() -> None:
    torch.manual_seed(1)
    reference = _reference_block(8)
    fused = copy.deepcopy(reference)
    assert fuse_bn_relu_pool(fused) == 1
    x = torch.randn(16, 8, 10, 10).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(16, 8, 5, 5)  # contiguous, as after a Flatten: the fused step re-lays it out
    grads = []
    for block in (reference, fused):
        inp = x.clone().requires_grad_()
        out = block(inp)
        out.backward(upstream)
        grads.append((out.detach(), inp.grad, block[0].weight.grad, block[0].bias.grad, block[0].running_var))
    for ref, new in zip(*grads, strict=True):
        assert torch.equal(ref, new)


def _paper_cnn_pair(seed: int, layout: torch.memory_format = torch.channels_last) -> tuple[nn.Module, nn.Module]:
    """The paper CNN with the reference modules, and a copy of it (same weights) with the fused step."""
    torch.manual_seed(seed)
    reference = build_torch_model("paper_cnn").to(memory_format=layout)
    fused = copy.deepcopy(reference)
    assert fuse_bn_relu_pool(fused) == 2
    return reference, fused


def _real_batch(data_dir: Path, n: int, layout: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
    from parallel_vision.data import load

    images, labels = load("mnist", "train", data_dir)
    x = torch.from_numpy(images[:n]).float().div(255).sub(0.1307).div(0.3081).unsqueeze(1)
    return x.contiguous(memory_format=layout), torch.from_numpy(labels[:n]).long()


@pytest.mark.parametrize("layout", LAYOUTS, ids=["channels_last", "contiguous"])
def test_paper_cnn_trains_bit_identically_fused_and_reference(data_dir: Path, layout: torch.memory_format) -> None:
    """Three Adam steps on real MNIST batches: losses, every weight and every BatchNorm buffer equal exactly."""
    reference, fused = _paper_cnn_pair(0, layout)
    x, y = _real_batch(data_dir, 3 * 128, layout)
    losses = []
    for model in (reference, fused):
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(7)  # the same dropout masks in both
        run = []
        for step in range(3):
            optim.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[step * 128:(step + 1) * 128]), y[step * 128:(step + 1) * 128])
            loss.backward()
            optim.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0] == losses[1]
    ref_state, fused_state = reference.state_dict(), fused.state_dict()
    assert ref_state.keys() == fused_state.keys()
    for key, value in ref_state.items():
        assert torch.equal(value, fused_state[key]), key
    reference.eval()
    fused.eval()
    with torch.no_grad():
        assert torch.equal(reference(x[:64]), fused(x[:64]))


def test_bf16_autocast_matches_reference() -> None:
    reference, fused = _paper_cnn_pair(2)
    x = torch.randn(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    grads = []
    for model in (reference, fused):
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        grads.append([p.grad for p in model.parameters()])
    for ref, new in zip(*grads, strict=True):
        assert torch.equal(ref, new)


def test_keeps_less_for_backward() -> None:
    """What autograd holds after the forward pass: the full-size ReLU outputs of the pooled blocks are gone."""
    reference, fused = _paper_cnn_pair(0)
    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)

    # Gone: block 2's ReLU output (64×28×28 floats per image) and block 3's (128×14×14); kept in their
    # place: block 3's pooled output (128×7×7, for the ReLU mask; block 2's is the next conv's input anyway).
    # The pool indices (64×14×14 and 128×7×7) are kept as int16 instead of int64: 6 bytes less each.
    floats = 64 * 28 * 28 + 128 * 14 * 14 - 128 * 7 * 7
    indices = 64 * 14 * 14 + 128 * 7 * 7
    assert saved_bytes(reference, x) - saved_bytes(fused, x) == 64 * (floats * 4 + indices * 6)


def test_only_bn_relu_pool2_runs_are_fused() -> None:
    assert fuse_bn_relu_pool(build_torch_model("resnet18", 3, 32)) == 0  # no pool after its BatchNorms
    assert fuse_bn_relu_pool(build_torch_model("wide_mlp")) == 0
    odd = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3),
                        nn.BatchNorm2d(4, affine=False), nn.ReLU(), nn.MaxPool2d(2),
                        nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2, stride=1))
    assert fuse_bn_relu_pool(odd) == 0


def test_evaluation_and_frozen_statistics_use_the_reference_functions() -> None:
    torch.manual_seed(4)
    reference = _reference_block(4)
    fused = copy.deepcopy(reference)
    fuse_bn_relu_pool(fused)
    x = torch.randn(8, 4, 6, 6)
    reference.train()
    fused.train()
    reference(x)
    fused(x)
    assert torch.equal(reference[0].running_mean, fused[0].running_mean)
    assert int(reference[0].num_batches_tracked) == int(fused[0].num_batches_tracked) == 1
    reference.eval()
    fused.eval()
    with torch.no_grad():
        assert torch.equal(reference(x), fused(x))
