"""The TensorFlow/Keras engine: `single`, `mirrored` (MirroredStrategy), `multiworker`
(MultiWorkerMirroredStrategy, one process per worker through TF_CONFIG).

Importing this package loads no framework: it only describes the engine to the launcher, its
multiworker job included (`cluster.py` reads TF_CONFIG without TensorFlow).
`engine.py` (the training code, which imports TensorFlow) runs inside the engine process.
"""

from __future__ import annotations

from parallel_vision.engines.spec import ClusterEnv, EngineSpec, ResumeFiles
from parallel_vision.engines.tensorflow import backup, cluster

ENGINE = EngineSpec(
    framework="tensorflow",
    entry="parallel_vision.engines.tensorflow.engine:train_and_evaluate",
    resume=ResumeFiles(present=backup.present, describe=backup.describe, remove=backup.remove),
    cluster=ClusterEnv.of(("multiworker",), cluster),
    model_file="model.keras",
    predict="parallel_vision.engines.keras.predict",
)
