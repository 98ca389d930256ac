"""The report's figures, drawn with matplotlib (Agg) as PNG bytes from ReportData.

Each figure corresponds to one or more of the paper's: training curves (Figs. 5, 7,
9, 13), epoch time and the 1-vs-N comparison (Figs. 11, 15), speedup and efficiency
(Figs. 6, 12, 16), confusion matrices (next to the classification reports of Figs.
3, 4, 8, 10, 14), and the time split, which the paper does not have.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from parallel_vision.report.data import ReportData
from parallel_vision.report.groups import FRAMEWORK_NAMES, STRATEGY_NAMES

DPI = 100


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    png: bytes


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9, "axes.titlesize": 10,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "legend.fontsize": 8, "legend.frameon": False,
    })
    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def training_curves(data: ReportData) -> Figure:
    plt = _plt()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.8))
    for g in data.groups:
        epochs = list(range(1, len(g.curve("test_accuracy")) + 1))
        marker = "o" if len(epochs) < 12 else None
        ax_acc.plot(epochs, [100 * v if v is not None else None for v in g.curve("test_accuracy")],
                    color=g.color, marker=marker, ms=4, label=g.label)
        ax_acc.plot(epochs, [100 * v if v is not None else None for v in g.curve("train_accuracy")],
                    color=g.color, ls="--", alpha=0.6)
        ax_loss.plot(epochs, g.curve("test_loss"), color=g.color, marker=marker, ms=4, label=g.label)
        ax_loss.plot(epochs, g.curve("train_loss"), color=g.color, ls="--", alpha=0.6)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy (solid: test, dashed: train)")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss (solid: test, dashed: train)")
    for ax in (ax_acc, ax_loss):
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), bbox_to_anchor=(0.5, -0.02 -
               0.055 * ((len(labels) - 1) // 3)))
    fig.tight_layout(rect=(0, 0.08 + 0.05 * ((len(labels) - 1) // 3), 1, 1))
    return Figure("curves", "Training curves",
                  "Accuracy and loss per epoch for every configuration (median over repeats); the paper's "
                  "Figs. 5, 7, 9 and 13.", _png(fig))


def epoch_times(data: ReportData) -> Figure:
    plt = _plt()
    n = len(data.groups)
    fig, (ax_line, ax_bar) = plt.subplots(1, 2, figsize=(11, max(3.6, 0.45 * n + 1.6)),
                                          gridspec_kw={"width_ratios": [1, 1.15]})
    for g in data.groups:
        times = g.curve("epoch_time_s")
        ax_line.plot(range(1, len(times) + 1), times, color=g.color, marker="o", ms=4, label=g.label)
    ax_line.set(xlabel="epoch", ylabel="epoch time (s)", title="Epoch time per epoch (epoch 1 = warm-up)")
    ax_line.xaxis.get_major_locator().set_params(integer=True)
    ax_line.set_ylim(bottom=0)
    labels, med, lo, hi, warm = [], [], [], [], []
    for g in data.groups:
        s, w = g.stats["mean_epoch_time_excl_warmup_s"], g.stats["warmup_epoch_time_s"]
        labels.append(g.label)
        med.append(s.median if s else 0)
        lo.append(s.median - s.lo if s else 0)
        hi.append(s.hi - s.median if s else 0)
        warm.append(w.median if w else 0)
    y = list(range(n))[::-1]
    colors = [g.color for g in data.groups]
    ax_bar.barh(y, warm, height=0.8, color="none", edgecolor=colors, ls="--", lw=1.0,
                label="warm-up (first) epoch")
    ax_bar.barh(y, med, height=0.5, xerr=[lo, hi], color=colors, alpha=0.9, capsize=3,
                label="steady epoch time T (median, min–max)")
    for yy, m, h, w in zip(y, med, hi, warm, strict=True):
        ax_bar.text(max(m + h, w), yy, f"  T {m:.2f} s · warm-up {w:.2f} s", va="center", ha="left",
                    fontsize=8)
    ax_bar.set_yticks(y, labels)
    ax_bar.set(xlabel="seconds per epoch", title="Steady epoch time T vs the warm-up epoch")
    ax_bar.set_xlim(0, max([m + h for m, h in zip(med, hi, strict=True)] + warm) * 1.6)
    ax_bar.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax_bar.grid(axis="y", visible=False)
    fig.tight_layout()
    return Figure("epoch_times", "Epoch time",
                  "Left: time of every epoch (1 worker vs N: the paper's Figs. 11 and 15). Right: steady "
                  "epoch time T, the first epoch excluded, with its min–max over repeats (solid), and the "
                  "warm-up epoch (dashed outline).", _png(fig))


def scaling(data: ReportData) -> Figure | None:
    rows = data.strong + data.weak
    if not rows:
        return None
    plt = _plt()
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(11, 3.8))
    series: dict[tuple[str, str, str, str], list[Any]] = {}
    for r in rows:
        kind = "same threads" if r.same_threads else "other threads"
        series.setdefault((r.point.framework, r.point.strategy, r.mode, kind), []).append(r)
    # Each series takes the colour of its N-worker configuration in the other figures.
    group_color = {g.key: g.color for g in data.groups}
    top = max(r.workers for r in rows)
    for (fw, strategy, mode, _kind), rs in sorted(series.items()):
        rs.sort(key=lambda r: r.workers)
        xs = [1] + [r.workers for r in rs]
        label = f"{FRAMEWORK_NAMES.get(fw, fw)} {STRATEGY_NAMES.get(strategy, strategy)} · {mode}"
        color = group_color.get(rs[-1].point.key, "gray")
        style = "-" if mode == "strong" else "--"
        for ax, values in ((ax_s, [r.speedup for r in rs]), (ax_e, [r.efficiency for r in rs])):
            med = [1.0] + [v.median for v in values]
            err_lo = [0.0] + [v.median - v.lo for v in values]
            err_hi = [0.0] + [v.hi - v.median for v in values]
            scale = 100.0 if ax is ax_e else 1.0
            ax.errorbar(xs, [m * scale for m in med], yerr=[[e * scale for e in err_lo],
                                                            [e * scale for e in err_hi]],
                        color=color, ls=style, marker="o", capsize=3, label=label)
            for x, m in zip(xs[1:], med[1:], strict=False):
                ax.annotate(f"{m * scale:.2f}" if ax is ax_s else f"{m * scale:.0f} %", (x, m * scale),
                            textcoords="offset points", xytext=(6, -3), fontsize=8, color=color)
    ideal = list(range(1, top + 1))
    ax_s.plot(ideal, ideal, color="gray", ls=":", label="ideal S(N) = N")
    ax_e.axhline(100, color="gray", ls=":", label="ideal E = 100 %")
    ax_s.set(xlabel="workers N", ylabel="speedup S(N)", title="Speedup vs workers")
    ax_e.set(xlabel="workers N", ylabel="efficiency E(N) = S(N)/N (%)", title="Efficiency vs workers")
    ax_s.set_ylim(bottom=0)
    ax_e.set_ylim(0, max(110, max(r.efficiency.hi * 100 for r in rows) * 1.1))
    for ax in (ax_s, ax_e):
        ax.set_xticks(ideal)
        ax.legend(loc="lower left")
    fig.tight_layout()
    return Figure("scaling", "Speedup and efficiency",
                  "Speedup and efficiency against the same framework's 1-worker baseline (solid: strong "
                  "scaling, T(1)/T(N); dashed: weak scaling, X(N)/X(1)); bars: min–max over repeats. The "
                  "paper's Figs. 6, 12 and 16.", _png(fig))


def projection(data: ReportData) -> Figure | None:
    """The projected curve and its band (dashed, shaded) with the measured points (markers) on the same axes."""
    doc = data.projection
    if doc is None or not doc.get("rows"):
        return None
    plt = _plt()
    fig, (ax_s, ax_t) = plt.subplots(1, 2, figsize=(11, 3.8))
    rows = doc["rows"]
    xs = [r["workers"] for r in rows]
    ref = [r["speedup"] * r["step_time_s"] for r in rows]  # N·b/ref: speedup × step time
    ax_s.fill_between(xs, [k / r["step_time_high_s"] for k, r in zip(ref, rows, strict=True)],
                      [k / r["step_time_low_s"] for k, r in zip(ref, rows, strict=True)], color="tab:orange",
                      alpha=0.2, label="projected band")
    ax_s.plot(xs, [r["speedup"] for r in rows], color="tab:orange", ls="--", marker="x", label="projected")
    ax_s.plot(xs, xs, color="gray", ls=":", label="ideal S(N) = N")
    measured = [r for r in data.strong + data.weak if r.point.framework == doc["framework"]
                and r.point.strategy == "ddp" and data.group(r.point.key).model == doc["model"]]
    if measured:
        for mode in sorted({r.mode for r in measured}):
            rs = [r for r in measured if r.mode == mode]
            ax_s.plot([r.workers for r in rs], [r.speedup.median for r in rs], "o" if mode == "weak" else "s",
                      color="black", label=f"measured, {mode} scaling (this ROOT)")
    ax_t.fill_between(xs, [r["step_time_low_s"] * 1e3 for r in rows], [r["step_time_high_s"] * 1e3 for r in rows],
                      color="tab:orange", alpha=0.2, label="projected band")
    ax_t.plot(xs, [r["step_time_s"] * 1e3 for r in rows], color="tab:orange", ls="--", marker="x",
              label=f"projected over {doc['link']['name']}")
    for m in doc.get("measured", []):
        ax_t.plot([m["workers"]], [m["measured_step_s"] * 1e3], "o", color="black")
        ax_t.plot([m["workers"]], [m["projected_step_s"] * 1e3], "x", color="tab:blue")
    if doc.get("measured"):
        ax_t.plot([], [], "o", color="black", label="measured (its linktest's link)")
        ax_t.plot([], [], "x", color="tab:blue", label="projected over that link")
    ax_s.set(xlabel="workers N", ylabel="speedup", title=f"Projected {doc['scaling']}-scaling speedup (dashed) "
             "vs measured (markers)")
    ax_t.set(xlabel="workers N", ylabel="step time (ms)", title="Step time per worker")
    for ax in (ax_s, ax_t):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.legend(loc="best")
    fig.tight_layout()
    return Figure("projection", "Projected scaling",
                  "Projected (orange, dashed; shaded: no-overlap / full-overlap band) against measured (black dots). "
                  "The projection is a model calibrated from this ROOT's runs, not a measurement "
                  "(docs/projection.md).", _png(fig))


def time_split(data: ReportData) -> Figure:
    plt = _plt()
    n = len(data.groups)
    fig, ax = plt.subplots(figsize=(11, max(2.6, 0.42 * n + 1.3)))
    y = list(range(n))[::-1]
    max_total = 0.0
    for yy, g in zip(y, data.groups, strict=False):
        split = g.time_split()
        data_t = split["data_time_s"] or 0.0
        compute_t = split["compute_time_s"] or 0.0
        ax.barh(yy, data_t, color="#9ecae1", edgecolor="white")
        ax.barh(yy, compute_t, left=data_t, color=g.color, alpha=0.85, edgecolor="white")
        comm = split["comm_time_s"]
        total = data_t + compute_t
        max_total = max(max_total, total)
        if comm is not None and comm > 0:
            ax.barh(yy, comm, left=total - comm, height=0.35, color="none", edgecolor="black", hatch="////")
        if g.workers == 1:
            note = "comm: none (1 worker)"
        elif comm is None:
            note = "comm: not measured"
        else:
            note = f"comm {comm:.2f} s"
        ax.text(total, yy, f"  data {data_t:.2f} s · compute {compute_t:.2f} s · {note}", va="center",
                fontsize=8)
    ax.set_yticks(y, [g.label for g in data.groups])
    ax.set_xlim(0, max_total * 1.9 if max_total else 1)
    ax.set(xlabel="seconds per steady epoch (median over repeats)",
           title="Where an epoch goes: data (light blue) · compute (colour) · all-reduce (hatched, inside "
                 "compute)")
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return Figure("time_split", "Time split",
                  "Data, compute and communication per steady epoch. PyTorch: data = batch indexing measured "
                  "in the loop; communication = DDP all-reduce time from a communication hook (it overlaps "
                  "the backward pass, so it is drawn inside compute). TensorFlow: data is an estimate from "
                  "iterating the input pipeline alone (an upper bound on input stall); communication is not "
                  "measurable from model.fit.", _png(fig))


def confusion_matrices(data: ReportData) -> Figure:
    import numpy as np

    plt = _plt()
    groups = [g for g in data.groups if g.first.get("confusion_matrix")]
    cols = min(4, max(1, len(groups)))
    rows = (len(groups) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, g in zip(axes.flat, groups, strict=False):
        m = np.asarray(g.first["confusion_matrix"], dtype=float)
        rowsum = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rowsum, out=np.zeros_like(m), where=rowsum > 0)
        off = norm.copy()
        np.fill_diagonal(off, 0)
        ax.axis("on")
        ax.imshow(off, cmap="Reds", vmin=0, vmax=max(0.02, float(off.max())))
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j] and i != j:
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=6)
        acc = np.trace(m) / max(1.0, m.sum())
        ax.set_title(f"{g.label}\n{100 * acc:.2f} % of {int(m.sum())}", fontsize=8)
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
        ax.tick_params(labelsize=6, length=0)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        ax.grid(False)
    fig.tight_layout()
    return Figure("confusion", "Confusion matrices",
                  "Misclassifications per configuration (first repeat): off-diagonal counts, coloured by "
                  "the share of the true class; the diagonal (correct) is left white.", _png(fig))


def all_figures(data: ReportData) -> list[Figure]:
    figures = [training_curves(data), epoch_times(data)]
    s = scaling(data)
    if s is not None:
        figures.append(s)
    p = projection(data)
    if p is not None:
        figures.append(p)
    figures += [time_split(data), confusion_matrices(data)]
    return figures
