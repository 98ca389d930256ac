"""Evaluation in a TensorFlow run: every epoch's distributed pass over the whole test set, and the final
prediction pass with the weights that are saved.

Both evaluate the model that is saved: before each epoch's evaluation replica 0's BatchNorm statistics
are broadcast to every replica (`make_statistics_broadcast`), and the last epoch's test metrics are
replaced by those of the saved single-device copy's logits (`predict_with_saved_weights`, engines.keras.epochs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from parallel_vision.engines.keras import epochs
from parallel_vision.engines.keras.outputs import Complete
from parallel_vision.engines.tensorflow.data import Data
from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.errors import EngineError


def make_statistics_broadcast(tf: Any, strategy: Any, model: Any) -> Callable[[], None]:
    """Copy replica 0's non-trainable state (BatchNorm moving mean/variance) to every replica and worker.

    Keras creates the moving statistics with aggregation NONE, so under Mirrored and MultiWorkerMirrored
    each replica updates its own copy from its own part of the batch, while `get_weights()` (what is
    saved) returns replica 0's. Broadcasting replica 0's copy before each evaluation makes the evaluated
    model the saved one, with PyTorch DDP's default semantics (rank 0's buffers are broadcast at every
    forward). Trainable weights are already identical (all-reduced gradients), so they are left alone.
    """
    variables = [v.value if hasattr(v, "value") else v for v in model.non_trainable_variables]
    if strategy.num_replicas_in_sync == 1 or not variables:
        return lambda: None

    def copy_first() -> None:
        ctx = tf.distribute.get_replica_context()
        first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float32)
        summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.cast(v, tf.float32) * first for v in variables])
        for variable, value in zip(variables, summed, strict=True):
            variable.assign(tf.cast(value, variable.dtype))

    @tf.function
    def broadcast() -> None:
        strategy.run(copy_first)

    return broadcast


def make_evaluator(tf: Any, keras: Any, strategy: Any, model: Any, dataset: Any) -> Callable[[], Any]:
    """Mean loss, accuracy and image count over the whole test set, each image exactly once.

    A distributed loop of our own rather than fit's `validation_data`: Keras' evaluate builds
    the model on a mean of the first batch's per-replica parts, which fails when a partial
    batch splits unevenly (e.g. 500 test images over 2 replicas at eval batch 2000). Sums of
    loss, correct predictions and images are reduced over replicas and workers, so an empty
    per-replica part contributes nothing, and the count proves every image was seen once.
    """
    distributed = strategy.experimental_distribute_dataset(dataset)
    share_statistics = make_statistics_broadcast(tf, strategy, model)

    def sums(x: Any, y: Any) -> tuple[Any, Any]:
        logits = tf.cast(model(x, training=False), tf.float32)
        losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=y.dtype), y), tf.float64)
        return tf.reduce_sum(tf.cast(losses, tf.float64)), tf.reduce_sum(correct)

    def step(x: Any, y: Any) -> tuple[Any, Any, Any]:
        n = tf.shape(y)[0]
        zero = tf.constant(0.0, tf.float64)
        # A replica's part of the last batch can be empty; TF's CPU convolution mishandles an
        # empty batch, so such a part skips the model and contributes zeros.
        loss_sum, correct = tf.cond(n > 0, lambda: sums(x, y), lambda: (zero, zero))
        return loss_sum, correct, tf.cast(n, tf.float64)

    @tf.function(reduce_retracing=True)
    def run(x: Any, y: Any) -> tuple[Any, ...]:
        parts = strategy.run(step, args=(x, y))
        return tuple(strategy.reduce("SUM", v, axis=None) for v in parts)

    def evaluate() -> tuple[float, float, int]:
        share_statistics()  # every replica evaluates the state that would be saved now
        totals = [tf.constant(0.0, tf.float64)] * 3
        for x, y in distributed:
            totals = [a + b for a, b in zip(totals, run(x, y), strict=True)]
        loss_sum, correct, count = (float(t) for t in totals)
        if count <= 0:
            raise EngineError("the test set is empty")
        return loss_sum / count, correct / count, int(round(count))

    return evaluate


def predict_with_saved_weights(run: TFRun, model: Any, data: Data) -> Complete | None:
    """The final prediction pass (engines.keras.epochs) on the writer, from the trained weights; every worker
    reads them first (a collective under multiworker)."""
    weights = model.get_weights()
    return epochs.predict_with_saved_weights(
        run, input_shape=data.input_shape, labels=data.y_test, load=lambda saved: saved.set_weights(weights),
        predict=lambda saved: saved.predict(data.predict_dataset(run.tf, run.cfg.eval_batch_size, run.cfg.seed),
                                            verbose=0))
