"""The gradients `pvision explain` needs from a Keras model on the JAX backend (`jax.grad` over
`model.stateless_call`), as the numpy callables of `explain.attribution.Model`: the Keras explain child's JAX
half (engines/keras/explain.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from parallel_vision.explain.attribution import Model

if TYPE_CHECKING:  # the engines' modules import no framework at module level (tests/test_tf_parts.py)
    import jax

#: Images per forward pass when only the logits are wanted.
FORWARD_BATCH = 1000


def pure(model: Any) -> Callable[[jax.Array], jax.Array]:
    """`model` in inference mode as a pure function of its input, its weights held as constants."""
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    def call(x: jax.Array) -> jax.Array:
        out, _ = model.stateless_call(trainable, frozen, x, training=False)
        return out

    return call


def _class_logits(f: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The sum of each image's logit of its class: its gradient is every image's own (inference mode)."""
    import jax.numpy as jnp

    return lambda x, y: jnp.take_along_axis(f(x), y[:, None], axis=1).sum()


def functions(model: Any, split: tuple[Any, Any] | None) -> Model:
    """`model`'s logits and input gradients; with `split` = (head, tail), the two halves of the model at
    Grad-CAM's layer, that layer's activations and their gradients."""
    import jax

    call = pure(model)
    forward = jax.jit(call)
    input_gradients = jax.jit(jax.grad(_class_logits(call)))

    def logits(x: np.ndarray) -> np.ndarray:
        parts = [np.asarray(forward(x[i:i + FORWARD_BATCH])) for i in range(0, len(x), FORWARD_BATCH)]
        return np.concatenate(parts).astype(np.float32)

    def gradients(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(input_gradients(x, y.astype(np.int32)))

    if split is None:
        return Model(logits=logits, gradients=gradients, layer=None)
    head = jax.jit(pure(split[0]))
    tail_gradients = jax.jit(jax.grad(_class_logits(pure(split[1]))))

    def layer(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acts = head(x)
        return np.asarray(acts), np.asarray(tail_gradients(acts, y.astype(np.int32)))

    return Model(logits=logits, gradients=gradients, layer=layer)
