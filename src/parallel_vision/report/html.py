"""report.html: one self-contained page (CSS inline, figures as base64 PNG), readable without a server."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from parallel_vision.report import compare, tables
from parallel_vision.report.data import ReportData
from parallel_vision.report.figures import Figure
from parallel_vision.report.paper import paper_numbers, scaling_sentence
from parallel_vision.report.scaling import DEFINITIONS

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde1e8; --bg:#ffffff; --panel:#f6f8fb; --accent:#2458a6;
        --warn:#fff6e0; --warnline:#e9b949; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 60px; }
header h1 { font-size: 26px; margin: 0 0 4px; }
header .sub { color: var(--muted); margin: 0 0 14px; font-size: 14px; }
h2 { font-size: 20px; margin: 38px 0 10px; padding-top: 8px; border-top: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p, li { max-width: 980px; }
.muted { color: var(--muted); font-size: 13px; }
.headline { background: var(--panel); border-left: 4px solid var(--accent); padding: 10px 16px;
            margin: 12px 0; border-radius: 4px; }
.headline p { margin: 6px 0; }
.warnings { background: var(--warn); border-left: 4px solid var(--warnline); padding: 8px 16px;
            border-radius: 4px; font-size: 13.5px; }
.warnings ul { margin: 4px 0; padding-left: 18px; }
nav.toc { font-size: 13.5px; margin: 10px 0 0; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
.tablewrap { overflow-x: auto; margin: 8px 0 6px; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; text-align: left; font-size: 12px; line-height: 1.25;
     vertical-align: bottom; }
tr:last-child td { border-bottom: none; }
th.r { text-align: right; }
td.r { text-align: right; white-space: nowrap; }
td.l { text-align: left; }
td.first { white-space: nowrap; }
tr.section td { background: #eef2f8; font-weight: 600; padding-top: 7px; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px;
      vertical-align:baseline; }
figure { margin: 14px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 980px; }
details { margin: 6px 0; }
details summary { cursor: pointer; color: var(--accent); font-size: 14px; }
dl.defs { display: grid; grid-template-columns: 210px 1fr; gap: 4px 14px; font-size: 14px; }
dl.defs dt { font-weight: 600; }
dl.defs dd { margin: 0; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 8px 18px; }
code { background: var(--panel); padding: 1px 4px; border-radius: 3px; font-size: 12.5px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def render_table(table: tables.Table, *, first_swatch: bool = True) -> str:
    if not table.headers:
        return "<p class='muted'>—</p>"
    align = table.alignment()
    head = "".join(f"<th class='{'r' if align[i] == 'r' else ''}'>{_e(h)}</th>"
                   for i, h in enumerate(table.headers))
    body = []
    for ri, row in enumerate(table.rows):
        if ri in table.sections:
            body.append(f"<tr class='section'><td colspan='{len(table.headers)}'>{_e(row[0])}</td></tr>")
            continue
        color = table.colors[ri] if ri < len(table.colors) else None
        cells = []
        for ci, cell in enumerate(row):
            sw = f"<span class='sw' style='background:{color}'></span>" if (
                ci == table.swatch_col and color and first_swatch) else ""
            klass = "r" if align[ci] == "r" else ("l first" if ci == 0 else "l")
            cells.append(f"<td class='{klass}'>{sw}{_e(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='tablewrap'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></div>")


def render_figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode()
    return (f"<figure id='fig-{fig.name}'><img alt='{_e(fig.title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>{_e(fig.title)}.</b> {_e(fig.caption)}</figcaption></figure>")


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def render(data: ReportData, figures: list[Figure]) -> str:
    figs = {f.name: f for f in figures}
    preset = tables.presets_text(data)
    parts: list[str] = []
    parts.append(
        f"<header><h1>Parallel Vision — data-parallel training report</h1>"
        f"<p class='sub'>{_e(data.root.resolve())} · bench <b>{_e(preset)}</b> · "
        f"{len(data.groups)} configurations, {data.environment['runs']} runs · "
        f"{_e(data.environment['cpu_model'])}"
        f" · generated {_e(data.generated_at)}</p></header>"
    )
    head = compare.headline(data)
    if head:
        parts.append("<div class='headline'>" + "".join(f"<p>{_e(s)}</p>" for s in head) + "</div>")
    if data.warnings:
        parts.append("<div class='warnings'><b>Read with care:</b>" + _list(data.warnings) + "</div>")
    toc = [("runs", "Runs"), ("scaling", "Speedup & efficiency"), ("epoch-time", "Epoch time"),
           ("curves", "Training curves"), ("split", "Time split"), ("compare", "TensorFlow vs PyTorch"),
           ("paper", "Paper vs ours"), ("classification", "Classification"), ("environment", "Environment"),
           ("definitions", "Definitions"), ("all-runs", "All runs")]
    parts.append("<nav class='toc'>" + "".join(f"<a href='#{a}'>{_e(t)}</a>" for a, t in toc) + "</nav>")

    # Runs
    parts.append("<h2 id='runs'>Runs</h2>")
    parts.append("<p class='muted'>One row per configuration: medians over its repeats, [min–max] when there "
                 "are several. Steady epoch T excludes the first (warm-up) epoch; total time runs from "
                 "the command's launch to the result being written. The colour matches the figures.</p>")
    parts.append(render_table(tables.run_table(data)))
    parts.append(f"<p class='muted'>{_e(tables.run_table_note(data))}</p>")
    parts.append("<h3 id='skipped'>Skipped and failed configurations</h3>")
    if data.skipped:
        parts.append(render_table(tables.skipped_table(data)))
    else:
        parts.append("<p class='muted'>None: every planned configuration ran.</p>")
    if data.incomplete:
        parts.append(f"<p class='muted'>{len(data.incomplete)} incomplete run(s) are stored but not "
                     "reported: "
                     + _e(", ".join(r["path"] for r in data.incomplete)) + "</p>")

    # Scaling
    parts.append("<h2 id='scaling'>Speedup and efficiency</h2>")
    if data.strong or data.weak:
        for rows, mode, what in ((data.strong, "strong", "global batch fixed, S = T(1) ÷ T(N)"),
                                 (data.weak, "weak", "per-worker batch fixed, S = X(N) ÷ X(1)")):
            if rows:
                parts.append(f"<h3>{mode.capitalize()} scaling ({_e(what)})</h3>")
                parts.append(render_table(tables.scaling_table(rows, mode)))
        if "scaling" in figs:
            parts.append(render_figure(figs["scaling"]))
    else:
        parts.append("<p class='muted'>No configuration with N &gt; 1 workers has a matching 1-worker "
                     "baseline, so no speedup can be computed.</p>")

    parts.append("<h2 id='epoch-time'>Epoch time</h2>")
    parts.append(render_figure(figs["epoch_times"]))
    parts.append("<h2 id='curves'>Training curves</h2>")
    parts.append(render_figure(figs["curves"]))
    parts.append("<h2 id='split'>Time split: data, compute, communication</h2>")
    parts.append(render_figure(figs["time_split"]))
    parts.append(render_table(tables.split_table(data)))

    # Comparison
    parts.append("<h2 id='compare'>TensorFlow vs PyTorch, from these measurements</h2>")
    parts.append(f"<p class='muted'>Every sentence below is filled in from the runs above, its direction "
                 f"included. {_e(compare.noise_rule(data))}</p>")
    for heading, sentences in compare.comparison(data):
        parts.append(f"<h3>{_e(heading)}</h3>" + _list(sentences))

    # Paper
    pn = paper_numbers()
    parts.append("<h2 id='paper'>The paper's published numbers beside ours</h2>")
    parts.append(f"<p class='muted'>Paper: {_e(pn['hardware'])}; {_e(pn['protocol'])}. Ours: the machine "
                 "below. Absolute times are not comparable across this hardware; ratios and accuracy are. "
                 "Our epoch time is the mean over every epoch including the warm-up (closest to the paper's "
                 "'average time per epoch'), the steady T in brackets; total-time efficiency "
                 "T_total(1) ÷ (N·T_total(N)) is the definition that reproduces the paper's TensorFlow "
                 "'scaling'.</p>")
    parts.append(render_table(tables.paper_table(data)))
    parts.append("<h3>What the paper's 'scaling' is</h3>")
    parts.append(_list([scaling_sentence(c) for c in data.paper_checks]))
    parts.append("<h3>Where the paper's definitions differ from ours</h3>")
    notes = [f"{c['label']}: " + " ".join(c["notes"]) for c in pn["configurations"] if c.get("notes")]
    notes.append("Our test accuracy evaluates every test image exactly once, whatever the number of workers; "
                 "the paper's DDP figure covers one rank's half.")
    notes.append("Our epoch time is the training loop only, synchronised, evaluation excluded; the paper "
                 "does not say what its per-epoch time includes.")
    parts.append(_list(notes))
    if data.protocol_rows:
        parts.append("<h3>The paper's protocol (SGD for PyTorch single and DataParallel) vs Adam</h3>")
        parts.append(render_table(tables.protocol_table(data), first_swatch=False))

    # Classification
    parts.append("<h2 id='classification'>Classification reports and confusion matrices</h2>")
    parts.append("<p class='muted'>First repeat of each configuration. Per-class F1 side by side; the full "
                 "scikit-learn report per configuration below (the paper's Figs. 3, 4, 8, 10 and 14).</p>")
    parts.append(render_table(tables.f1_table(data), first_swatch=False))
    parts.append(render_figure(figs["confusion"]))
    parts.append("<div class='grid2'>")
    for g in data.groups:
        parts.append(f"<details><summary><span class='sw' style='background:{g.color}'></span>"
                     f"{_e(g.label)}</summary>"
                     f"{render_table(tables.classification_table(g), first_swatch=False)}"
                     "</details>")
    parts.append("</div>")

    # Provenance
    parts.append("<h2 id='environment'>Environment and provenance</h2>")
    parts.append(render_table(tables.environment_table(data), first_swatch=False))

    parts.append("<h2 id='definitions'>Definitions</h2><dl class='defs'>")
    for term, text in DEFINITIONS:
        parts.append(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>")
    parts.append("</dl>")

    parts.append("<h2 id='all-runs'>All runs</h2>")
    parts.append(render_table(tables.runs_table(data)))
    parts.append(f"<p class='muted'>Source of truth: the result.json files under {_e(data.root)}; this page "
                 "was generated from results.sqlite, which is rebuilt from them.</p>")

    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Parallel Vision report — {_e(preset)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
