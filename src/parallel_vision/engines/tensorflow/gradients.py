"""The gradients `pvision explain` needs from a Keras model on the TensorFlow backend (`tf.GradientTape`), as
the numpy callables of `explain.attribution.Model`: the Keras explain child's TensorFlow half
(engines/keras/explain.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from parallel_vision.explain.attribution import Model

if TYPE_CHECKING:  # the engines' modules import no framework at module level (tests/test_tf_parts.py)
    import tensorflow as tf

#: Images per forward pass when only the logits are wanted.
FORWARD_BATCH = 1000


def _class_logits(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """The sum of each image's logit of its class: its gradient is every image's own (inference mode)."""
    import tensorflow as tf

    return tf.reduce_sum(tf.gather(logits, y, axis=1, batch_dims=1))


def functions(model: Any, split: tuple[Any, Any] | None) -> Model:
    """`model`'s logits and input gradients; with `split` = (head, tail), the two halves of the model at
    Grad-CAM's layer, that layer's activations and their gradients."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    @tf.function(reduce_retracing=True)
    def input_gradients(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            target = _class_logits(model(x, training=False), y)
        return tape.gradient(target, x)

    def logits(x: np.ndarray) -> np.ndarray:
        parts = [forward(tf.constant(x[i:i + FORWARD_BATCH])).numpy() for i in range(0, len(x), FORWARD_BATCH)]
        return np.concatenate(parts).astype(np.float32)

    def gradients(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return input_gradients(tf.constant(x), tf.constant(y, tf.int64)).numpy()

    if split is None:
        return Model(logits=logits, gradients=gradients, layer=None)
    head, tail = split

    @tf.function(reduce_retracing=True)
    def layer_gradients(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        acts = head(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(acts)
            target = _class_logits(tail(acts, training=False), y)
        return acts, tape.gradient(target, acts)

    def layer(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acts, grads = layer_gradients(tf.constant(x), tf.constant(y, tf.int64))
        return acts.numpy(), grads.numpy()

    return Model(logits=logits, gradients=gradients, layer=layer)
