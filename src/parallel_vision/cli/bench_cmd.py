"""`pvision bench`: run a preset or explicit matrix of configurations, one at a time, then report."""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision import strategies as table
from parallel_vision.bench.machine import gpu_count
from parallel_vision.bench.matrix import expand
from parallel_vision.bench.presets import PRESET_DESCRIPTIONS, PRESETS, BenchSpec, get_preset, resolve_workers
from parallel_vision.bench.runner import run_bench
from parallel_vision.config import usable_cores
from parallel_vision.data.paths import absolute
from parallel_vision.errors import ConfigError, EngineError
from parallel_vision.report import write_report
from parallel_vision.report.text import print_text


def _csv(value: str | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise ConfigError(f"--{name} needs at least one value")
    return items


def _ints(value: str | None, name: str) -> tuple[int, ...] | None:
    items = _csv(value, name)
    if items is None:
        return None
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise ConfigError(f"--{name} takes integers separated by commas, e.g. 1,2; got {value!r}") from None


FRAMEWORK_ALIASES = {"torch": "torch", "pytorch": "torch", "tensorflow": "tensorflow", "tf": "tensorflow",
                     "jax": "jax"}


def bench(
    preset: str | None = typer.Option(None, "--preset", "-p", help=" | ".join(PRESETS) + " (default quick when no "
                                      "matrix option is given). " + "; ".join(
                                          f"{name}: {text}" for name, text in PRESET_DESCRIPTIONS.items()) + "."),
    models: str | None = typer.Option(None, "--models", help="Comma list of models, e.g. "
                                      "paper_cnn,resnet18,wide_mlp (docs/models.md)."),
    dataset: str | None = typer.Option(None, "--dataset", help="mnist, fashion-mnist, kmnist, cifar10 or "
                                       "synthetic."),
    frameworks: str | None = typer.Option(None, "--frameworks", help="Comma list: "
                                          f"{','.join(table.frameworks())}."),
    strategies: str | None = typer.Option(None, "--strategies", help=f"Strategies for N>1 workers, e.g. "
                                          f"{','.join(n for n in table.all_names() if n != 'single')} "
                                          f"(default {table.bench_default_help()}; 1 worker is always 'single')."),
    workers: str | None = typer.Option(None, "--workers", help="Comma list of worker counts, e.g. 1,2."),
    repeats: int | None = typer.Option(None, "--repeats", "-r", help="Runs per configuration and seed (the "
                                       "same seed again: timing noise)."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma list of seeds, e.g. 0,1,2: every configuration "
                                     "trained with each (seed variation; `pvision explain ROOT`'s band)."),
    scaling: str | None = typer.Option(None, "--scaling", help="strong (global batch fixed), weak "
                                          "(per-worker batch fixed) or both."),
    epochs: int | None = typer.Option(None, "--epochs", "-e"),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Strong: the global batch. "
                                             "Weak: the per-worker batch."),
    limit_train: int | None = typer.Option(None, "--limit-train", help="First N training images "
                                              "(0: the whole training set)."),
    limit_test: int | None = typer.Option(None, "--limit-test", help="First N test images (0: all)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads per worker in the scaling "
                                          "series (default cores ÷ the largest worker count)."),
    reference: bool | None = typer.Option(None, "--reference/--no-reference", help="Also run a 1-worker "
                                             "run on every core (the best single-process baseline)."),
    as_published: bool = typer.Option(False, "--as-published", help="Use the optimiser the paper describes: "
                                      "SGD (lr 0.01, momentum 0.9) for PyTorch single and DataParallel."),
    target_accuracy: float | None = typer.Option(None, "--target-accuracy", help="Every run records its time to "
                                                 "this test accuracy; the report adds speedup to target "
                                                 "(preset levers: 0.85)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    init: str | None = typer.Option(None, "--init", help="framework (each framework's defaults) or aligned "
                                    "(identical initial weights and optimiser constants; docs/definitions.md). "
                                    "Default: the preset's (aligned for trust), else framework."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Dataset folder (else $PVISION_DATA_DIR)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Bench ROOT (default bench-<preset>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Run again configurations already stored for "
                                   "this code version."),
    wait_idle: float | None = typer.Option(None, "--wait-idle", help="Seconds the bench may wait, in all, for "
                                           "other processes to stop using CPU (default 30; 0: never wait). "
                                           "Runs measured on a busy machine are flagged in the report."),
    strict_idle: bool = typer.Option(False, "--strict-idle", help="Wait for a quiet machine before every run "
                                     "(up to --wait-idle each, default 600 s): for numbers to publish."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned runs and exit."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the report at the end."),
) -> None:
    """Run a matrix of configurations one after another into ROOT, store them, and write the report.

    Re-running the same command resumes: runs already stored for the same configuration and code
    version are kept, half-finished ones are run again. Ctrl-C keeps every finished run.
    """

    explicit = any(v is not None for v in (frameworks, strategies, workers, scaling))
    spec = get_preset(preset) if preset else (BenchSpec(preset=None) if explicit else get_preset("quick"))
    changes: dict[str, object] = {}
    fws = _csv(frameworks, "frameworks")
    if fws is not None:
        try:
            changes["frameworks"] = tuple(dict.fromkeys(FRAMEWORK_ALIASES[f.lower()] for f in fws))
        except KeyError as exc:
            raise ConfigError(f"unknown framework {exc.args[0]!r}; choose from torch, tensorflow, jax") from None
    if strategies is not None:
        changes["strategies"] = _csv(strategies, "strategies")
    if models is not None:
        changes["models"] = _csv(models, "models")
    if dataset is not None:
        changes["dataset"] = dataset
    if workers is not None:
        changes["workers"] = _ints(workers, "workers")
    if seeds is not None:
        changes["seeds"] = _ints(seeds, "seeds")
    for name, value in (("repeats", repeats), ("epochs", epochs), ("batch_size", batch_size),
                        ("threads", threads), ("reference", reference)):
        if value is not None:
            changes[name] = value
    if scaling is not None:
        changes["scaling"] = scaling
    if limit_train is not None:
        changes["limit_train"] = limit_train or None
    if limit_test is not None:
        changes["limit_test"] = limit_test or None
    if as_published:
        changes["as_published"] = True
    if target_accuracy is not None:
        changes["target_accuracy"] = target_accuracy
    changes["device"] = device
    if init is not None:
        changes["init"] = init
    if data_dir is not None:
        changes["data_dir"] = str(absolute(data_dir))
    spec = spec.replace(**changes)
    root = absolute(out or Path(f"bench-{spec.preset or 'custom'}" + ("-as-published" if spec.as_published else "")))

    if dry_run:
        cores, gpus = usable_cores(), gpu_count()
        spec = resolve_workers(spec, gpus if (gpus and spec.device != "cpu") else cores)
        for planned in expand(spec, cores=cores, gpus=gpus):
            if planned.cfg is None:
                typer.echo(f"{planned.run_name}: cannot run — {planned.error}")
                continue
            c = planned.cfg
            typer.echo(f"{planned.run_name}: {c.model} on {c.dataset}, {c.framework} {c.strategy} ×{c.workers}, "
                       f"batch {c.batch_size}, "
                       f"{c.epochs} epochs, threads {c.threads_per_worker}, {c.optimizer} {c.lr:g}, "
                       f"train {c.limit_train or 'all'}, test {c.limit_test or 'all'} "
                       f"[{'+'.join(planned.scaling) or planned.role}]")
        return

    outcome = run_bench(spec, root, echo=typer.echo, wait_idle_s=wait_idle, strict_idle=strict_idle,
                        overwrite=overwrite)
    waited = f" ({outcome.waited_s:.0f} s of it waiting for a quiet machine)" if outcome.waited_s > 5 else ""
    typer.echo(f"bench finished in {outcome.seconds:.0f} s{waited}: {len(outcome.ran)} run, "
               f"{len(outcome.reused)} reused, {len(outcome.skipped)} skipped, {len(outcome.failed)} failed")
    if not no_report:

        written = write_report(root, formats=("html", "md"))
        print_text(root)
        for path in written:
            typer.echo(f"report: {path}")
    if outcome.failed:
        names = ", ".join(name for name, _ in outcome.failed)
        raise EngineError(f"{len(outcome.failed)} run(s) failed ({names}); see {root}/logs")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("bench")(bench)
