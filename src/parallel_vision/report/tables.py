"""The report's tables as header + rows of formatted strings, shared by HTML, Markdown and text.

Numbers are formatted here once, so every output shows the same digits: times
in seconds with 2 decimals (total time 1), throughput as whole images/s,
accuracy in % with 2 decimals, loss with 4. With several repeats a cell reads
"median [min–max]".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parallel_vision.report.data import ReportData
from parallel_vision.report.groups import FRAMEWORK_NAMES, STRATEGY_NAMES, ConfigGroup
from parallel_vision.report.levers import LeverRow, target_text
from parallel_vision.report.paper import by_key, paper_numbers
from parallel_vision.report.scaling import ScalingRow, Spread
from parallel_vision.report.workloads import ModelRow


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    colors: list[str | None] = field(default_factory=list)
    """Optional per-row swatch colour (the configuration's colour in the figures)."""
    align: str = ""
    """'l' or 'r' per column (default: first column left, the rest right)."""
    swatch_col: int = 0
    """The column that carries the row's colour swatch."""
    sections: set[int] = field(default_factory=set)
    """Rows that are section headings: their first cell spans the table (the others are empty)."""

    def alignment(self) -> str:
        return self.align or ("l" + "r" * (len(self.headers) - 1))


def fnum(value: float | None, digits: int = 2, scale: float = 1.0, thousands: bool = False) -> str:
    if value is None:
        return "—"
    v = value * scale
    return f"{v:,.{digits}f}" if thousands else f"{v:.{digits}f}"


def fspread(s: Spread | None, digits: int = 2, scale: float = 1.0, thousands: bool = False) -> str:
    if s is None:
        return "—"
    text = fnum(s.median, digits, scale, thousands)
    if s.has_range:
        text += f" [{fnum(s.lo, digits, scale, thousands)}–{fnum(s.hi, digits, scale, thousands)}]"
    return text


def fw(name: str) -> str:
    return FRAMEWORK_NAMES.get(name, name)


def st(name: str) -> str:
    return STRATEGY_NAMES.get(name, name)


def threads_text(g: ConfigGroup) -> str:
    return f"{g.threads:g}" if g.threads is not None else "—"


def run_table(data: ReportData) -> Table:
    """One row per configuration: medians over its repeats.

    Columns whose value is the same for every configuration (optimiser, test images,
    repeats) are left out here and stated once in `run_table_note`.
    """
    groups = data.groups
    show_opt = len({g.optimizer_text for g in groups}) > 1
    show_test = len({g.n_test for g in groups}) > 1
    show_rep = len({g.repeats for g in groups}) > 1
    show_init = len({g.init for g in groups}) > 1
    show_model = len({(g.model, g.dataset) for g in groups}) > 1 or any(g.model != "paper_cnn" for g in groups)
    headers = (["Model", "Dataset"] if show_model else []) + ["Framework", "Strategy", "Workers", "Threads / worker",
                                                              "Batch global / worker", "Epochs"]
    headers += ["Optimiser"] if show_opt else []
    headers += ["Init"] if show_init else []
    headers += ["Steady epoch T (s)", "Warm-up epoch (s)", "Total time (s)", "Images/s", "Test accuracy (%)",
                "Test loss"]
    headers += ["Test images"] if show_test else []
    headers += ["Repeats"] if show_rep else []
    rows, colors = [], []
    for g in groups:
        s = g.stats
        row = [g.model, g.dataset] if show_model else []
        row += [fw(g.framework), st(g.strategy), str(g.workers), threads_text(g),
                f"{g.global_batch} / {g.per_worker_batch}", str(g.config["epochs"])]
        row += [g.optimizer_text] if show_opt else []
        row += [g.init] if show_init else []
        row += [fspread(s["mean_epoch_time_excl_warmup_s"]), fspread(s["warmup_epoch_time_s"]),
                fspread(s["total_time_s"], 1), fspread(s["images_per_s_excl_warmup"], 0, thousands=True)]
        row += ([fspread(s["test_accuracy"], 2, 100.0), fspread(s["test_loss"], 4)] if g.accuracy_meaningful else
                ["n/a (synthetic)", "n/a"])
        row += [f"{g.n_test:,}"] if show_test else []
        row += [str(g.repeats)] if show_rep else []
        rows.append(row)
        colors.append(g.color)
    align = ("ll" if show_model else "") + "lllrrr" + ("l" if show_opt else "") + ("l" if show_init else "")
    align += "r" * (len(headers) - len(align))
    return Table(headers, rows, colors, align)


#: How the run table's note states the init mode (RunConfig.init) when every configuration shares it.
INIT_TEXT = {
    "framework": "initialisation: each framework's defaults (--init framework: Keras Glorot-uniform kernels and "
                 "zero biases, Adam epsilon 1e-7; PyTorch Kaiming-uniform weights and biases, epsilon 1e-8)",
    "aligned": "initialisation: aligned (--init aligned: the same initial weights, drawn once from the seed, "
               "and Adam epsilon 1e-8 in both frameworks)",
}


def run_table_note(data: ReportData) -> str:
    """What every configuration of the run table shares, said once."""
    groups = data.groups
    parts = []
    opts = {g.optimizer_text for g in groups}
    if len(opts) == 1:
        parts.append(f"optimiser {next(iter(opts))}")
    inits = {g.init for g in groups}
    if len(inits) == 1:
        parts.append(INIT_TEXT.get(next(iter(inits)), f"initialisation {next(iter(inits))}"))
    tests = {g.n_test for g in groups}
    if len(tests) == 1:
        parts.append(f"test accuracy and loss on {next(iter(tests)):,} test images")
    trains = {g.n_train for g in groups}
    if len(trains) == 1:
        parts.append(f"{next(iter(trains)):,} training images")
    reps = {g.repeats for g in groups}
    if len(reps) == 1:
        n = next(iter(reps))
        parts.append(f"{n} repeat{'s' if n != 1 else ''} per configuration")
    return "All configurations: " + "; ".join(parts) + "." if parts else ""


def runs_table(data: ReportData) -> Table:
    """Every stored run, one row each (the per-repeat numbers behind the medians), superseded ones last."""
    headers = ["Run folder", "run_id", "Repeat", "Code version", "Created (UTC)", "Steady epoch T (s)",
               "Total time (s)", "Images/s", "Test accuracy (%)", "Test loss", "Other CPU (cores)", "Used"]
    rows, colors = [], []
    entries = [(r, g.color, "yes") for g in data.groups for r in g.runs]
    entries += [(r, None, "superseded: older code") for r in data.superseded]
    for r, color, used in entries:
        s = r["summary"]
        rows.append([
            r["path"], r["run_id"][:12], str(r.get("repeat") or "—"), str(r.get("code_version") or "—"),
            str(r.get("created_at") or "—").replace("+00:00", ""),
            fnum(s.get("mean_epoch_time_excl_warmup_s")), fnum(s.get("total_time_s"), 1),
            fnum(s.get("images_per_s_excl_warmup"), 0, thousands=True),
            fnum(s.get("test_accuracy"), 2, 100.0), fnum(s.get("test_loss"), 4), fnum(r.get("other_cores")),
            used,
        ])
        colors.append(color)
    return Table(headers, rows, colors, "llllr" + "r" * 6 + "l")


def scaling_table(rows: list[ScalingRow], mode: str) -> Table:
    metric = "T" if mode == "strong" else "X"
    unit = "s" if mode == "strong" else "img/s"
    headers = ["Configuration", "N", "Baseline (1 worker)", "Same threads / worker", f"{metric}(1) ({unit})",
               f"{metric}(N) ({unit})", "Speedup S(N)", "Efficiency E(N) (%)", "S vs best single-process"]
    with_target = any(r.target_text != "—" for r in rows)
    headers += ["Speedup to target"] if with_target else []
    out, colors = [], []
    for r in rows:
        m1 = r.baseline.time if mode == "strong" else r.baseline.throughput
        mn = r.point.time if mode == "strong" else r.point.throughput
        digits = 2 if mode == "strong" else 0
        best = f"{fspread(r.speedup_vs_best)} (vs {r.best.label})"
        out.append([
            r.point.label, str(r.workers), r.baseline.label, "yes" if r.same_threads else "NO",
            fspread(m1, digits, thousands=mode != "strong"), fspread(mn, digits, thousands=mode != "strong"),
            fspread(r.speedup), fspread(r.efficiency, 1, 100.0), best,
        ] + ([r.target_text] if with_target else []))
        colors.append(None)
    return Table(headers, out, colors, "lrllrrrrl" + ("r" if with_target else ""))


def levers_table(rows: list[LeverRow]) -> Table:
    """One row per configuration: what each lever moved (docs/levers.md)."""
    headers = ["Configuration", "Levers", "Workers", "Steady epoch T (s)", "All-reduce (s / epoch)",
               "All-reduce MB / step / worker", "Time to target (s)", "Final accuracy (%)"]
    out, colors = [], []
    for r in rows:
        out.append([r.group.label, r.lever, str(r.group.workers), fnum(r.epoch_time), fnum(r.comm_time),
                    fnum(r.comm_bytes / 1e6 if r.comm_bytes is not None else None, 3), target_text(r),
                    fnum(r.accuracy, 2, 100.0)])
        colors.append(r.group.color)
    return Table(headers, out, colors, "llr" + "r" * 5)


def models_table(rows: list[ModelRow], peak_gflops: float | None) -> Table:
    """Each model's declared costs beside its measured scaling (report/workloads.py)."""
    headers = ["Model", "Dataset", "Framework", "Strategy", "Workers", "Parameters (M)", "Forward GFLOP / image",
               "Gradient MB / step", "Gradient B / kFLOP", "Speedup", "Efficiency (%)", "All-reduce share (%)",
               "GFLOP/s per worker"]
    headers += ["MFU (%)"] if peak_gflops else []
    out, colors = [], []
    for r in rows:
        g = r.group
        row = [g.model, g.dataset, fw(g.framework), st(g.strategy), str(g.workers), fnum(r.parameters / 1e6, 2),
               fnum(r.forward_gflop, 3), fnum(r.gradient_mb, 1), fnum(r.bytes_per_kflop, 3),
               fspread(r.scaling.speedup), fspread(r.scaling.efficiency, 0, 100.0),
               fnum(r.comm_share, 0, 100.0) if r.comm_share is not None else "not measured",
               fnum(r.gflops_per_worker, 1)]
        row += [fnum(r.mfu, 1, 100.0)] if peak_gflops else []
        out.append(row)
        colors.append(g.color)
    return Table(headers, out, colors, "llll" + "r" * (len(headers) - 4))


def skipped_table(data: ReportData) -> Table:
    headers = ["Configuration", "Framework", "Strategy", "Workers", "Status", "Reason"]
    rows = []
    for s in data.skipped:
        kind = "failed" if str(s["reason"]).startswith("failed:") else "skipped"
        rows.append([s["name"], fw(str(s.get("framework"))), st(str(s.get("strategy"))),
                     str(s.get("workers")), kind, str(s["reason"]).removeprefix("failed: ")])
    return Table(headers, rows, [], "lllrll")


def split_table(data: ReportData) -> Table:
    headers = ["Framework", "Strategy", "Workers", "Threads / worker", "Steady epoch (s)", "Data (s)",
               "Compute (s)", "Communication (s)", "Data share (%)"]
    rows, colors = [], []
    for g in data.groups:
        split = g.time_split()
        epoch = split.get("epoch_time_s")
        if g.workers == 1:
            comm = "none (1 worker)"
        elif split.get("comm_time_s") is None:
            comm = "not measured"
        else:
            comm = fnum(split["comm_time_s"]) + " (overlaps compute)"
        share = 100 * (split.get("data_time_s") or 0) / epoch if epoch else None
        rows.append([fw(g.framework), st(g.strategy), str(g.workers), threads_text(g), fnum(epoch),
                     fnum(split.get("data_time_s")) + (" (estimate)" if g.framework == "tensorflow" else ""),
                     fnum(split.get("compute_time_s")), comm, fnum(share, 1)])
        colors.append(g.color)
    return Table(headers, rows, colors, "lllrrrrrr")


def paper_table(data: ReportData) -> Table:
    """Each of the paper's five configurations: its published row, then our matching configuration(s)."""
    headers = ["Source", "Epoch time (s)", "Total time (s)", "Test accuracy", "S(N) by epoch time",
               "E(N) by epoch time", "Total-time efficiency", "Published 'scaling'"]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    sections: set[int] = set()

    hardware = paper_numbers().get("hardware_short", "2× T4")
    for row in data.paper_rows:
        pc = row["paper"]
        sections.add(len(rows))
        rows.append([pc["label"] + (" — the paper used SGD" if pc["optimizer"] == "sgd" else "")] + [""] * 7)
        colors.append(None)
        s_paper = e_paper = tte = "—"
        if pc.get("baseline"):
            base = by_key(pc["baseline"])
            sp = base["mean_epoch_time_s"] / pc["mean_epoch_time_s"]
            s_paper, e_paper = f"{sp:.2f}", f"{100 * sp / pc['workers']:.1f} %"
            tte = f"{100 * base['total_time_s'] / (pc['workers'] * pc['total_time_s']):.1f} %"
        rows.append([
            f"paper ({hardware})", fnum(pc["mean_epoch_time_s"], 3), fnum(pc["total_time_s"], 2),
            f"{100 * pc['test_accuracy']:.2f} % of {pc['n_test']:,}", s_paper, e_paper, tte,
            f"{pc['scaling_pct']:.2f} %" if pc.get("scaling_pct") is not None else "—",
        ])
        colors.append(None)
        if not row["ours"]:
            reason = next((s["reason"] for s in data.skipped if s.get("framework") == pc["framework"]
                           and s.get("strategy") == pc["strategy"] and s.get("workers") == pc["workers"]),
                          None)
            rows.append([f"ours: skipped — {reason}" if reason else "ours: not run"] + [""] * 7)
            colors.append(None)
            continue
        for match in row["ours"]:
            g: ConfigGroup = match["group"]
            srow: ScalingRow | None = match["scaling"]
            eff = match["total_time_efficiency_pct"]
            s = g.stats
            rows.append([
                f"ours: {g.label}" + (" (SGD)" if g.config["optimizer"] == "sgd" else ""),
                f"{fspread(s['mean_epoch_time_s'])} (steady {fspread(s['mean_epoch_time_excl_warmup_s'])})",
                fspread(s["total_time_s"], 1), f"{fspread(s['test_accuracy'], 2, 100.0)} % of {g.n_test:,}",
                fspread(srow.speedup) if srow else "—",
                f"{fspread(srow.efficiency, 1, 100.0)} %" if srow else "—",
                f"{eff:.1f} %" if eff is not None else "—", "",
            ])
            colors.append(g.color)
    return Table(headers, rows, colors, "lrrrrrrr", sections=sections)


def protocol_table(data: ReportData) -> Table:
    headers = ["Configuration", "Optimiser", "Steady epoch T (s)", "Test accuracy (%)", "Test loss"]
    rows = []
    for pair in data.protocol_rows:
        for key in ("adam", "sgd"):
            g: ConfigGroup = pair[key]
            rows.append([g.label, g.optimizer_text, fspread(g.stats["mean_epoch_time_excl_warmup_s"]),
                         fspread(g.stats["test_accuracy"], 2, 100.0), fspread(g.stats["test_loss"], 4)])
    return Table(headers, rows, [], "llrrr")


def f1_table(data: ReportData) -> Table:
    """Per-class F1 (first repeat) with one column per configuration."""
    groups = [g for g in data.groups if g.first.get("classification_report")]
    if not groups:
        return Table([], [])
    classes = [k for k in groups[0].first["classification_report"]
               if k not in ("accuracy", "macro avg", "weighted avg", "micro avg")]
    headers = ["Class"] + [g.label for g in groups]
    rows = []
    for c in classes:
        rows.append([c] + [fnum((g.first["classification_report"].get(c) or {}).get("f1-score"), 4)
                           for g in groups])
    for avg in ("macro avg", "weighted avg"):
        rows.append([avg] + [fnum((g.first["classification_report"].get(avg) or {}).get("f1-score"), 4)
                             for g in groups])
    return Table(headers, rows, [], "l" + "r" * len(groups))


def classification_table(g: ConfigGroup) -> Table:
    report: dict[str, Any] = g.first.get("classification_report") or {}
    headers = ["", "precision", "recall", "f1-score", "support"]
    rows = []
    for key, value in report.items():
        if key == "accuracy" or not isinstance(value, dict):
            continue
        rows.append([key, fnum(value.get("precision"), 4), fnum(value.get("recall"), 4),
                     fnum(value.get("f1-score"), 4), f"{int(value.get('support', 0)):,}"])
    if "accuracy" in report:
        rows.append(["accuracy", "", "", fnum(report["accuracy"], 4), f"{g.n_test:,}"])
    return Table(headers, rows, [], "lrrrr")


def projection_table(doc: dict[str, Any]) -> Table:
    """projection.json's rows: every number in it is projected, and the header says so."""
    rows = [[str(r["workers"]), str(r["nodes"]), str(r["per_worker_batch"]), fnum(r["step_time_s"], 1, 1e3),
             f"{fnum(r['step_time_low_s'], 1, 1e3)}–{fnum(r['step_time_high_s'], 1, 1e3)}",
             fnum(r["exposed_comm_s"], 1, 1e3), fnum(r["speedup"]), fnum(r["efficiency"], 0, 100) + " %"]
            for r in doc["rows"]]
    return Table(["projected: workers", "nodes", "per-worker batch", "step (ms)", "band (ms)",
                  "exposed comm (ms)", "speedup", "efficiency"], rows)


def projection_error_table(doc: dict[str, Any]) -> Table:
    rows = [[str(m["workers"]), str(m["nodes"]), f"{m['link']['bandwidth_gbps']:.3g} Gb/s",
             fnum(m["measured_step_s"], 1, 1e3), fnum(m["projected_step_s"], 1, 1e3),
             f"{fnum(m['step_time_low_s'], 1, 1e3)}–{fnum(m['step_time_high_s'], 1, 1e3)}",
             f"{m['error'] * 100:+.0f} %"] for m in doc["measured"]]
    return Table(["workers", "nodes", "link (linktest)", "measured step (ms)", "projected step (ms)",
                  "band (ms)", "error"], rows)
