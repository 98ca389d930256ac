"""How a Keras 3 engine describes itself to the launcher: the same for the TensorFlow and JAX backends but for
the framework's name, its backup folder and its cluster variables. Framework-free, like every `EngineSpec`.
"""

from __future__ import annotations

from types import ModuleType

from parallel_vision.engines.spec import ClusterEnv, EngineSpec, ResumeFiles


def keras_engine(framework: str, backup: ModuleType, cluster: ModuleType) -> EngineSpec:
    """The `EngineSpec` of the Keras engine `parallel_vision.engines.<framework>`: model.keras, epoch-end
    backups, a launcher-started `multiworker` strategy, and `pvision predict` and `pvision explain` through the
    Keras layer."""
    return EngineSpec(
        framework=framework,
        entry=f"parallel_vision.engines.{framework}.engine:train_and_evaluate",
        resume=ResumeFiles(present=backup.present, describe=backup.describe, remove=backup.remove),
        cluster=ClusterEnv.of(("multiworker",), cluster),
        model_file="model.keras",
        predict="parallel_vision.engines.keras.predict",
        explain="parallel_vision.engines.keras.explain",
    )
