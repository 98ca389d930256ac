"""Baseline (c): plain Keras `model.fit` on numpy arrays, the keras-io `mnist_convnet` way.

Pixels are scaled with `astype("float32") / 255` and given a channel axis; the model is the
paper CNN (`parallel_vision.models.keras_cnn`, logits out), compiled with Adam(1e-3) and
sparse categorical cross-entropy; `model.fit(x, y, batch_size=2048, epochs=E)` shuffles the
arrays itself. No tf.data pipeline, no XLA (`jit_compile` left at Keras' "auto", which is off
for TensorFlow on CPU), no validation split, so the epoch is training only. Only the thread
count is set: `tf.config.threading.set_intra_op_parallelism_threads(--threads)` (inter-op
left at TensorFlow's default).

Epoch time is taken by a callback from `on_epoch_begin` to `on_epoch_end`. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import time

from _cli import parse_args  # noqa: I001 - the sibling module beside this script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])

    import keras
    import numpy as np
    import tensorflow as tf

    from parallel_vision.data import load
    from parallel_vision.models.keras_cnn import build_keras_cnn

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    x_train, y_train = load("mnist", "train", args.data_dir)
    x_test, y_test = load("mnist", "test", args.data_dir)
    x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    x_test, y_test = x_test[: args.limit_test], y_test[: args.limit_test]
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)

    model = build_keras_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            times.append(time.perf_counter() - self.start)

    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
                        callbacks=[EpochTimer()])
    _, accuracy = model.evaluate(x_test, y_test, batch_size=2000, verbose=0)
    images = [len(x_train)] * len(times)  # fit keeps the last partial batch
    steady_t, steady_n = times[1:] or times, images[1:] or images
    print(json.dumps({
        "baseline": "keras_fit",
        "epoch_times_s": times,
        "epoch_images": images,
        "train_loss": [float(v) for v in history.history["loss"]],
        "images_per_s_excl_warmup": sum(steady_n) / sum(steady_t),
        "test_accuracy": float(accuracy),
        "threads": args.threads,
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
    }))


if __name__ == "__main__":
    main()
