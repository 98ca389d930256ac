"""The epoch-end backups inside a TensorFlow run: the Keras layer's restore and back-up
(engines/keras/resume.py) with what is TensorFlow's: loading inside the strategy's scope, and the workers'
agreement on where to resume (a collective of the strategy).
"""

from __future__ import annotations

from typing import Any

from parallel_vision.engines.keras import resume
from parallel_vision.engines.keras.backup import Backup
from parallel_vision.engines.tensorflow.setup import TFRun


def restore(run: TFRun, model: Any) -> None:
    """Under `--resume`, load the last epoch-end backup into `model` (sets `run.start_epoch`)."""
    def load(backup: Backup) -> None:
        with run.placement.strategy.scope():
            model.optimizer.build(model.trainable_variables)  # so its slots load too
            model.load_weights(str(backup.weights))

    resume.restore(run, load=load, agree=lambda epoch: agree_on_start(run.tf, run.placement.strategy, epoch))


def agree_on_start(tf: Any, strategy: Any, epoch: int) -> None:
    """Every multiworker worker must resume from the same epoch, or the collectives would hang.

    With n replicas, all values are equal iff n·Σe² = (Σe)²; every worker sees the same sums.
    """
    @tf.function
    def sums() -> Any:
        def local() -> Any:
            e = tf.constant(float(epoch), tf.float64)
            return tf.stack([e, e * e, tf.constant(1.0, tf.float64)])
        per_replica = strategy.run(local)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    total, squares, n = (float(v) for v in sums().numpy())
    if abs(n * squares - total * total) > 0.5:
        raise resume.disagreement(epoch)


def back_up(run: TFRun, model: Any, finished: int) -> None:
    """The backup after `finished` epochs (every worker takes part: reading the weights may be a collective;
    the writer alone keeps it)."""
    resume.back_up(run, finished, lambda: model)
