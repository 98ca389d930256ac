"""The torch Trainer in-process: warm-up outside the clock must not change the run."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from parallel_vision.config import RunConfig  # noqa: E402
from parallel_vision.engines.common import EpochProgress  # noqa: E402
from parallel_vision.engines.torch.data import epoch_permutation, shard_slice  # noqa: E402
from parallel_vision.engines.torch.dist import Dist  # noqa: E402
from parallel_vision.engines.torch.loop import Trainer  # noqa: E402


def test_warm_up_restores_weights_optimizer_schedule_and_rng(data_dir: Path) -> None:
    cfg = RunConfig(limit_train=512, limit_test=100, batch_size=128, epochs=1, data_dir=str(data_dir),
                    device="cpu", lr_schedule="onecycle", lr=5e-3, dropout=0.25, tensorboard=False)
    plain = Trainer(cfg, Dist())
    record_plain = plain.run_epoch(0, EpochProgress(1, enabled=False))
    warmed = Trainer(cfg, Dist())
    warmed._warm_up()
    assert warmed.timing["compile_s"] > 0
    record_warmed = warmed.run_epoch(0, EpochProgress(1, enabled=False))
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert record_warmed[key] == record_plain[key], key
    pairs = zip(plain.bare_model.state_dict().items(), warmed.bare_model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert torch.equal(a, b), name


def test_shards_of_a_global_batch_partition_it_exactly() -> None:
    order = epoch_permutation(1000, seed=3, epoch=2)
    assert sorted(order.tolist()) == list(range(1000))
    assert not torch.equal(order, epoch_permutation(1000, seed=3, epoch=3))
    whole = order[shard_slice(2, 256, 0, 1)]
    parts = torch.cat([order[shard_slice(2, 256, r, 4)] for r in range(4)])
    assert torch.equal(whole, parts)


def test_powersgd_state_travels_with_the_trainer_state(data_dir: Path, tmp_path: Path) -> None:
    """PowerSGD's step counter, error feedback and warm-started Q are training state: a fresh Trainer given another
    one's mid-run state (as a resume or the warm-up's restore does) continues bit for bit, and one given the same
    state without the hook's part does not (which shows the comparison can fail)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cfg = RunConfig(strategy="ddp", workers=1, grad_compression="powersgd:1", limit_train=512, limit_test=100,
                        batch_size=128, epochs=2, data_dir=str(data_dir), device="cpu", dropout=0.25,
                        tensorboard=False)
        progress = EpochProgress(1, enabled=False)
        straight = Trainer(cfg, Dist(0, 0, 1))
        straight.run_epoch(0, progress)
        middle = straight.state_dict()
        hook = middle["comm_hook"]
        assert hook["iter"] == 4 and hook["error_dict"] and hook["q_memory_dict"]  # 4 steps, 2 of them compressed
        assert any(bool(e.abs().sum() > 0) for e in hook["error_dict"].values())
        straight.run_epoch(1, progress)

        def continued(state: dict[str, object]) -> dict[str, torch.Tensor]:
            trainer = Trainer(cfg, Dist(0, 0, 1))
            trainer.load_state_dict(state)
            trainer.run_epoch(1, progress)
            return trainer.bare_model.state_dict()

        resumed, without_hook = continued(middle), continued({**middle, "comm_hook": None})
        expected = straight.bare_model.state_dict()
        assert [k for k in expected if not torch.equal(expected[k], resumed[k])] == []
        assert [k for k in expected if not torch.equal(expected[k], without_hook[k])] != []
    finally:
        dist.destroy_process_group()
