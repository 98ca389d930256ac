"""The torch training loop in-process on synthetic tensors: seconds, no dataset, no subprocess.

A Trainer's data is replaced by random images (the Flax MNIST example's habit of a one-epoch run
on mock data), so these tests check the loop itself: the epoch record, `Dist` at world size 1,
the state_dict round trip the warm-up, checkpoints and resume are built on, and a stop-and-resume
that continues bit for bit.
"""

from __future__ import annotations

import ast
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from parallel_vision.config import RunConfig  # noqa: E402
from parallel_vision.engines.common import EpochProgress  # noqa: E402
from parallel_vision.engines.torch import checkpoint, loop  # noqa: E402
from parallel_vision.engines.torch.data import DeviceData  # noqa: E402
from parallel_vision.engines.torch.dist import Dist  # noqa: E402
from parallel_vision.engines.torch.loop import Stopped, Trainer  # noqa: E402
from parallel_vision.results import schema  # noqa: E402
from parallel_vision.signals import StopRequest  # noqa: E402

N_TRAIN, N_TEST = 256, 100
TORCH_PACKAGE = Path(loop.__file__).parent


def synthetic(split: str, device: Any) -> DeviceData:
    """Random uint8 MNIST-shaped images with random labels, the same for a given split."""
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = N_TRAIN if split == "train" else N_TEST
    pixels = torch.randint(0, 256, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=generator, dtype=torch.int64)
    return DeviceData(pixels.to(device), labels.to(device), [str(c) for c in range(10)], 0.1307, 0.3081, False)


@pytest.fixture
def make_trainer(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(loop, "load_data", lambda cfg, split, device: synthetic(split, device))
    torch.set_num_threads(1)

    def make(**changes: Any) -> Trainer:
        base: dict[str, Any] = dict(batch_size=64, epochs=2, device="cpu", dropout=0.25, lr_schedule="onecycle",
                                    lr=3e-3, memory_format="contiguous", tensorboard=False, eval_batch_size=64)
        return Trainer(RunConfig(**dict(base, **changes)), Dist())

    return make


def quiet() -> EpochProgress:
    return EpochProgress(1, enabled=False)


def step_on_first_batch(trainer: Trainer) -> tuple[float, dict[str, Any]]:
    x, y = trainer.train.batch(slice(0, trainer.cfg.per_worker_batch))
    trainer.model.train()
    loss, _ = trainer._step(x, y)
    return float(loss.detach()), {k: v.clone() for k, v in trainer.bare_model.state_dict().items()}


# --------------------------------------------------------------------------- one epoch
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_epoch_on_random_tensors_gives_a_complete_record(make_trainer: Any, precision: str) -> None:
    trainer = make_trainer(precision=precision)
    assert not trainer.scaler.is_enabled()  # only fp16 scales the loss
    before = [p.detach().clone() for p in trainer.model.parameters()]
    record = trainer.run_epoch(0, quiet())
    assert set(record) == set(schema.EPOCH_KEYS) | set(schema.OPTIONAL_EPOCH_KEYS)
    assert record["epoch"] == 1 and record["n_train_images"] == N_TRAIN and record["n_test_evaluated"] == N_TEST
    assert record["comm_time_s"] is None  # measured only where DDP all-reduces gradients
    assert np.isfinite(record["train_loss"]) and 0 <= record["train_accuracy"] <= 1
    assert record["epoch_time_s"] > 0 and record["images_per_s"] == N_TRAIN / record["epoch_time_s"]
    assert trainer.last_predictions is not None and trainer.last_predictions.shape == (N_TEST,)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    # The record's test numbers are the evaluation's, over every test image exactly once.
    test_loss, test_accuracy, predictions = trainer.evaluate()
    assert (test_loss, test_accuracy) == (record["test_loss"], record["test_accuracy"])
    assert test_accuracy == float((torch.from_numpy(predictions) == trainer.test.labels).double().mean())


# --------------------------------------------------------------------------- Dist
def test_dist_collectives_are_the_identity_at_world_size_1() -> None:
    ctx = Dist()
    assert not torch.distributed.is_initialized()  # no process group: nothing could be communicated
    assert ctx.master and ctx.backend is None
    t = torch.tensor([1.5, -2.0, 3.0], dtype=torch.float64)
    for collective in (ctx.all_sum, ctx.max, ctx.broadcast):
        out = collective(t)
        assert out is t and out.tolist() == [1.5, -2.0, 3.0]
    obj = {"a": np.arange(3)}
    assert ctx.broadcast_object(obj) is obj
    gathered = ctx.all_gather_object(obj)
    assert len(gathered) == 1 and gathered[0] is obj
    assert ctx.barrier() is None
    assert not Dist(rank=1, world_size=2).master


def test_the_loop_modules_never_talk_to_torch_distributed_themselves() -> None:
    """Single versus DDP shows only in `build.wrap` and behind `Dist`: the loop, its state and outputs
    import no torch.distributed and carry no world-size branches."""
    for name in ("loop.py", "resume.py", "data.py", "outputs.py", "build.py", "engine.py"):
        source = (TORCH_PACKAGE / name).read_text()
        imported = {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
        assert not any(m.startswith("torch.distributed") for m in imported), name
        assert "world_size > 1" not in source and ".distributed" not in source, name


# --------------------------------------------------------------------------- state
def test_state_dict_round_trips_a_trainer_exactly(make_trainer: Any) -> None:
    trainer = make_trainer()
    step_on_first_batch(trainer)  # optimiser moments, schedule position and RNG all non-trivial now
    state = trainer.state_dict()
    first_loss, first_weights = step_on_first_batch(trainer)
    assert not all(torch.equal(state["model"][k], v.cpu()) for k, v in first_weights.items()), \
        "the snapshot must not follow the trainer"
    trainer.load_state_dict(state)
    again_loss, again_weights = step_on_first_batch(trainer)
    assert again_loss == first_loss
    assert all(torch.equal(first_weights[k], again_weights[k]) for k in first_weights)
    trainer.load_state_dict(state)  # the same snapshot again: loading it must not have changed it
    assert step_on_first_batch(trainer)[0] == first_loss

    # A different trainer (another seed: other weights, other dropout) becomes this one exactly.
    # (The RNG is the process's: load right before the step, as a resume does.)
    other = make_trainer(seed=7)
    other.load_state_dict(state)
    other_loss, other_weights = step_on_first_batch(other)
    assert other_loss == first_loss
    assert all(torch.equal(first_weights[k], other_weights[k]) for k in first_weights)
    assert other.scheduler.get_last_lr() == trainer.scheduler.get_last_lr()
    moments = [s["exp_avg_sq"] for s in other.optimizer.state_dict()["state"].values()]
    expected = [s["exp_avg_sq"] for s in trainer.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, expected, strict=True))


def test_state_dict_has_the_checkpoint_layout(make_trainer: Any) -> None:
    state = make_trainer(lr_schedule="constant").state_dict()
    assert set(state) == {"model", "optimizer", "scheduler", "scaler", "rng", "comm_hook"}
    assert state["scheduler"] is None and state["scaler"] is None  # as every checkpoint records them
    assert state["comm_hook"] is None  # no compression hook: nothing of the communication is training state
    assert all(v.device.type == "cpu" for v in state["model"].values())
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}


