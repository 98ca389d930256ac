"""Training in a JAX run: the epoch loop around the compiled SPMD step, with the epoch clock.

What each number means (docs/definitions.md; same keys as the other engines)
    epoch_time_s     wall time of the epoch's training loop: from a synchronised start (the previous
                     work finished) to `block_until_ready` on the state after the last step. Dispatch
                     is asynchronous, so only these edges are synchronised; XLA compilation happened
                     before the first epoch (timing.compile_s), so the first epoch is not a compile.
    data_time_s      host time spent preparing batches (gathering rows, placing them on the mesh) inside
                     the loop, measured; it overlaps device compute that was dispatched earlier, so it
                     is an upper bound on input stall.
    comm_time_s      None: the all-reduce is inside the compiled step (outputs.COMM_NOTE).
    eval_time_s      from the end of the training loop to the end of that epoch's evaluation.
    n_train_images   counted on the device by the step itself (summed over the global batch), and
                     checked against steps × global batch every epoch; likewise n_test_evaluated.

SIGINT/SIGTERM stop `single` and `dp` after the current step (the run ends `incomplete`, exit 130/143);
`multiworker` processes stop at once (ranks must stay in lock-step: a clean stop would need every process
to leave at the same step, and gloo gives up on a peer after ~30 s); the last epoch's backup survives.
"""

from __future__ import annotations

import time

import numpy as np

from parallel_vision.config import reached_target
from parallel_vision.engines.common import EpochProgress
from parallel_vision.engines.jax.data import Data, Feeder, epoch_order, test_batches
from parallel_vision.engines.jax.evaluate import evaluate
from parallel_vision.engines.jax.model import Model, local, zero_sums
from parallel_vision.engines.jax.resume import back_up
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.engines.keras.epochs import epoch_checked
from parallel_vision.engines.keras.outputs import Stopped
from parallel_vision.engines.tbevents import TensorBoard
from parallel_vision.signals import StopRequest


def fit(run: JaxRun, model: Model, data: Data, feeder: Feeder) -> Stopped | None:
    """Train from `run.start_epoch` to the last epoch, evaluating and backing up after each; returns how a
    signal stopped it, or None when every epoch is done."""
    cfg, jax = run.cfg, run.jax
    batch = cfg.batch_size
    tensorboard = TensorBoard(run.out, run.writer and cfg.tensorboard, run.backups.kept_note)
    stop = StopRequest().install() if run.cluster is None else None
    eval_batches = test_batches(data)
    try:
        with EpochProgress(cfg.epochs, enabled=run.writer) as progress:
            for epoch in range(run.start_epoch, cfg.epochs):
                number = epoch + 1
                progress.start_epoch(number, data.steps)
                order = epoch_order(cfg.seed, epoch, len(data.y_train))
                trainable, non_trainable, slots, _ = model.state
                model.state = (trainable, non_trainable, slots, feeder.replicate(zero_sums(np)))
                jax.block_until_ready(model.state)
                begin = time.perf_counter()
                data_time = 0.0
                for step in range(data.steps):
                    t0 = time.perf_counter()
                    rows = order[step * batch:(step + 1) * batch]
                    x, y = feeder.put(*data.train_batch(rows, epoch, step))
                    data_time += time.perf_counter() - t0
                    model.state = model.train_step(model.state, x, y)
                    progress.advance()
                    if stop is not None and stop.requested:
                        break
                jax.block_until_ready(model.state)
                train_end = time.perf_counter()
                if stop is not None and stop.requested:
                    return Stopped(exit_code=stop.exit_code, signal_name=stop.name)
                loss_sum, correct, seen = (local(v) for v in model.state[3])
                seen = int(seen)  # checked against steps × global batch by epoch_checked, before any division
                test = evaluate(model, data, feeder, eval_batches)
                eval_end = time.perf_counter()
                record = epoch_checked(
                    run, number=number, steps=data.steps, train_loss=float(loss_sum) / max(seen, 1),
                    train_accuracy=int(correct) / max(seen, 1), seen=seen, test=test,
                    times=(train_end - begin, data_time, eval_end - train_end))
                run.records.append(record)
                progress.end_epoch(record)
                tensorboard.log(record)
                back_up(run, model, number)
                if reached_target(cfg, record["test_accuracy"]):
                    break  # --stop-at-target: this epoch reached --target-accuracy; the run is complete
    except KeyboardInterrupt:  # multiworker (no handler), or a second Ctrl-C
        return Stopped(exit_code=130, signal_name="SIGINT")
    finally:
        if stop is not None:
            stop.restore()
    tensorboard.close()
    return None
