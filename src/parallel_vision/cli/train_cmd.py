"""`pvision train`: one run of the paper's CNN under one framework and strategy."""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.config import RunConfig


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
        ("training time", f"{s['train_time_s']:.1f} s over {s['epochs_completed']} epochs"),
        ("total time", f"{s['total_time_s']:.1f} s from launch"),
        ("output", str(result.out_dir)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def train(
    framework: str = typer.Option("torch", "--framework", "-f", help="torch or tensorflow."),
    strategy: str = typer.Option("single", "--strategy", "-s", help="torch: single|dp|ddp; tensorflow: "
                                 "single|mirrored|multiworker."),
    workers: int | None = typer.Option(None, "--workers", "-n", help="Replicas: processes (ddp, multiworker) or "
                                       "devices [default: 1, or the world size torchrun / TF_CONFIG set up]."),
    epochs: int = typer.Option(30, "--epochs", "-e"),
    batch_size: int = typer.Option(2048, "--batch-size", "-b", help="Global batch, split evenly over workers."),
    lr: float = typer.Option(1e-3, "--lr"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam or sgd."),
    momentum: float = typer.Option(0.0, "--momentum", help="SGD momentum."),
    dropout: float = typer.Option(0.25, "--dropout"),
    init: str = typer.Option("framework", "--init", help="framework (each framework's default weight init and "
                             "Adam epsilon) or aligned (identical initial weights and optimiser constants in "
                             "both frameworks; docs/definitions.md)."),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant or onecycle (torch)."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", help="Cross-entropy label smoothing (torch)."),
    seed: int = typer.Option(0, "--seed"),
    dataset: str = typer.Option("mnist", "--dataset", help="mnist or fashion-mnist."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Dataset folder (else $PVISION_DATA_DIR, "
                                            "else the user cache, downloading if needed)."),
    limit_train: int | None = typer.Option(None, "--limit-train", help="Use the first N training images."),
    limit_test: int | None = typer.Option(None, "--limit-test", help="Use the first N test images."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default runs/<stamp>-...)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads per worker (default cores ÷ "
                                          "processes)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (CUDA)."),
    memory_format: str = typer.Option("channels_last", "--memory-format", help="channels_last or contiguous."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (time reported apart)."),
    compile_mode: str = typer.Option("default", "--compile-mode", help="torch.compile mode, e.g. reduce-overhead."),
    jit_compile: bool = typer.Option(False, "--jit-compile", help="XLA-compile the Keras model."),
    sync_batchnorm: bool = typer.Option(False, "--sync-batchnorm", help="SyncBatchNorm across DDP workers."),
    pin_threads: bool = typer.Option(False, "--pin-threads", help="Pin each CPU worker to its own cores."),
    malloc_tuning: bool = typer.Option(True, "--malloc-tuning/--no-malloc-tuning",
                                       help="Keep freed memory in the process between steps (torch, glibc): "
                                       "~35 % faster on CPU, ~0.7 GiB more peak memory per worker."),
    eval_batch_size: int = typer.Option(500, "--eval-batch-size", help="Test images per forward pass when "
                                        "evaluating (memory only; results do not change)."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic kernels."),
    checkpoint_every: int = typer.Option(0, "--checkpoint-every", help="Checkpoint every N steps too (always at "
                                         "epoch ends; torch: OUT/checkpoint.pt)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run in --out from its checkpoint "
                                "(see docs/reliability.md)."),
    master_port: int | None = typer.Option(None, "--master-port", help="DDP rendezvous port on 127.0.0.1 "
                                              "(default: a free port chosen at launch)."),
    no_tensorboard: bool = typer.Option(False, "--no-tensorboard", help="Do not write TensorBoard logs."),
    config_file: Path | None = typer.Option(None, "--config", help="Read the whole RunConfig from JSON "
                                               "(other options are then ignored)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse an --out folder holding a finished run, or "
                                   "start an unfinished one again."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
) -> None:
    """Train the paper's CNN once and write result.json, predictions, model and TensorBoard logs."""
    from parallel_vision.data.paths import absolute
    from parallel_vision.launch import run
    from parallel_vision.launch.cluster import workers_under_launcher

    if config_file is not None:
        from parallel_vision.errors import ConfigError

        try:
            text = config_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {config_file}: {exc.strerror}") from None
        cfg = RunConfig.from_json(text)
    else:
        workers = workers_under_launcher(framework, strategy, workers)
        cfg = RunConfig(
            framework=framework, strategy=strategy, workers=workers, epochs=epochs,  # type: ignore[arg-type]
            batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,  # type: ignore[arg-type]
            dropout=dropout, seed=seed, lr_schedule=lr_schedule, init=init,  # type: ignore[arg-type]
            label_smoothing=label_smoothing, pin_threads=pin_threads, malloc_tuning=malloc_tuning,
            dataset=dataset, data_dir=str(absolute(data_dir)) if data_dir else None,
            limit_train=limit_train, limit_test=limit_test, out_dir=str(absolute(out)) if out else None,
            threads_per_worker=threads, device=device, precision=precision,  # type: ignore[arg-type]
            memory_format=memory_format, compile=compile, jit_compile=jit_compile,  # type: ignore[arg-type]
            compile_mode=compile_mode,  # type: ignore[arg-type]
            sync_batchnorm=sync_batchnorm, deterministic=deterministic, eval_batch_size=eval_batch_size,
            checkpoint_every=checkpoint_every, resume=resume, tensorboard=not no_tensorboard,
            master_port=master_port,
        )
    result = run(cfg, progress=not quiet, overwrite=overwrite)
    if not quiet and result.path is not None:
        _summary_table(result)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
