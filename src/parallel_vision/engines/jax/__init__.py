"""The JAX engine (Keras 3 on the JAX backend): `single`, `dp` (keras.distribution.DataParallel over the
local devices: GPUs or N virtual CPU devices) and `multiworker` (one process per device through
keras.distribution.initialize / jax.distributed; see docs/jax.md).

Importing this package loads no framework: it only describes the engine to the launcher.
`engine.py` (the training code, which imports JAX and Keras) runs inside the engine process.
"""

from __future__ import annotations

from parallel_vision.engines.jax import backup, cluster
from parallel_vision.engines.keras.spec import keras_engine

ENGINE = keras_engine("jax", backup, cluster)
