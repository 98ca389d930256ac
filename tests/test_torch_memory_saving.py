"""The two memory options of the fused step (issue #31): the recomputed first block trains bit for bit like the
fused step on real MNIST and keeps only its input; the in-place BatchNorm backward stays within fp32 rounding."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from parallel_vision.models.torch_fused import fuse_bn_relu_pool  # noqa: E402
from parallel_vision.models.torch_recompute import RecomputedStemConv2d, recompute_stem  # noqa: E402
from parallel_vision.models.torch_zoo import build_torch_model  # noqa: E402
from saved_tensors import saved_bytes  # noqa: E402  (tests/ on sys.path)


def _real_batch(data_dir: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from parallel_vision.data import load

    images, labels = load("mnist", "train", data_dir)
    x = torch.from_numpy(images[:n]).float().div(255).sub(0.1307).div(0.3081).unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last), torch.from_numpy(labels[:n]).long()


def _fused_pair(seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    fused = build_torch_model("paper_cnn").to(memory_format=torch.channels_last)
    assert fuse_bn_relu_pool(fused) == 2
    recomputed = copy.deepcopy(fused)
    assert recompute_stem(recomputed) == 1
    return fused, recomputed


def test_recomputed_stem_trains_bit_identically_to_the_fused_step(data_dir: Path) -> None:
    """Three Adam steps on real MNIST batches: losses, gradients, weights and BatchNorm buffers equal exactly
    (the running statistics are updated once, not again by the recompute); evaluation equal; same state-dict keys."""
    fused, recomputed = _fused_pair(0)
    x, y = _real_batch(data_dir, 3 * 128)
    runs = []
    for model in (fused, recomputed):
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(7)  # the same dropout masks in both
        losses, grads = [], []
        for step in range(3):
            optim.zero_grad(set_to_none=True)
            batch = slice(step * 128, (step + 1) * 128)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            grads.append([p.grad.clone() for p in model.parameters()])
            optim.step()
            losses.append(loss.item())
        runs.append((losses, grads))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        assert all(torch.equal(g, h) for g, h in zip(a, b, strict=True))
    state, state_r = fused.state_dict(), recomputed.state_dict()
    assert state.keys() == state_r.keys()
    assert all(torch.equal(value, state_r[key]) for key, value in state.items())
    assert int(state_r["features.1.num_batches_tracked"]) == 3
    fused.eval()
    recomputed.eval()
    with torch.no_grad():
        assert torch.equal(fused(x[:64]), recomputed(x[:64]))


def test_recomputed_stem_keeps_neither_map_of_the_first_block() -> None:
    """Autograd no longer holds the first block's conv output and ReLU output (2 × 32×28×28 floats per image)."""
    fused, recomputed = _fused_pair(0)
    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    maps = 2 * 64 * 32 * 28 * 28 * 4
    # Small change besides: the BatchNorm's batch statistics are not kept, the three biases are.
    assert abs(saved_bytes(fused, x) - saved_bytes(recomputed, x) - maps) < 1024
    assert sum(isinstance(m, RecomputedStemConv2d) for m in recomputed.modules()) == 1


def test_inplace_bn_backward_is_within_fp32_rounding_of_the_reference() -> None:
    """Against the float64 reference modules, the in-place input gradient (and the weight and bias gradients) err
    no more than twice as much as ATen's own fp32 kernel does; the forward is unchanged bit for bit."""
    torch.manual_seed(3)
    reference = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2))
    with torch.no_grad():
        reference[0].weight.uniform_(0.5, 1.5)
        reference[0].bias.uniform_(-0.5, 0.5)
    aten, inplace = copy.deepcopy(reference), copy.deepcopy(reference)
    fuse_bn_relu_pool(aten)
    fuse_bn_relu_pool(inplace, inplace_backward=True)
    x = (torch.randn(32, 16, 12, 12) * 3 + 1).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(32, 16, 6, 6)
    results = []
    for block in (reference.double(), aten, inplace):
        inp = x.to(block[0].weight.dtype).requires_grad_()
        out = block(inp)
        out.backward(upstream.to(out.dtype))
        results.append((out.detach(), inp.grad, block[0].weight.grad, block[0].bias.grad))
    assert torch.equal(results[1][0], results[2][0])
    for exact, ours, new in zip(*results, strict=True):
        scale = exact.abs().max().item()
        err_aten = (ours.double() - exact).abs().max().item()
        err_new = (new.double() - exact).abs().max().item()
        assert err_new <= 2 * err_aten + 1e-6 * scale, (err_new, err_aten, scale)


def test_under_bf16_autocast_the_inplace_option_takes_atens_kernel() -> None:
    """bf16 activations with fp32 parameters: the in-place passes would run mixed-dtype (slower than ATen's bf16
    kernel), so the option falls back to ATen's backward there, bit for bit."""
    torch.manual_seed(5)
    base = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
    aten, inplace = copy.deepcopy(base), copy.deepcopy(base)
    fuse_bn_relu_pool(aten)
    fuse_bn_relu_pool(inplace, inplace_backward=True)
    x = torch.randn(16, 1, 12, 12).contiguous(memory_format=torch.channels_last)
    grads = []
    for model in (aten, inplace):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        assert out.dtype == torch.bfloat16
        out.float().square().sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_the_config_knobs_build_the_options() -> None:
    from parallel_vision.config import RunConfig
    from parallel_vision.engines.torch import build

    cfg = RunConfig(framework="torch", recompute_stem=True, inplace_bn_backward=True, device="cpu")
    model = build.build_model(cfg, (1, 28, 28), 10, torch.device("cpu"))
    assert sum(isinstance(m, RecomputedStemConv2d) for m in model.modules()) == 1
    assert [m.inplace_backward for m in model.modules() if hasattr(m, "inplace_backward")] == [True, True]