# --------------------------------------------------------------------------- stop and resume
class StopAfter(EpochProgress):
    """A progress bar that sends this process's StopRequest a SIGTERM after `steps` training steps."""

    def __init__(self, stop: StopRequest, steps: int) -> None:
        super().__init__(2, enabled=False)
        self.stop, self.left = stop, steps

    def advance(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left == 0:
            self.stop.signum = signal.SIGTERM


def test_a_run_stopped_mid_epoch_resumes_bit_for_bit(make_trainer: Any, tmp_path: Path) -> None:
    whole = make_trainer()
    whole.fit(quiet())

    stopped = make_trainer(checkpoint_every=3)
    stop = StopRequest()
    stopped.enable_checkpoints(tmp_path, stop)
    with pytest.raises(Stopped) as where:
        stopped.fit(StopAfter(stop, steps=6))  # 4 steps an epoch: epoch 2, step 2
    assert (where.value.epoch, where.value.step) == (1, 2)
    saved = checkpoint.load(tmp_path / checkpoint.CHECKPOINT_FILE)
    assert (saved["epoch"], saved["step"], len(saved["records"])) == (1, 2, 1)

    resumed = make_trainer(checkpoint_every=3, resume=True)
    resumed.enable_checkpoints(tmp_path, StopRequest())
    assert resumed.restore() and resumed.start_epoch == 1
    resumed.fit(quiet())
    assert resumed.reliability["resumed_from"] == [{"epoch": 1, "step": 2, "elastic_restart": None}]
    keys = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "n_train_images")
    assert [[r[k] for k in keys] for r in resumed.records] == [[r[k] for k in keys] for r in whole.records]
    weights = zip(whole.bare_model.state_dict().items(), resumed.bare_model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for (_, a), b in weights)
    assert np.array_equal(resumed.last_predictions, whole.last_predictions)


def test_a_spawned_workers_error_keeps_its_class_and_a_signal_its_name() -> None:
    """The DDP spawn parent turns a worker's last traceback line back into our error (errors.known_error);
    a stop names its signal through signals.name, 'signal N' for one without a name."""
    from parallel_vision import signals
    from parallel_vision.engines.torch.dist import worker_error
    from parallel_vision.errors import ConfigError, EngineError, RunInterrupted

    error = worker_error("Traceback ...\nparallel_vision.errors.ConfigError: bad batch")
    assert type(error) is ConfigError and str(error) == "bad batch"
    stopped = worker_error("parallel_vision.errors.RunInterrupted: stopped by SIGTERM at epoch 1 step 3")
    assert type(stopped) is RunInterrupted and stopped.exit_code == 143
    other = worker_error("ValueError: nope")
    assert type(other) is EngineError and str(other) == "a DDP worker failed: ValueError: nope"
    assert worker_error("ConfigError: unqualified").args == ("a DDP worker failed: ConfigError: unqualified",)
    assert [signals.name(s) for s in (signal.SIGINT, signal.SIGTERM, 9999)] == ["SIGINT", "SIGTERM", "signal 9999"]
