"""CLI command: explain — attribution maps of a run's saved model on test images, and their faithfulness
(docs/explain.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from parallel_vision.explain import run as explain_run


def explain(
    run: Path = typer.Argument(..., help="A run folder (the --out of `pvision train`) with its model.pt."),
    method: str = typer.Option(explain_run.DEFAULT_METHODS, "--method",
                               help=f"Comma-separated: {', '.join(explain_run.METHODS)}."),
    images: int = typer.Option(explain_run.DEFAULT_IMAGES, "--images",
                               help="Test images explained: a class-stratified sample, the same for every run."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample (numpy default_rng), SmoothGrad's noise and "
                             "the randomised model."),
) -> None:
    """Explain the true class of a seeded, class-stratified sample of the run's test images (torch runs so far).

    Writes RUN/explain/explanations.npz (one (N, H, W) map per method, the test-set indices and labels) and
    RUN/explain/explain.json (deletion and insertion AUC, seconds, the randomised-model check per method) and
    RUN/explain/explain.html.
    """
    doc = explain_run.explain(run, explain_run.parse_methods(method), images, seed)
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


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
