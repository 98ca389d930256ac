"""`pvision train`: one run of one model under one framework and strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from parallel_vision import strategies
from parallel_vision.config import RunConfig
from parallel_vision.data.paths import absolute
from parallel_vision.errors import ConfigError
from parallel_vision.launch import run
from parallel_vision.launch.cluster import workers_under_launcher

#: Every default is RunConfig's own, stated once there.
D = RunConfig()
#: Options whose RunConfig field has another name; options that are not part of the config.
_FIELD_OF = {"threads": "threads_per_worker", "out": "out_dir", "no_tensorboard": "tensorboard"}
_NOT_CONFIG = ("config_file", "overwrite", "quiet")
#: Where a value came from when the user gave it (click's ParameterSource names; typer vendors click).
_GIVEN = ("COMMANDLINE", "ENVIRONMENT")


def _config_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The RunConfig fields the command line describes (paths made absolute: they are the user's)."""
    fields = {_FIELD_OF.get(k, k): v for k, v in params.items() if k not in _NOT_CONFIG}
    fields["tensorboard"] = not params["no_tensorboard"]
    for key in ("data_dir", "out_dir"):
        fields[key] = str(absolute(fields[key])) if fields[key] else None
    return fields


def _read_config(path: Path) -> RunConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return RunConfig.from_json(text)


