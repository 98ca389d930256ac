"""What a TensorFlow run's result says of its environment. The run ends through the Keras layer's `finish`
(engines/keras/outputs.py: model.keras, predictions, result.json, complete or stopped), given `environment`.
"""

from __future__ import annotations

from typing import Any

from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.provenance import host_environment


def environment(run: TFRun) -> dict[str, Any]:
    tf, keras, cfg, placement = run.tf, run.keras, run.cfg, run.placement
    env = host_environment()
    env.update(
        {
            "framework": "tensorflow",
            "tf_version": tf.__version__,
            "keras_version": keras.__version__,
            "devices": placement.devices,
            "gpus": placement.gpus,
            "strategy": cfg.strategy_spec.api,
            "num_replicas_in_sync": int(placement.strategy.num_replicas_in_sync),
            "cross_device_ops": placement.cross_device_ops,
            "world_size": placement.world_size,
            "intra_op_threads": placement.intra_op_threads,
            "inter_op_threads": placement.inter_op_threads,
            "dtype_policy": keras.mixed_precision.global_policy().name,
            "jit_compile": bool(cfg.jit_compile),
            "cluster": placement.cluster.cluster if placement.cluster else None,
        }
    )
    return env
