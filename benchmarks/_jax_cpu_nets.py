"""The paper CNN as a plain `jax.jit` train step (no Keras), and the model's heavy ops compiled alone in JAX and in
TensorFlow, for benchmarks/jax_cpu.py.

Why a second definition of the network: to separate Keras' share of the JAX step from XLA's, the same layers
(models/keras_cnn.py: three 3x3 `same` convs with bias, BatchNorm, ReLU, two 2x2 max-pools, dense 128-64-10 with
BatchNorm, ReLU and dropout 0.25, Adam 1e-3) are written with `jax.lax` ops only, in NHWC or NCHW.
Frameworks are imported inside the functions: each runs in a child process of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from parallel_vision.engines.jax.pooling import first_max_pool

#: (name, input NHWC shape without the batch, output channels): the three convolutions at the model's shapes.
CONVS = (("conv1", (28, 28, 1), 32), ("conv2", (28, 28, 32), 64), ("conv3", (14, 14, 64), 128))
BN_MOMENTUM, BN_EPS, DROPOUT, LR = 0.9, 1e-5, 0.25, 1e-3


def conv_flops(batch: int, shape: tuple[int, int, int], cout: int) -> float:
    """Multiply-adds x 2 of one 3x3 `same` convolution (forward; each backward half costs the same)."""
    h, w, cin = shape
    return 2.0 * batch * h * w * cout * cin * 9


def lax_params(jax: Any, layout: str, seed: int = 0) -> dict[str, Any]:
    """Glorot-uniform kernels, zero biases, BatchNorm at gamma 1 / beta 0 (Keras' defaults)."""
    jnp = jax.numpy
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 8))

    def glorot(shape: tuple[int, ...], fan_in: int, fan_out: int) -> Any:
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        return jax.random.uniform(next(keys), shape, jnp.float32, -limit, limit)

    p: dict[str, Any] = {}
    for i, (_, (_, _, cin), cout) in enumerate(CONVS, 1):
        shape = (3, 3, cin, cout) if layout == "NHWC" else (cout, cin, 3, 3)
        p[f"c{i}"] = glorot(shape, 9 * cin, 9 * cout)
        p[f"c{i}b"] = jnp.zeros((cout,), jnp.float32)
    for i, (n_in, n_out) in enumerate(((6272, 128), (128, 64), (64, 10)), 1):
        p[f"d{i}"] = glorot((n_in, n_out), n_in, n_out)
        p[f"d{i}b"] = jnp.zeros((n_out,), jnp.float32)
    for i, c in enumerate((32, 64, 128, 128, 64), 1):
        p[f"g{i}"], p[f"b{i}"] = jnp.ones((c,), jnp.float32), jnp.zeros((c,), jnp.float32)
    return p