def _summary_table(result) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    table = Table(title=f"{result.data['config']['framework']} · {result.data['config']['strategy']} · "
                  f"{s['world_size']} worker(s)", show_header=False)
    rows = [
        ("test accuracy", f"{s['test_accuracy'] * 100:.2f} % of {s['n_test_evaluated']} images"),
        ("test loss", f"{s['test_loss']:.4f}"),
        ("mean epoch time", f"{s['mean_epoch_time_s']:.2f} s (warm-up epoch {s['warmup_epoch_time_s']:.2f} s, "
                            f"steady {s['mean_epoch_time_excl_warmup_s']:.2f} s)"),
        ("throughput", f"{s['images_per_s']:.0f} images/s"),
        *([("time to target", f"{s['time_to_target_s']:.1f} s ({s['epochs_to_target']} epochs) to "
                               f"{s['target_accuracy'] * 100:.2f} %" if s.get("target_reached") else
                               f"not reached ({s['target_accuracy'] * 100:.2f} %)")] if "target_reached" in s else []),
        *([("all-reduce bytes / step", f"{s['comm_bytes_per_step'] / 1e6:.3f} MB per worker")]
          if s.get("comm_bytes_per_step") is not None else []),
        ("training time", f"{s['train_time_s']:.1f} s over {s['epochs_completed']} epochs"),
        ("total time", f"{s['total_time_s']:.1f} s from launch"),
        ("output", str(result.out_dir)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def train(
    ctx: typer.Context,
    framework: str = typer.Option(D.framework, "--framework", "-f", help=", ".join(strategies.frameworks()) + "."),
    strategy: str = typer.Option(D.strategy, "--strategy", "-s", help=strategies.cli_help()),
    workers: int | None = typer.Option(None, "--workers", "-n", help=f"Replicas: processes "
                                       f"({strategies.per_worker_names()}) or devices [default: 1, or the world "
                                       "size torchrun / TF_CONFIG set up]."),
    epochs: int = typer.Option(D.epochs, "--epochs", "-e"),
    batch_size: int = typer.Option(D.batch_size, "--batch-size", "-b", help="Global batch, split evenly over workers."),
    lr: float = typer.Option(D.lr, "--lr"),
    optimizer: str = typer.Option(D.optimizer, "--optimizer", help="adam or sgd."),
    momentum: float = typer.Option(D.momentum, "--momentum", help="SGD momentum."),
    dropout: float = typer.Option(D.dropout, "--dropout"),
    init: str = typer.Option(D.init, "--init", help="framework (each framework's default weight init and "
                             "Adam epsilon) or aligned (identical initial weights and optimiser constants in "
                             "both frameworks; docs/definitions.md)."),
    lr_schedule: str = typer.Option(D.lr_schedule, "--lr-schedule", help="constant or onecycle (torch)."),
    label_smoothing: float = typer.Option(D.label_smoothing, "--label-smoothing",
                                          help="Cross-entropy label smoothing (torch)."),
    lr_scaling: str = typer.Option(D.lr_scaling, "--lr-scaling", help="none, linear or sqrt: scale --lr by "
                                   "(batch ÷ --base-batch) or its root (docs/levers.md)."),
    base_batch: int | None = typer.Option(None, "--base-batch", help="The global batch --lr was tuned for."),
    warmup_epochs: int = typer.Option(D.warmup_epochs, "--warmup-epochs", help="Gradual warm-up to the (scaled) "
                                      "rate over K epochs, step by step (Goyal et al.)."),
    grad_accum: int = typer.Option(D.grad_accum, "--grad-accum", help="Micro-batches per optimiser step; --batch-size "
                                   "stays the global batch per step."),
    grad_compression: str = typer.Option(D.grad_compression, "--grad-compression", help="none, fp16, bf16 or "
                                         "powersgd[:rank]: torch DDP communication hooks."),
    target_accuracy: float | None = typer.Option(None, "--target-accuracy", help="Record the training time to the "
                                                 "first epoch whose test accuracy reaches A (e.g. 0.99)."),
    stop_at_target: bool = typer.Option(D.stop_at_target, "--stop-at-target", help="End training once "
                                        "--target-accuracy is reached."),
    seed: int = typer.Option(D.seed, "--seed"),
    model: str = typer.Option(D.model, "--model", "-m", help="paper_cnn, resnet18 or wide_mlp (docs/models.md)."),
    dataset: str = typer.Option(D.dataset, "--dataset", help="mnist, fashion-mnist, kmnist, cifar10 or synthetic "
                                "(random images, throughput only; docs/datasets.md)."),
    image_size: int | None = typer.Option(None, "--image-size", help="synthetic: image side [default: 32]."),
    channels: int | None = typer.Option(None, "--channels", help="synthetic: 1 or 3 channels [default: 3]."),
    classes: int | None = typer.Option(None, "--classes", help="synthetic: number of classes [default: 10]."),
    augment: bool = typer.Option(D.augment, "--augment", help="Random crop (pad 4) and horizontal flip on the "
                                 "device (cifar10, synthetic)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Dataset folder (else $PVISION_DATA_DIR, "
                                            "else the user cache, downloading if needed)."),
    limit_train: int | None = typer.Option(None, "--limit-train", help="Use the first N training images."),
    limit_test: int | None = typer.Option(None, "--limit-test", help="Use the first N test images."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default runs/<stamp>-...)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads per worker (default cores ÷ "
                                          "processes)."),
    device: str = typer.Option(D.device, "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option(D.precision, "--precision", help="fp32, bf16, fp16 (CUDA) or auto (bf16 where "
                                   "measured faster: PyTorch on GPUs and CPUs with native bfloat16; recorded)."),
    memory_format: str = typer.Option(D.memory_format, "--memory-format", help="channels_last or contiguous."),
    fused_bn: bool = typer.Option(D.fused_bn, "--fused-bn/--reference-bn",
                                  help="CPU: BatchNorm→ReLU→max-pool as one fused autograd step (less memory, "
                                  "faster; the same gradients bit for bit with --no-inplace-bn-backward); "
                                  "--reference-bn runs the plain modules."),
    recompute_stem: bool = typer.Option(D.recompute_stem, "--recompute-stem/--no-recompute-stem",
                                        help="With --fused-bn: recompute the first conv block in backward instead "
                                        "of keeping it (less memory, same gradients, a little slower)."),
    inplace_bn_backward: bool = typer.Option(D.inplace_bn_backward, "--inplace-bn-backward/--no-inplace-bn-backward",
                                             help="With --fused-bn: BatchNorm's input gradient in place (the default: "
                                             "~0.5 GiB less per DDP worker, same speed; gradients within fp32 "
                                             "rounding of ATen's, not bit-identical)."),
    reshard_after_forward: bool = typer.Option(D.reshard_after_forward,
                                               "--reshard-after-forward/--no-reshard-after-forward",
                                               help="fsdp: free gathered parameters after each unit's forward "
                                               "(ZeRO-3) or keep them until backward (ZeRO-2)."),
    microbatches: int | None = typer.Option(D.microbatches, "--microbatches",
                                            help="pipeline: micro-batches per step (default 4 × workers)."),
    pipeline_schedule: str = typer.Option(D.pipeline_schedule, "--pipeline-schedule",
                                          help="pipeline: 1f1b or gpipe."),
    compile: bool = typer.Option(D.compile, "--compile", help="torch.compile the model (time reported apart)."),
    compile_mode: str = typer.Option(D.compile_mode, "--compile-mode",
                                     help="torch.compile mode, e.g. reduce-overhead."),
    jit_compile: bool = typer.Option(D.jit_compile, "--jit-compile", help="XLA-compile the Keras model."),
    sync_batchnorm: bool = typer.Option(D.sync_batchnorm, "--sync-batchnorm", help="SyncBatchNorm across DDP workers."),
    pin_threads: bool = typer.Option(D.pin_threads, "--pin-threads", help="Pin each CPU worker to its own cores."),
    malloc_tuning: bool = typer.Option(D.malloc_tuning, "--malloc-tuning/--no-malloc-tuning",
                                       help="Keep freed memory in the process between steps (torch CPU): "
                                       "~35 % faster than glibc's defaults (which return it and zero it again)."),
    allocator: str = typer.Option(D.allocator, "--allocator", help="torch CPU workers' C allocator: auto (tcmalloc "
                                  "where installed, else glibc), glibc or tcmalloc (less peak memory, same speed)."),
    eval_batch_size: int = typer.Option(D.eval_batch_size, "--eval-batch-size", help="Test images per forward pass "
                                        "when evaluating (memory only; results do not change)."),
    deterministic: bool = typer.Option(D.deterministic, "--deterministic", help="Deterministic kernels."),
    checkpoint_every: int = typer.Option(D.checkpoint_every, "--checkpoint-every", help="Checkpoint every N steps "
                                         "too (always at epoch ends; torch: OUT/checkpoint.pt)."),
    resume: bool = typer.Option(D.resume, "--resume", help="Continue the unfinished run in --out from its checkpoint "
                                "(see docs/reliability.md)."),
    master_port: int | None = typer.Option(None, "--master-port", help="DDP rendezvous port on 127.0.0.1 "
                                              "(default: a free port chosen at launch)."),
    collective_timeout: float | None = typer.Option(None, "--collective-timeout", metavar="SECONDS",
                                                    help="How long a lost peer may stay silent before the run exits "
                                                    "75. torch DDP: a collective, the rendezvous store and the step "
                                                    "watchdog (default: $PVISION_DIST_TIMEOUT_S, else 300); JAX "
                                                    "multiworker: the coordination service's heartbeat timeout "
                                                    "(default: JAX's 100)."),
    no_tensorboard: bool = typer.Option(not D.tensorboard, "--no-tensorboard", help="Do not write TensorBoard logs."),
    config_file: Path | None = typer.Option(None, "--config", help="Start from a RunConfig in JSON (e.g. a run's "
                                               "config.json); options given on the command line override it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse an --out folder holding a finished run, or "
                                   "start an unfinished one again."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
) -> None:
    """Train one model once and write result.json, predictions, model and TensorBoard logs."""
    given = {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", None) in _GIVEN}
    fields = _config_fields(ctx.params)
    if config_file is not None:
        base = _read_config(config_file).to_dict()
        base.update({_FIELD_OF.get(name, name): fields[_FIELD_OF.get(name, name)] for name in given
                     if _FIELD_OF.get(name, name) in fields})  # the command line wins over the file
        cfg = RunConfig.from_dict(base)
    else:
        fields["workers"] = workers_under_launcher(framework, strategy, workers)
        cfg = RunConfig.from_dict(fields)
    result = run(cfg, progress=not quiet, overwrite=overwrite)
    if not quiet and result.path is not None:
        _summary_table(result)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
