"""Evaluation in a JAX run: every epoch's SPMD pass over the whole test set, and the final prediction pass
of the saved single-device copy (whose logits give the last epoch's test metrics, so the reported accuracy
is the saved model's by construction)."""

from __future__ import annotations

from typing import Any

import numpy as np

from parallel_vision.engines.jax.data import Data, Feeder, test_batches
from parallel_vision.engines.jax.model import Model
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.engines.keras import epochs
from parallel_vision.engines.keras.outputs import Complete
from parallel_vision.errors import EngineError


def evaluate(model: Model, data: Data, feeder: Feeder, batches: list[tuple[np.ndarray, np.ndarray]] | None = None
             ) -> tuple[float, float, int]:
    """Mean loss, accuracy and image count over the whole test set (every process takes part; padded rows are
    masked, the count proves each image was seen once). Sums are read once, at the end."""
    trainable, non_trainable = model.state[0], model.state[1]
    totals: list[Any] = []
    for x, y in batches or test_batches(data):
        gx, gy = feeder.put(x, y)
        totals.append(model.eval_step(trainable, non_trainable, gx, gy))
    loss_sum = sum(float(np.asarray(t[0].addressable_shards[0].data)) for t in totals)
    correct = sum(int(np.asarray(t[1].addressable_shards[0].data)) for t in totals)
    count = sum(int(np.asarray(t[2].addressable_shards[0].data)) for t in totals)
    if count <= 0:
        raise EngineError("the test set is empty")
    return loss_sum / count, correct / count, count


def predict_with_saved_weights(run: JaxRun, values: Any, data: Data) -> Complete | None:
    """The final prediction pass (engines.keras.epochs), on the writer only: a plain, uncompiled single-device
    copy of the trained `values` (what model.keras holds) predicts every test image in order."""
    def load(saved: Any) -> None:
        trainable, non_trainable, _ = values
        for variable, value in zip(saved.trainable_variables, trainable, strict=True):
            variable.assign(value)
        for variable, value in zip(saved.non_trainable_variables, non_trainable, strict=True):
            variable.assign(value)

    return epochs.predict_with_saved_weights(
        run, input_shape=data.input_shape, labels=data.y_test, load=load,
        predict=lambda saved: saved.predict(data.x_test, batch_size=run.cfg.eval_batch_size, verbose=0))
