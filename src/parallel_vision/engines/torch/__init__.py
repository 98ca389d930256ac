"""The PyTorch engine: `single`, `dp` (nn.DataParallel), `ddp` (DistributedDataParallel), the sharded `zero1`
and `fsdp` (engines/torch/sharding.py) and `tensor` (tensor parallelism, engines/torch/tensor_parallel.py).

Importing this package loads no framework: it only describes the engine to the launcher (`cluster.py`:
a torchrun job, read from the environment). `engine.py` (the entry; with `loop`, `resume`, `dist`,
`data`, `devices`, `build` and `outputs`, the training code, which imports torch) runs inside the
engine process.
"""

from __future__ import annotations

from parallel_vision.engines.spec import ClusterEnv, EngineSpec, ResumeFiles
from parallel_vision.engines.torch import checkpoint, cluster

ENGINE = EngineSpec(
    framework="torch",
    entry="parallel_vision.engines.torch.engine:train_and_evaluate",
    resume=ResumeFiles(present=checkpoint.present, describe=checkpoint.describe, remove=checkpoint.remove,
                       auto_resume=checkpoint.elastic_auto_resume),
    cluster=ClusterEnv.of(("ddp", "zero1", "fsdp", "pipeline", "tensor"), cluster),  # every per-worker torch strategy
    model_file="model.pt",
    predict="parallel_vision.engines.torch.predict",
    explain="parallel_vision.engines.torch.explain",
)
