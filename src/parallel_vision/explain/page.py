"""RUN/explain/explain.html: one self-contained page (figures as base64 PNGs, drawn with matplotlib, imported
lazily): one test image per class with each method's map over it, the mean deletion and insertion curves, and
the table of explain.json."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def overlays(pixels: np.ndarray, labels: np.ndarray, maps: dict[str, np.ndarray]) -> str:
    """The first sampled image of each class (rows), alone and under each method's map (columns)."""
    plt = _plt()
    rows = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    fig, axes = plt.subplots(len(rows), len(maps) + 1, figsize=(1.3 * (len(maps) + 1), 1.3 * len(rows)),
                             squeeze=False)
    grey = pixels.shape[-1] == 1
    for r, i in enumerate(rows):
        image = pixels[i, ..., 0] if grey else pixels[i]
        axes[r, 0].imshow(image, cmap="gray" if grey else None)
        axes[r, 0].set_ylabel(str(labels[i]), rotation=0, labelpad=10)
        for c, (name, m) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(image, cmap="gray" if grey else None)
            axes[r, c].imshow(m[i], cmap="jet", alpha=0.5)
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=9)
    return _png(fig)


def curves(mean_curves: dict[str, dict[str, list[float]]]) -> str:
    """Mean deletion and insertion curves (class probability against the share of pixels moved)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        for name, c in mean_curves.items():
            ax.plot(np.linspace(0, 1, len(c[kind])), c[kind], label=name, linestyle=":" if name == "random" else "-")
        ax.set_title(f"{kind} (mean over images)")
        ax.set_xlabel("share of pixels moved")
        ax.set_ylabel("probability of the true class")
        ax.set_ylim(0, 1)
    axes[1].legend()
    return _png(fig)


def page(doc: dict[str, Any], overlay_png: str, curves_png: str) -> str:
    esc = html.escape
    rows = ""
    for name, m in doc["methods"].items():
        check = m["randomised_model"]
        rows += (f"<tr><td>{esc(name)}</td><td>{m['deletion_auc']:.3f}</td><td>{m['insertion_auc']:.3f}</td>"
                 f"<td>{check['spearman_mean']:.2f} ({'passed' if check['passed'] else 'FAILED'})</td>"
                 f"<td>{m['seconds']:.1f}</td></tr>")
    random = doc["faithfulness"]["random_order"]
    rows += (f"<tr><td>random order</td><td>{random['deletion_auc']:.3f}</td><td>{random['insertion_auc']:.3f}</td>"
             f"<td></td><td>{random['seconds']:.1f}</td></tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>explain {esc(doc['run_id'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.2em .8em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>Which pixels does run {esc(doc['run_id'])} look at?</h1>
<p>{doc['model']} on {esc(doc['dataset'])}: {doc['images']} test images (class-stratified, seed {doc['seed']}),
the true class explained; the prediction agrees with the label on {doc['agreement']:.1%}.</p>
<table><tr><th>method</th><th>deletion AUC (low is faithful)</th><th>insertion AUC (high is faithful)</th>
<th>randomised-model Spearman (first {doc['randomised_model_images']} images)</th><th>seconds</th></tr>{rows}</table>
<h2>Maps</h2><img alt="maps" src="data:image/png;base64,{overlay_png}">
<h2>Deletion and insertion (RISE)</h2><img alt="curves" src="data:image/png;base64,{curves_png}">
<p>Deletion moves the most attributed pixels first into black, insertion from a blurred copy into the image, in
{doc['faithfulness']['steps']} steps (docs/explain.md).</p>
</body></html>
"""