def lax_train_step(jax: Any, layout: str, tiled: bool = False) -> tuple[Callable[..., Any], Callable[[Any], Any]]:
    """(step, init_state): step(state, x, y, key) -> (state, loss), jitted whole with the state donated;
    `tiled` pools as the JAX engine does (engines/jax/pooling.py) instead of `lax.reduce_window`."""
    jnp, lax = jax.numpy, jax.lax
    dims = (layout, "HWIO" if layout == "NHWC" else "OIHW", layout)
    chan = 3 if layout == "NHWC" else 1
    first_max = first_max_pool(jax, 2, 2)
    window = (1, 2, 2, 1) if layout == "NHWC" else (1, 1, 2, 2)

    def bn(x: Any, g: Any, b: Any, stats: Any) -> tuple[Any, Any]:
        axes = tuple(a for a in range(x.ndim) if a != (chan if x.ndim == 4 else 1))
        mean, var = jnp.mean(x, axes), jnp.var(x, axes)
        shape = [1] * x.ndim
        shape[chan if x.ndim == 4 else 1] = -1
        y = (x - mean.reshape(shape)) * lax.rsqrt(var.reshape(shape) + BN_EPS) * g.reshape(shape) + b.reshape(shape)
        new = (BN_MOMENTUM * stats[0] + (1 - BN_MOMENTUM) * mean, BN_MOMENTUM * stats[1] + (1 - BN_MOMENTUM) * var)
        return y, new

    def drop(x: Any, key: Any) -> Any:
        keep = jax.random.bernoulli(key, 1 - DROPOUT, x.shape)
        return jnp.where(keep, x / (1 - DROPOUT), 0.0)

    def forward(p: Any, stats: Any, x: Any, key: Any) -> tuple[Any, Any]:
        new_stats, keys = [], jax.random.split(key, 3)
        bias_shape = (1, 1, 1, -1) if layout == "NHWC" else (1, -1, 1, 1)
        for i in range(1, 4):
            x = lax.conv_general_dilated(x, p[f"c{i}"], (1, 1), "SAME", dimension_numbers=dims)
            x, s = bn(x + p[f"c{i}b"].reshape(bias_shape), p[f"g{i}"], p[f"b{i}"], stats[i - 1])
            new_stats.append(s)
            x = jax.nn.relu(x)
            if i > 1 and tiled:  # the engine's pool is NHWC: NCHW goes through two transposes
                x = first_max(x) if layout == "NHWC" else first_max(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            elif i > 1:
                x = lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")
        x = drop(x.reshape(x.shape[0], -1), keys[0])
        for i in (1, 2):
            x, s = bn(x @ p[f"d{i}"] + p[f"d{i}b"], p[f"g{i + 3}"], p[f"b{i + 3}"], stats[i + 2])
            new_stats.append(s)
            x = drop(jax.nn.relu(x), keys[i])
        return x @ p["d3"] + p["d3b"], new_stats

    def loss_fn(p: Any, stats: Any, x: Any, y: Any, key: Any) -> tuple[Any, Any]:
        logits, new_stats = forward(p, stats, x, key)
        losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)
        return jnp.mean(losses), new_stats

    def step(state: Any, x: Any, y: Any, key: Any) -> tuple[Any, Any]:
        p, stats, m, v, t = state
        if layout == "NCHW":
            x = jnp.transpose(x, (0, 3, 1, 2))
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, stats, x, y, key)
        t = t + 1
        m = jax.tree.map(lambda a, g: 0.9 * a + 0.1 * g, m, grads)
        v = jax.tree.map(lambda a, g: 0.999 * a + 0.001 * g * g, v, grads)
        scale = LR * jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        p = jax.tree.map(lambda w, a, b: w - scale * a / (jnp.sqrt(b) + 1e-7), p, m, v)
        return (p, stats, m, v, t), loss

    def init_state(params: Any) -> Any:
        stats = [(jnp.zeros((c,), jnp.float32), jnp.ones((c,), jnp.float32)) for c in (32, 64, 128, 128, 64)]
        zeros = jax.tree.map(jnp.zeros_like, params)
        return params, stats, zeros, jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32)

    return jax.jit(step, donate_argnums=0), init_state


