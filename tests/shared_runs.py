"""Real training runs that more than one test file asserts on: each is trained once per session by the
`trained` fixture (tests/conftest.py), which keys its cache by the configuration, so a file that asks for
another configuration gets its own run, never a look-alike.

The engine files check their schema and strategies on these runs; test_accuracy_contract.py checks that the
accuracy each one reports is the saved model's.
"""

from __future__ import annotations

#: The TensorFlow engine's small run (test_tf_engine.py): 2000 images in 7 steps of 256, 500 test images.
TF_SMALL: dict[str, object] = {"framework": "tensorflow", "limit_train": 2000, "limit_test": 500, "batch_size": 256,
                               "epochs": 1, "tensorboard": True}
#: 500 test images at eval batch 2000 split 500/0 over the two replicas: the empty part must neither crash
#: nor count.
TF_MIRRORED: dict[str, object] = dict(TF_SMALL, strategy="mirrored", workers=2, device="cpu", eval_batch_size=2000)
#: Two local workers, 4096 images in 8 steps of 512, 1000 test images in eval batches of 300 (the last one
#: partial): long enough for replica-local BatchNorm statistics to drift apart if they were ever reported.
TF_MULTIWORKER: dict[str, object] = {"framework": "tensorflow", "strategy": "multiworker", "workers": 2,
                                     "limit_train": 4096, "limit_test": 1000, "batch_size": 512,
                                     "eval_batch_size": 300, "epochs": 1, "tensorboard": False}

#: The PyTorch engine's small run (test_torch_engine.py): 2048 images in 8 steps of 256, 500 test images; CPU
#: even where a GPU is present (the ddp runs need 2 workers).
TORCH_SMALL: dict[str, object] = {"limit_train": 2048, "limit_test": 500, "batch_size": 256, "epochs": 1,
                                  "tensorboard": True, "device": "cpu"}
#: 499 test images: not divisible by 2, so padding or dropping would show.
TORCH_DDP: dict[str, object] = dict(TORCH_SMALL, strategy="ddp", workers=2, limit_test=499)
#: The sharded strategies on the same run; fsdp at eval batch 100, so the 250/249 test shards are run in the same
#: number of forward passes (each one all-gathers) on both ranks.
TORCH_ZERO1: dict[str, object] = dict(TORCH_DDP, strategy="zero1")
TORCH_FSDP: dict[str, object] = dict(TORCH_DDP, strategy="fsdp", eval_batch_size=100)
#: wide_mlp (20 M parameters) for 4 steps of 128 on 2 workers, SGD with momentum, dropout off: the same
#: configuration as tests/test_sharding.py's PARITY, so its parity and state checks and tests/test_report_sharding.py's
#: report on real runs share one session's ddp, zero1 and fsdp runs.
WIDE_SGD: dict[str, object] = {"model": "wide_mlp", "workers": 2, "limit_train": 512, "limit_test": 200,
                               "batch_size": 128, "epochs": 1, "device": "cpu", "tensorboard": False,
                               "dropout": 0.0, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
#: Every run of WIDE_SGD the session asserts on (tests/test_sharding.py and tests/test_report_sharding.py): the file
#: that asks first trains them all at once with `trained.together` (their assertions read bytes, parameters and
#: accuracy, no timing), the other finds them trained. A new strategy's case on WIDE_SGD belongs in this list.
#: Strategy tensor on WIDE_SGD's run (tests/test_tensor_parallel.py), and the one-worker `single` run it must
#: match; test_accuracy_contract.py reloads the tensor run's model.pt.
TORCH_TENSOR: dict[str, object] = dict(WIDE_SGD, strategy="tensor")
WIDE_SGD_SINGLE: dict[str, object] = dict(WIDE_SGD, strategy="single", workers=1)
WIDE_SGD_RUNS: list[dict[str, object]] = [
    *(dict(WIDE_SGD, strategy=strategy) for strategy in ("ddp", "zero1", "fsdp")),
    dict(WIDE_SGD, strategy="fsdp", precision="bf16"), TORCH_TENSOR, WIDE_SGD_SINGLE,
]
#: The JAX engine's small run (tests/test_jax_engine.py's single run, and `pvision predict`'s oracle in
#: tests/test_predict.py, which predicts the first 500 of its test images): 1024 images in 4 steps of 256, all
#: 10,000 test images evaluated.
JAX_SMALL: dict[str, object] = {"framework": "jax", "limit_train": 1024, "batch_size": 256, "epochs": 1,
                                "tensorboard": True}
#: A torch run good enough for out-of-distribution digits (tests/test_predict.py's load_digits check): 2048 images
#: in 64 steps of 32 reach ~95 % on 500 MNIST test images; TORCH_SMALL's 8 steps (~44 %) call every 8×8 digit a 1.
TORCH_DIGITS: dict[str, object] = {"limit_train": 2048, "limit_test": 500, "batch_size": 32, "epochs": 1,
                                   "tensorboard": False, "device": "cpu"}
#: pipeline on 2 stages, 4 micro-batches of 16, against `single --grad-accum 4` (tests/test_pipeline.py's parity):
#: paper_cnn (BatchNorm everywhere), 4 SGD steps, dropout off, one thread per process (a second thread alone changes
#: a running variance by 0.29 after these 4 steps: its reductions round differently, micro-batches of 16 amplify it).
TORCH_PIPELINE: dict[str, object] = {"strategy": "pipeline", "workers": 2, "microbatches": 4, "limit_train": 256,
                                     "limit_test": 100, "batch_size": 64, "epochs": 1, "device": "cpu",
                                     "tensorboard": False, "dropout": 0.0, "optimizer": "sgd", "lr": 0.05,
                                     "momentum": 0.9, "threads_per_worker": 1}
TORCH_ACCUM4: dict[str, object] = dict(TORCH_PIPELINE, strategy="single", workers=1, microbatches=None, grad_accum=4)
#: JAX model parallelism (test_jax_model_parallel.py): wide_mlp in 4 steps of 64 on 256
#: images, 256 test images, dropout as the model has it, split over 2 virtual CPU devices; JAX_WIDE is its `single`
#: twin for the parity check (same seed, same data order, same dropout draws).
JAX_WIDE: dict[str, object] = {"framework": "jax", "model": "wide_mlp", "limit_train": 256, "limit_test": 256,
                               "batch_size": 64, "epochs": 1, "tensorboard": False}
JAX_MODEL_PARALLEL: dict[str, object] = dict(JAX_WIDE, strategy="model-parallel", workers=2, device="cpu")
