"""Training in a TensorFlow run: `model.fit` as users (and the paper) do, with the epoch clock, the
per-epoch evaluation and the epoch-end backup as one Keras callback.

SIGINT/SIGTERM stop `single` and `mirrored` after the current step (the run then ends `incomplete`,
exit 130/143); `multiworker` workers stop at once (a clean stop would need every worker to leave at
the same step), the last epoch's backup is what survives.
"""

from __future__ import annotations

from typing import Any

from parallel_vision.engines.common import EpochProgress
from parallel_vision.engines.keras.outputs import Stopped
from parallel_vision.engines.tbevents import TensorBoard
from parallel_vision.engines.tensorflow.clock import EpochClock, make_callback
from parallel_vision.engines.tensorflow.data import Data
from parallel_vision.engines.tensorflow.evaluate import make_evaluator
from parallel_vision.engines.tensorflow.resume import back_up
from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.signals import StopRequest


def fit(run: TFRun, model: Any, data: Data) -> Stopped | None:
    """Train from `run.start_epoch` to the last epoch, evaluating and backing up after each; returns how a
    signal stopped it, or None when every epoch is done."""
    cfg = run.cfg
    tensorboard = TensorBoard(run.out, run.writer and cfg.tensorboard, run.backups.kept_note)
    stop = StopRequest().install() if run.cluster is None else None  # multiworker: no clean stop
    with EpochProgress(cfg.epochs, enabled=run.writer) as progress:
        evaluate = make_evaluator(run.tf, run.keras, run.placement.strategy, model, data.test)
        clock = EpochClock(run, data, evaluate=evaluate, progress=progress, tensorboard=tensorboard, stop=stop,
                           on_record=lambda finished: back_up(run, model, finished))
        try:
            if run.start_epoch < cfg.epochs:
                model.fit(data.train, epochs=cfg.epochs, initial_epoch=run.start_epoch, verbose=0, shuffle=False,
                          steps_per_epoch=data.steps * cfg.grad_accum,  # fit steps are micro-batches
                          callbacks=[make_callback(run.keras, clock)])
        except KeyboardInterrupt:  # multiworker (no handler), or a second Ctrl-C
            return Stopped(exit_code=130, signal_name="SIGINT")
        finally:
            if stop is not None:
                stop.restore()
    if stop is not None and stop.requested and len(run.records) < cfg.epochs:  # else: the run is done
        return Stopped(exit_code=stop.exit_code, signal_name=stop.name)
    tensorboard.close()
    return None
