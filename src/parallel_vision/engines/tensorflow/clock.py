"""The epoch clock of a TensorFlow run: a Keras callback that times each epoch, evaluates, checks the
counts and builds the records (engines.keras.epochs: same keys as the torch engine, see results.schema).

What each number means
    epoch_time_s     wall time of the epoch's training loop only: from `on_epoch_begin` to the
                     end of the last training step (its logs are read back, which synchronises).
                     Evaluation is excluded. The first epoch includes tf.function tracing and the
                     cache fill; `summarise_epochs` reports it separately as the warm-up epoch.
    eval_time_s      from the end of the training loop to the end of that epoch's evaluation of
                     the whole test set (batched by `eval_batch_size`, last batch kept).
    data_time_s      an ESTIMATE, not an in-loop measurement: `fit` runs the tf.data pipeline on
                     background threads ahead of the model (prefetch), so its cost cannot be
                     separated inside the loop. Before training, outside every clock, the same
                     pipeline is iterated alone for two epochs without a model: the first (cold:
                     normalising and filling the cache) is recorded for epoch 1, the second (warm)
                     for later epochs. Because the real pipeline overlaps compute, this is an upper
                     bound on input stall, and compute_time_s = epoch − data a lower bound.
    comm_time_s      None: gradient all-reduce runs inside the traced train step and is not
                     measurable from `fit`.
    n_test_evaluated counted by a summing metric across every replica and worker, and checked to
                     equal the test-set size every epoch (an EngineError otherwise); likewise the
                     training images per epoch must equal steps × global batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from parallel_vision.config import reached_target
from parallel_vision.engines.common import EpochProgress
from parallel_vision.engines.keras.epochs import epoch_checked
from parallel_vision.engines.tbevents import TensorBoard
from parallel_vision.engines.tensorflow.data import Data
from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.errors import EngineError
from parallel_vision.signals import StopRequest


class EpochClock:
    """Keras callback body: times each epoch's training loop and evaluation, appends the records to
    `run.records`. Created through `make_callback` (the Keras base class is imported lazily)."""

    def __init__(
        self,
        run: TFRun,
        data: Data,
        *,
        evaluate: Callable[[], tuple[float, float, int]],
        progress: EpochProgress,
        tensorboard: TensorBoard,
        stop: StopRequest | None = None,
        on_record: Callable[[int], None] | None = None,
    ) -> None:
        self.run = run
        self.cfg = run.cfg
        self.records = run.records
        self.stop = stop
        self.on_record = on_record  # called with the number of finished epochs (the backup)
        self.evaluate = evaluate
        self.steps = data.steps
        self.data_times = data.data_times
        self.progress = progress
        self.tensorboard = tensorboard
        self.stopped_in_epoch = False
        self._begin = self._train_end = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.progress.start_epoch(epoch + 1, self.steps * self.cfg.grad_accum)  # fit steps: micro-batches
        self._begin = time.perf_counter()
        self._train_end = 0.0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        # Keras has already read this step's logs back to Python (a host sync) before calling us.
        self._train_end = time.perf_counter()
        self.progress.advance()
        if self.stop is not None and self.stop.requested:
            self.stopped_in_epoch = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = dict(logs or {})
        number = epoch + 1
        if self.stopped_in_epoch:
            return  # a signal cut this epoch short: nothing to record, the last backup stands
        if not self._train_end:
            raise EngineError(f"epoch {number} ended without a training step")
        test = self.evaluate()
        eval_end = time.perf_counter()
        record = epoch_checked(
            self.run, number=number, steps=self.steps, train_loss=float(logs["loss"]),
            train_accuracy=float(logs["accuracy"]), seen=int(round(float(logs.get("n_images", -1)))), test=test,
            times=(self._train_end - self._begin, self.data_times[0] if epoch == 0 else self.data_times[1],
                   eval_end - self._train_end),
        )
        self.records.append(record)
        self.progress.end_epoch(record)
        self.tensorboard.log(record)
        if self.on_record is not None:
            self.on_record(number)


def make_callback(keras: Any, clock: EpochClock) -> Any:
    class _Callback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            clock.on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            clock.on_train_batch_end(batch, logs)
            if clock.stopped_in_epoch:
                self.model.stop_training = True  # fit leaves after this step

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            clock.on_epoch_end(epoch, logs)
            if clock.records and clock.records[-1]["epoch"] == epoch + 1 and reached_target(
                    clock.cfg, clock.records[-1]["test_accuracy"]):
                self.model.stop_training = True  # every worker evaluated the same accuracy: all stop

    return _Callback()
