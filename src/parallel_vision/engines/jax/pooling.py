"""Max-pooling whose gradient XLA:CPU runs fast: a reshape and a max instead of `lax.reduce_window`.

Why: Keras' JAX backend pools with `lax.reduce_window(max)`, whose gradient XLA lowers to `select-and-scatter`,
and XLA:CPU (jaxlib 0.10.2) runs that op ~30x slower than TensorFlow's MaxPoolGrad: measured alone at the paper
CNN's first pool (28x28x64, one thread), 571 against 17 CPU-ms at batch 512, about a fifth of the JAX engine's
whole train step with the second pool (benchmarks/jax_cpu.py, docs/jax.md "Why JAX is slower on this CPU"). When the
windows tile the image (pool size = strides, no padding needed), max-pooling is exactly a max over two reshaped
axes, whose gradient is an elementwise select XLA fuses. `jnp.max`'s own gradient would split a tie (several equal
maxima in one window: common on MNIST, whose saturated strokes give equal activations) evenly; a custom VJP keeps
reduce_window's rule instead, all to the first maximum, so forward values and gradients are Keras' own bit for bit.

`install` swaps Keras' backend function in this process only (the JAX engine's): the model, its saved file and
every other case (overlapping or padded windows, channels_first, 1D/3D) stay Keras' own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

NOTE = ("Keras' max_pool on JAX as reshape + max, with reduce_window's gradient, where windows tile the input "
        "(engines/jax/pooling.py)")


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def first_max_pool(jax: Any, ph: int, pw: int) -> Callable[[Any], Any]:
    """Max over (ph, pw) tiles of an NHWC array whose height and width they divide, with reduce_window's gradient:
    all of it to the first maximum of each window in row-major order (XLA's select-and-scatter with `ge`; what
    TensorFlow's MaxPoolGrad and torch do too), where `jnp.max`'s own gradient would split ties evenly."""
    jnp = jax.numpy

    def tiles(x: Any) -> Any:
        b, h, w, c = x.shape
        return x.reshape(b, h // ph, ph, w // pw, pw, c)

    @jax.custom_vjp
    def pool(x: Any) -> Any:
        return jnp.max(tiles(x), axis=(2, 4))

    def forward(x: Any) -> tuple[Any, Any]:
        out = pool(x)
        return out, (x, out)

    def backward(saved: Any, g: Any) -> tuple[Any]:
        x, out = saved
        hit = tiles(x) == out[:, :, None, :, None, :]
        taken = jnp.zeros(out.shape, bool)
        rows = []
        for i in range(ph):
            row = []
            for j in range(pw):
                first = hit[:, :, i, :, j, :] & ~taken
                taken = taken | first
                row.append(jnp.where(first, g, 0).astype(g.dtype))
            rows.append(jnp.stack(row, axis=3))
        return (jnp.stack(rows, axis=2).reshape(x.shape),)

    pool.defvjp(forward, backward)
    return pool


def tiled_max_pool(original: Callable[..., Any], jax: Any, default_format: Callable[[], str]) -> Callable[..., Any]:
    """Keras' `max_pool(inputs, pool_size, strides, padding, data_format)`, tiled 2D channels_last windows
    done by `first_max_pool`, everything else handed to `original`; `default_format` is Keras' image_data_format."""
    pools: dict[tuple[int, int], Callable[[Any], Any]] = {}

    def max_pool(inputs: Any, pool_size: Any, strides: Any = None, padding: str = "valid",
                 data_format: str | None = None) -> Any:
        pool = _pair(pool_size)
        stride = pool if strides is None else _pair(strides)
        layout = data_format or default_format()
        if getattr(inputs, "ndim", 0) != 4 or layout != "channels_last" or pool is None or stride != pool:
            return original(inputs, pool_size, strides, padding, data_format)
        height, width = inputs.shape[1], inputs.shape[2]
        (ph, pw), pad = pool, str(padding).lower()
        if pad == "same" and (height % ph or width % pw) or pad not in ("same", "valid"):
            return original(inputs, pool_size, strides, padding, data_format)
        if pool not in pools:
            pools[pool] = first_max_pool(jax, ph, pw)
        # 'valid' drops a remainder row or column, as reduce_window does (its gradient there is 0).
        return pools[pool](inputs[:, : height // ph * ph, : width // pw * pw, :])

    max_pool.original = original  # type: ignore[attr-defined]
    return max_pool


def install(keras: Any) -> str | None:
    """Route Keras' JAX max_pool through `tiled_max_pool` in this process; returns NOTE, or None when
    Keras runs on another backend or its backend module has moved (then Keras' own pool runs)."""
    if keras.backend.backend() != "jax":
        return None
    try:
        import jax
        from keras.src.backend.jax import nn as keras_jax_nn
    except ImportError:  # pragma: no cover - a Keras without this module layout
        return None
    current = keras_jax_nn.max_pool
    if not hasattr(current, "original"):
        keras_jax_nn.max_pool = tiled_max_pool(current, jax, keras.config.image_data_format)
    return NOTE


def describe() -> str:
    """What Keras' max_pool is in this process: NOTE once `install` ran, else Keras' own."""
    keras_jax_nn = sys.modules.get("keras.src.backend.jax.nn")
    return NOTE if hasattr(getattr(keras_jax_nn, "max_pool", None), "original") else "Keras' own (lax.reduce_window)"
