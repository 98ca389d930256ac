"""The Keras model of a JAX run and its compiled SPMD programs.

`Model` holds two copies of the paper's CNN (engines.keras.model, shared with the TensorFlow engine):
`net`, built inside the distribution's scope (DataParallel, or ModelParallel for `model-parallel`), whose
`stateless_call` the jitted step traces; and `host`, a plain single-device copy compiled with the same optimiser,
into which the trained state is copied for backups and the saved model. The training state is an explicit pytree
(trainable, non-trainable including BatchNorm statistics and dropout seeds, optimiser slots, epoch sums), each
array placed as its variable is (replicated under DataParallel, the LayoutMap's sharding under ModelParallel).

`train_step` and `eval_step` are jitted once and compiled ahead of time (timing compile_s): with the batch
sharded over 'batch' and the state replicated, XLA's SPMD partitioner splits the step over the devices and
inserts the gradient all-reduce (and BatchNorm's cross-device batch moments) into the one program; with the
layers split, it inserts what the layout needs (layout.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parallel_vision.engines.jax.data import Data, Feeder, test_batches
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.engines.keras.model import build_model, make_optimizer


@dataclass
class Model:
    net: Any
    optimizer: Any
    host: Any  # single-device copy with its own optimiser (backups; resume)
    train_step: Any  # compiled: (state, x, y) -> state
    eval_step: Any  # compiled: (tv, ntv, x, y) -> (loss_sum, correct, count)
    state: Any  # pytree: (trainable, non_trainable, optimizer, sums), each array laid out as its variable
    shardings: Any = None  # (trainable, non_trainable, optimizer) shardings: the variables' own (layout)


def zero_sums(jnp: Any) -> tuple[Any, Any, Any]:
    return (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def variable_shardings(net: Any, optimizer: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """Where each state array lives: the sharding its variable got in the distribution's scope (replicated under
    DataParallel, the LayoutMap's under ModelParallel)."""
    return ([v.value.sharding for v in net.trainable_variables],
            [v.value.sharding for v in net.non_trainable_variables], [v.value.sharding for v in optimizer.variables])


def make_functions(run: JaxRun, net: Any, optimizer: Any, shardings: Any) -> tuple[Any, Any]:
    jax, keras = run.jax, run.keras
    jnp = jax.numpy
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def train_step(state: Any, x: Any, y: Any) -> Any:
        trainable, non_trainable, slots, sums = state

        def loss_of(trainable: Any, non_trainable: Any) -> Any:
            logits, updated = net.stateless_call(trainable, non_trainable, x, training=True)
            logits = logits.astype(jnp.float32)
            losses = cross_entropy(y, logits)
            return jnp.mean(losses), (updated, logits, losses)

        (_, (non_trainable, logits, losses)), grads = jax.value_and_grad(loss_of, has_aux=True)(
            trainable, non_trainable)
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        correct = jnp.sum((jnp.argmax(logits, axis=1) == y).astype(jnp.int32))
        sums = (sums[0] + jnp.sum(losses), sums[1] + correct, sums[2] + jnp.int32(y.shape[0]))
        return trainable, non_trainable, slots, sums

    def eval_step(trainable: Any, non_trainable: Any, x: Any, y: Any) -> Any:
        logits, _ = net.stateless_call(trainable, non_trainable, x, training=False)
        logits = logits.astype(jnp.float32)
        valid = y >= 0
        losses = cross_entropy(jnp.where(valid, y, 0), logits)
        correct = (jnp.argmax(logits, axis=1) == y) & valid
        return (jnp.sum(jnp.where(valid, losses, 0.0)), jnp.sum(correct.astype(jnp.int32)),
                jnp.sum(valid.astype(jnp.int32)))

    replicated = jax.sharding.NamedSharding(run.placement.mesh, jax.sharding.PartitionSpec())
    # The state keeps its layout from step to step (XLA would otherwise pick the outputs' shardings).
    return jax.jit(train_step, donate_argnums=0, out_shardings=(*shardings, replicated)), jax.jit(eval_step)


def build(run: JaxRun, data: Data, feeder: Feeder) -> Model:
    """Both copies of the model, the initial replicated state, and the two programs compiled ahead of time
    (timing model_build_s for the first part, compile_s for the compilation)."""
    cfg, keras = run.cfg, run.keras
    with run.timed("model_build_s"):
        with run.placement.distribution.scope():
            net = build_model(cfg, data.input_shape, len(run.class_names))
            optimizer = make_optimizer(keras, cfg, run.n_train)
            optimizer.build(net.trainable_variables)
        host = build_model(cfg, data.input_shape, len(run.class_names))
        host.compile(optimizer=make_optimizer(keras, cfg, run.n_train))
        host.optimizer.build(host.trainable_variables)
        if cfg.init == "framework":  # the seeded draws of the net (identical in every process), read on the host
            load_into_host_model(host, net)
        shardings = variable_shardings(net, optimizer)
        state = (*feeder.place(host_values(host, host.optimizer), shardings),
                 feeder.replicate(tuple(np.zeros((), d) for d in (np.float32, np.int32, np.int32))))
        train_step, eval_step = make_functions(run, net, optimizer, shardings)
    with run.timed("compile_s"):
        x, y = feeder.put(data.x_train[: cfg.batch_size], data.y_train[: cfg.batch_size])
        compiled_train = train_step.lower(state, x, y).compile()
        tx, ty = feeder.put(*test_batches(data)[0])
        compiled_eval = eval_step.lower(state[0], state[1], tx, ty).compile()
    return Model(net=net, optimizer=optimizer, host=host, train_step=compiled_train, eval_step=compiled_eval,
                 state=state, shardings=shardings)


def host_values(net: Any, optimizer: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The model's and optimiser's current variables as host arrays."""
    return ([local(v.value) for v in net.trainable_variables], [local(v.value) for v in net.non_trainable_variables],
            [local(v.value) for v in optimizer.variables])


def load_into_host_model(host: Any, net: Any) -> None:
    """Copy the distributed net's initial weights into the host copy, one variable at a time."""
    for target, source in zip(host.weights, net.weights, strict=True):
        target.assign(local(source.value))


def local(array: Any) -> np.ndarray:
    """A replicated (possibly multi-process) array's value, read from this process's own copy."""
    if getattr(array, "is_fully_addressable", True):
        return np.asarray(array)
    return np.asarray(array.addressable_data(0))


def state_to_host(state: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    trainable, non_trainable, slots, _ = state
    return [local(a) for a in trainable], [local(a) for a in non_trainable], [local(a) for a in slots]


def load_into_host(model: Model, values: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]) -> None:
    """Copy trained values into the single-device `host` copy (and its optimiser), ready to save."""
    trainable, non_trainable, slots = values
    for variable, value in zip(model.host.trainable_variables, trainable, strict=True):
        variable.assign(value)
    for variable, value in zip(model.host.non_trainable_variables, non_trainable, strict=True):
        variable.assign(value)
    for variable, value in zip(model.host.optimizer.variables, slots, strict=True):
        variable.assign(value)


def host_state(model: Model) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The `host` copy's values (after a backup was loaded into it)."""
    return host_values(model.host, model.host.optimizer)