def jax_ops(jax: Any, batch: int) -> dict[str, tuple[Callable[[], Any], float]]:
    """name -> (a call of the op compiled alone at the model's shapes, its FLOPs or 0)."""
    import numpy as np

    jnp, lax = jax.numpy, jax.lax
    rng = np.random.default_rng(0)
    ops: dict[str, tuple[Callable[[], Any], float]] = {}

    def conv(x: Any, w: Any) -> Any:
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    for name, (h, w_, cin), cout in CONVS:
        x = jnp.asarray(rng.standard_normal((batch, h, w_, cin), np.float32))
        w = jnp.asarray(rng.standard_normal((3, 3, cin, cout), np.float32) * 0.1)
        g = jnp.asarray(rng.standard_normal((batch, h, w_, cout), np.float32))
        flops = conv_flops(batch, (h, w_, cin), cout)
        fwd = jax.jit(conv)
        wgrad = jax.jit(lambda x, w, g: jax.vjp(lambda k: conv(x, k), w)[1](g)[0])
        dgrad = jax.jit(lambda x, w, g: jax.vjp(lambda i: conv(i, w), x)[1](g)[0])
        ops[f"{name} forward"] = (lambda f=fwd, x=x, w=w: f(x, w), flops)
        if cin > 1:  # the images need no gradient
            ops[f"{name} input grad"] = (lambda f=dgrad, x=x, w=w, g=g: f(x, w, g), flops)
        ops[f"{name} weight grad"] = (lambda f=wgrad, x=x, w=w, g=g: f(x, w, g), flops)
    x = jnp.asarray(rng.standard_normal((batch, 28, 28, 64), np.float32))
    gam = jnp.ones((64,), jnp.float32)

    def bn_relu(x: Any, gam: Any) -> Any:
        mean, var = jnp.mean(x, (0, 1, 2)), jnp.var(x, (0, 1, 2))
        return jnp.sum(jax.nn.relu((x - mean) * lax.rsqrt(var + BN_EPS) * gam))

    def pool(x: Any) -> Any:
        return jnp.sum(lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"))

    first_max = first_max_pool(jax, 2, 2)

    def tiled_pool(x: Any) -> Any:  # the JAX engine's pool (engines/jax/pooling.py)
        return jnp.sum(first_max(x))

    bn_grad, pool_grad = jax.jit(jax.grad(bn_relu, argnums=(0, 1))), jax.jit(jax.grad(pool))
    tiled_grad = jax.jit(jax.grad(tiled_pool))
    ops["BN+ReLU fwd+bwd (28x28x64)"] = (lambda: bn_grad(x, gam), 0.0)
    ops["max-pool fwd+bwd (28x28x64)"] = (lambda: pool_grad(x), 0.0)
    ops["max-pool fwd+bwd, engine's tiled pool"] = (lambda: tiled_grad(x), 0.0)
    a = jnp.asarray(rng.standard_normal((batch, 6272), np.float32))
    k = jnp.asarray(rng.standard_normal((6272, 128), np.float32) * 0.01)
    dense_grad = jax.jit(jax.grad(lambda a, k: jnp.sum(a @ k), argnums=(0, 1)))
    ops["dense1 fwd+bwd"] = (lambda: dense_grad(a, k), 3 * 2.0 * batch * 6272 * 128)
    return ops


def tf_ops(tf: Any, batch: int) -> dict[str, tuple[Callable[[], Any], float]]:
    """The same ops as `jax_ops`, each a `tf.function` (no XLA: what the TF engine runs, jit_compile=False)."""
    import numpy as np

    rng = np.random.default_rng(0)
    ops: dict[str, tuple[Callable[[], Any], float]] = {}
    one = [1, 1, 1, 1]
    for name, (h, w_, cin), cout in CONVS:
        x = tf.constant(rng.standard_normal((batch, h, w_, cin), np.float32))
        w = tf.constant(rng.standard_normal((3, 3, cin, cout), np.float32) * 0.1)
        g = tf.constant(rng.standard_normal((batch, h, w_, cout), np.float32))
        flops = conv_flops(batch, (h, w_, cin), cout)
        fwd = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
        dgrad = tf.function(lambda w, g, s=(batch, h, w_, cin): tf.raw_ops.Conv2DBackpropInput(
            input_sizes=s, filter=w, out_backprop=g, strides=one, padding="SAME"))
        wgrad = tf.function(lambda x, g, s=(3, 3, cin, cout): tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=s, out_backprop=g, strides=one, padding="SAME"))
        ops[f"{name} forward"] = (lambda f=fwd, x=x, w=w: f(x, w), flops)
        if cin > 1:
            ops[f"{name} input grad"] = (lambda f=dgrad, w=w, g=g: f(w, g), flops)
        ops[f"{name} weight grad"] = (lambda f=wgrad, x=x, g=g: f(x, g), flops)
    x = tf.constant(rng.standard_normal((batch, 28, 28, 64), np.float32))
    gam = tf.ones((64,))

    def grads(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        @tf.function
        def run(*a: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(a)
                out = fn(*a)
            return tape.gradient(out, a)
        return lambda: run(*args)

    def bn_relu(x: Any, gam: Any) -> Any:
        mean, var = tf.nn.moments(x, axes=[0, 1, 2])
        return tf.reduce_sum(tf.nn.relu(tf.nn.batch_normalization(x, mean, var, None, gam, BN_EPS)))

    ops["BN+ReLU fwd+bwd (28x28x64)"] = (grads(bn_relu, x, gam), 0.0)
    ops["max-pool fwd+bwd (28x28x64)"] = (grads(lambda x: tf.reduce_sum(tf.nn.max_pool2d(x, 2, 2, "VALID")), x), 0.0)
    a = tf.constant(rng.standard_normal((batch, 6272), np.float32))
    k = tf.constant(rng.standard_normal((6272, 128), np.float32) * 0.01)
    ops["dense1 fwd+bwd"] = (grads(lambda a, k: tf.reduce_sum(tf.matmul(a, k)), a, k), 3 * 2.0 * batch * 6272 * 128)
    return ops
