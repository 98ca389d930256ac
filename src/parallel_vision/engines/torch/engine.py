"""The PyTorch engine's entry: `train_and_evaluate(cfg)` runs one RunConfig in this process.

Runs inside the engine process made by the launcher (or by torchrun). `single` and `dp` train
here; `ddp` spawns one worker per rank on this machine, or, under torchrun, is itself one worker.
Every worker runs `_train`, the same code for every strategy; rank 0 alone writes files and logs.

The package, by concern: `loop` (the Trainer: step, epoch, evaluation), `resume` (its state and
checkpoints), `dist` (ranks, collectives, process groups), `data`, `devices`, `build` (model, strategy
wrapping, optimiser), `outputs` (model.pt, result.json; TensorBoard: engines.tbevents), `checkpoint` (the file format).

Reliability (docs/reliability.md): SIGINT/SIGTERM end the current step, checkpoint and exit 130/143;
a non-finite loss stops the run before a bad checkpoint can replace the last good one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from parallel_vision import signals
from parallel_vision.config import RunConfig
from parallel_vision.engines.common import EpochProgress
from parallel_vision.engines.levers import resolve_precision
from parallel_vision.engines.tbevents import TensorBoard
from parallel_vision.engines.torch import checkpoint
from parallel_vision.engines.torch.devices import backend, check_devices, cuda_wanted, set_threads
from parallel_vision.engines.torch.dist import Dist, restarted_torchrun_store, run_in_group, spawn
from parallel_vision.engines.torch.loop import Stopped, Trainer
from parallel_vision.engines.torch.outputs import write_outputs
from parallel_vision.errors import ConfigError, RunInterrupted
from parallel_vision.signals import StopRequest


def train_and_evaluate(cfg: RunConfig) -> None:
    """Run `cfg` to completion in this process (and its spawned workers); rank 0 writes the result."""
    cuda = cuda_wanted(cfg)
    cfg = resolve_precision(cfg, on_gpu=cuda, gpu_bf16=cuda and torch.cuda.is_bf16_supported())
    check_devices(cfg)
    if not cfg.is_distributed:
        _train(cfg, Dist())
    elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun made us: we are one worker
        world = int(os.environ["WORLD_SIZE"])
        if world != cfg.workers:
            raise ConfigError(f"--workers {cfg.workers} but torchrun started WORLD_SIZE={world} processes")
        run_in_group(_train, cfg, backend(cfg), store=restarted_torchrun_store(cfg.collective_timeout))
    else:
        spawn(_train, cfg, backend(cfg))


def _train(cfg: RunConfig, dist: Dist, stop: StopRequest | None = None) -> None:
    """Train (or resume) to the end; `stop` is the signal catcher a spawned worker installed first thing."""
    set_threads(cfg, dist.local_rank)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    out = Path(cfg.out_dir or ".")
    with stop or StopRequest() as stop:
        trainer = Trainer(cfg, dist)
        trainer.enable_checkpoints(out, stop)
        trainer.restore()
        board = TensorBoard(out, enabled=dist.master and cfg.tensorboard, kept_note=checkpoint.kept_note)
        try:
            with EpochProgress(cfg.epochs, enabled=dist.master) as progress:
                trainer.fit(progress, on_epoch=board.log)
            board.close()
        except Stopped as stopped:
            write_outputs(trainer, out, "incomplete")
            dist.barrier()  # nobody leaves (and gets the group torn down) before rank 0 has written
            where = (f"after epoch {stopped.epoch} of {cfg.epochs}" if stopped.step == 0 else
                     f"at epoch {stopped.epoch + 1} step {stopped.step}")
            raise RunInterrupted(f"stopped by {signals.name(trainer._stop_signum)} {where}; checkpoint and partial "
                                 f"result.json kept in {out}; continue with --resume",
                                 exit_code=signals.exit_code(trainer._stop_signum)) from None
        finally:
            board.close(quiet=True)  # a no-op after the close above
        if trainer.final_eval_needed:  # resumed after the last epoch from a checkpoint without predictions
            trainer.last_predictions = trainer.evaluate()[2]  # (collective: the flag is the same on every rank)
        trainer._begin("the end of the run, while rank 0 writes the outputs", "outputs")  # for the watchdog
        write_outputs(trainer, out, "complete")
        if dist.master:
            checkpoint.remove(out)  # the run is finished: model.pt holds its weights

