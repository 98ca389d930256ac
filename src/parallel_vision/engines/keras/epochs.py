"""What both Keras engines check of each epoch, and the final prediction pass of the saved weights.

`epoch_checked`: the epoch's images counted by the step itself must equal steps × global batch, the test
images counted by the evaluation must equal the test set, and the training loss must be finite; then the
record (engines.common.epoch_record, the keys of every engine).

`predict_with_saved_weights`: a plain single-device copy of the trained weights (what model.keras holds, so
every worker count gives the same layout) predicts every test image in order (timing final_eval_s), and its
logits give the last epoch's test metrics, so the reported accuracy is the saved model's by construction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from parallel_vision.engines.common import epoch_record
from parallel_vision.engines.keras.model import build_model
from parallel_vision.engines.keras.outputs import Complete
from parallel_vision.engines.keras.run import KerasRun
from parallel_vision.engines.metrics import metrics_from_logits
from parallel_vision.errors import EngineError


def epoch_checked(
    run: KerasRun,
    *,
    number: int,
    steps: int,
    train_loss: float,
    train_accuracy: float,
    seen: int,
    test: tuple[float, float, int],
    times: tuple[float, float, float],
) -> dict[str, Any]:
    """Epoch `number`'s record once its counts and loss pass the checks (an EngineError otherwise).

    `seen`: training images counted; `test`: (loss, accuracy, images evaluated); `times`: (epoch_time_s,
    data_time_s, eval_time_s)."""
    batch = run.cfg.batch_size
    test_loss, test_accuracy, seen_test = test
    n_test = run.n_test
    if seen != steps * batch:
        raise EngineError(f"epoch {number} trained on {seen} images, expected {steps * batch} "
                          f"({steps} steps × global batch {batch})")
    if seen_test != n_test:
        raise EngineError(f"epoch {number} evaluated {seen_test} test images, expected {n_test}")
    if not np.isfinite(train_loss):
        raise EngineError(f"training diverged: loss is {train_loss} in epoch {number}")
    epoch_time, data_time, eval_time = times
    return epoch_record(
        epoch=number, train_loss=train_loss, train_accuracy=train_accuracy, test_loss=test_loss,
        test_accuracy=test_accuracy, epoch_time_s=epoch_time, n_train_images=seen, n_test_evaluated=seen_test,
        data_time_s=data_time, comm_time_s=None, eval_time_s=eval_time,
    )


def predict_with_saved_weights(run: KerasRun, *, input_shape: tuple[int, ...], labels: np.ndarray,
                               load: Callable[[Any], None], predict: Callable[[Any], Any]) -> Complete | None:
    """On the writer (None elsewhere): a fresh single-device model, `load(model)` fills its weights,
    `predict(model)` returns the test set's logits in order."""
    if not run.writer:
        return None
    start = time.perf_counter()
    saved = build_model(run.cfg, input_shape, len(run.class_names))
    load(saved)
    logits = np.asarray(predict(saved))
    y_pred = np.asarray(np.argmax(logits, axis=1), dtype=np.int64)
    run.timing["final_eval_s"] = time.perf_counter() - start
    if len(y_pred) != len(labels):
        raise EngineError(f"predicted {len(y_pred)} test images, expected {len(labels)}")
    if run.records:  # the last epoch's test metrics are the saved model's, from the predictions it saves
        test_loss, test_accuracy = metrics_from_logits(logits, labels)
        run.records[-1] = dict(run.records[-1], test_loss=test_loss, test_accuracy=test_accuracy)
    return Complete(model=saved, labels=labels, predictions=y_pred)
