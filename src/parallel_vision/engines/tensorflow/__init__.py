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
    cluster=ClusterEnv(
        strategy="multiworker",
        present=cluster.present,
        world_size=lambda: cluster.cluster_from_env(None).world_size,
        # The chief, or worker 0 without one (ClusterTask's rule, which also refuses a malformed TF_CONFIG
        # in one line, before any folder is made).
        is_writer=lambda workers: cluster.cluster_from_env(workers).is_writer,
        layout=cluster.layout,
        describe_worker=cluster.describe_worker,
        worker_environment=cluster.worker_environment,
        variables=cluster.TF_CONFIG,
        describe_world=lambda n: f"{cluster.TF_CONFIG} describes {n} training process(es)",
    ),
)
