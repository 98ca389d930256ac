"""CLI command: explain — attribution maps of a run's saved model on test images, and their faithfulness
(docs/explain.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.explain import compare as explain_compare
from parallel_vision.explain import run as explain_run
from parallel_vision.explain.files import COMPARE_FILE
from parallel_vision.explain.similarity import METRIC_TITLES, METRICS


def explain(
    run: Path = typer.Argument(..., help="A run folder (the --out of `pvision train`) with its saved model, or a "
                               "bench ROOT: every run explained on the same images and compared pair by pair."),
    method: str = typer.Option(explain_run.DEFAULT_METHODS, "--method",
                               help=f"Comma-separated: {', '.join(explain_run.METHODS)}."),
    images: int = typer.Option(explain_run.DEFAULT_IMAGES, "--images",
                               help="Test images explained: a class-stratified sample, the same for every run."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample (numpy default_rng), SmoothGrad's noise and "
                             "the randomised model."),
) -> None:
    """Explain the true class of a seeded, class-stratified sample of the run's test images.

    Writes RUN/explain/explanations.npz (one (N, H, W) map per method, the test-set indices and labels) and
    RUN/explain/explain.json (deletion and insertion AUC, seconds, the randomised-model check per method) and
    RUN/explain/explain.html. Given a bench ROOT, explains each of its runs so (reusing what is already there),
    compares every pair against the seed band and writes ROOT/explain/compare.json.
    """
    methods = explain_run.parse_methods(method)
    if explain_compare.is_root(run):
        _compare(run, methods, images, seed)
        return
    doc = explain_run.explain(run, methods, images, seed)
    random = doc["faithfulness"]["random_order"]
    print(f"{doc['images']} test images of {doc['run_id']} ({doc['model']}, {doc['dataset']}), seed {doc['seed']}: "
          f"prediction agrees with the label on {doc['agreement']:.1%}")
    print(f"{'method':<12}{'deletion AUC':>14}{'insertion AUC':>15}{'randomised ρ':>14}{'seconds':>9}")
    for name, m in doc["methods"].items():
        check = m["randomised_model"]
        print(f"{name:<12}{m['deletion_auc']:>14.3f}{m['insertion_auc']:>15.3f}"
              f"{check['spearman_mean']:>13.2f}{'' if check['passed'] else '!':1}{m['seconds']:>9.1f}")
    print(f"{'random order':<12}{random['deletion_auc']:>14.3f}{random['insertion_auc']:>15.3f}{'':>14}"
          f"{random['seconds']:>9.1f}")
    print(f"wrote {run / 'explain'}/: explanations.npz, explain.json, explain.html ({doc['seconds_total']:.0f} s)")


def _compare(root: Path, methods: tuple[str, ...], images: int, seed: int) -> None:
    doc = explain_compare.compare(root, methods, images, seed)
    print(f"{'group':<12}{'method':<12}{'pairs':>6}" + "".join(f"{METRIC_TITLES[k]:>20}" for k in METRICS))
    for key, got in doc["groups"].items():
        group, m = key.split("|")
        cells = "".join(f"{_ci(got[k]):>20}" for k in METRICS)
        print(f"{group:<12}{m:<12}{got['pairs']:>6}{cells}")
    for v in doc["verdicts"]:
        print(f"{v['group']} / {v['method']}: {v['verdict']}")
    print(doc["answer"])
    print(f"wrote {root / 'explain' / COMPARE_FILE}")


def _ci(s: dict[str, float | int | None]) -> str:
    if s["median"] is None:
        return "n/a"
    return f"{s['median']:.2f} [{s['lo']:.2f}–{s['hi']:.2f}]"


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
