"""The paper's CNN in PyTorch: Fig. 2's parameter count and shapes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from parallel_vision.models.torch_cnn import PAPER_TOTAL_PARAMETERS, PaperCNN, count_parameters  # noqa: E402


def test_parameter_count_matches_figure_2() -> None:
    model = PaperCNN()
    assert count_parameters(model) == PAPER_TOTAL_PARAMETERS == 906_186
    trainable = sum(p.numel() for p in model.parameters())
    # Keras counts BN moving mean/var (2 × (32+64+128+128+64) = 832) as non-trainable parameters.
    assert trainable == 906_186 - 832


def test_forward_gives_logits_per_class() -> None:
    model = PaperCNN().eval()
    out = model(torch.zeros(3, 1, 28, 28))
    assert out.shape == (3, 10)


def test_other_image_sizes_and_channels_fit() -> None:
    model = PaperCNN(in_channels=3, image_size=32, num_classes=100).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_the_torch_engine_has_code_for_every_torch_row_of_the_strategy_table() -> None:
    """A strategy declared in the table without its engine code (or the reverse) fails here, not in a run."""
    from parallel_vision import strategies
    from parallel_vision.engines.torch.build import WRAPPERS

    assert tuple(WRAPPERS) == strategies.strategies_of("torch")
