"""The TensorFlow/Keras engine: `single`, `mirrored` (MirroredStrategy), `multiworker`
(MultiWorkerMirroredStrategy, one process per worker through TF_CONFIG).

Importing this package loads no framework: it only describes the engine to the launcher, its
multiworker job included (`cluster.py` reads TF_CONFIG without TensorFlow).
`engine.py` (the training code, which imports TensorFlow) runs inside the engine process.
"""

from __future__ import annotations

from parallel_vision.engines.keras.spec import keras_engine
from parallel_vision.engines.tensorflow import backup, cluster

ENGINE = keras_engine("tensorflow", backup, cluster)
