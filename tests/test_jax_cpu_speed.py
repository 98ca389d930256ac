"""The JAX engine's CPU speed levers (issue #31, docs/jax.md "Why JAX is slower on this CPU").

Its XLA_FLAGS hold only `--` flags (XLA stops reading at a bare word, hiding every flag after it). Its max-pooling
(engines/jax/pooling.py): reshape + max where windows tile the input, Keras' own
`lax.reduce_window` everywhere else. Checked in one fresh JAX process (JAX never loads in the pytest process) on
real MNIST activations: the forward values are Keras' bit for bit, the gradient through ReLU and pooling matches
Keras' within fp32 rounding, and the cases it must not touch are handed to Keras. That the engine's runs use it
is asserted on the shared JAX run (tests/test_jax_engine.py: `environment.max_pool`); the speed-up is measured
by benchmarks/jax_cpu.py (docs/jax.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parallel_vision.engines.jax.pooling import NOTE
from parallel_vision.engines.jax.setup import xla_flags

pytestmark = [pytest.mark.jax, pytest.mark.skipif(importlib.util.find_spec("jax") is None or
                                                  importlib.util.find_spec("keras") is None,
                                                  reason="JAX is not installed")]

CHILD = r"""
import json, os, sys
import numpy as np
from parallel_vision.engines.jax.setup import import_jax, xla_flags
os.environ.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags("", None, True))
jax, keras = import_jax()  # the engine's import: installs the pooling
from keras.src.backend.jax import nn as backend_nn
from parallel_vision.data import load
from parallel_vision.engines.jax import pooling
tiled, keras_pool = backend_nn.max_pool, backend_nn.max_pool.original
images = load("mnist", "train", sys.argv[1])[0][:64].astype(np.float32)[..., None] / 255.0
keras.utils.set_random_seed(0)
pre = np.asarray(keras.layers.Conv2D(32, 3, padding="same")(images))  # real pre-activations, (64, 28, 28, 32)
weights = np.random.default_rng(0).standard_normal((64, 14, 14, 32)).astype(np.float32)
def grad(pool):
    return np.asarray(jax.grad(lambda p: (pool(jax.nn.relu(p), (2, 2), (2, 2), "valid") * weights).sum())(pre))
relu = np.maximum(pre, 0)
odd = relu[:, :27, :27]  # 'valid' drops the last row and column
print(json.dumps({
    "installed": pooling.describe(),
    "forward_equal": bool(np.array_equal(tiled(relu, (2, 2), None, "valid"),
                                         keras_pool(relu, (2, 2), (2, 2), "valid"))),
    "odd_equal": bool(np.array_equal(tiled(odd, (2, 2), (2, 2), "valid"), keras_pool(odd, (2, 2), (2, 2), "valid"))),
    "grad_max_diff": float(np.abs(grad(tiled) - grad(keras_pool)).max()),
    "grad_scale": float(np.abs(grad(keras_pool)).max()),
    "grad_nonzero": int((grad(tiled) != 0).sum()),
    "overlapping_is_keras": bool(np.array_equal(tiled(relu, 3, 2, "same"), keras_pool(relu, 3, 2, "same"))),
    "overlapping_shape": list(tiled(relu, 3, 2, "same").shape),
    "layer_output_equal": bool(np.array_equal(keras.layers.MaxPooling2D(2)(relu), keras_pool(relu, 2, 2, "valid"))),
}))
"""


def test_tiled_max_pool_is_keras_forward_and_gradient_bit_for_bit(data_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(data_dir)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["installed"] == NOTE
    assert got["forward_equal"] and got["odd_equal"] and got["layer_output_equal"]
    # Ties (equal maxima in a window) are common on MNIST: all of the gradient goes to the first, as in Keras.
    assert got["grad_max_diff"] == 0.0 and got["grad_nonzero"] > 10_000
    # Overlapping windows (ResNet's stem pool: 3, stride 2, 'same') stay Keras' reduce_window.
    assert got["overlapping_is_keras"] and got["overlapping_shape"] == [64, 14, 14, 32]


def test_the_engines_xla_flags_are_all_flags_so_xla_reads_a_users_flag_after_them() -> None:
    for virtual, single in ((None, True), (2, True), (2, False)):
        flags = xla_flags("--xla_cpu_enable_fast_math=true", virtual, single).split()
        assert flags[0] == "--xla_cpu_enable_fast_math=true" and all(f.startswith("--") for f in flags), flags
    assert "--xla_cpu_multi_thread_eigen=false" in xla_flags("", None, True).split()
