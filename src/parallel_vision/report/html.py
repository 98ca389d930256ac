"""report.html: one self-contained page (CSS inline, figures as base64 PNG), readable without a server."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from parallel_vision.report import compare, provenance, tables
from parallel_vision.report.data import ReportData
from parallel_vision.report.figures import Figure
from parallel_vision.report.sections import (
    Block,
    Bullets,
    Details,
    FigureBlock,
    Heading,
    TableBlock,
    Text,
    sections,
)

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


def render_block(block: Block, figs: dict[str, Figure]) -> str:
    if isinstance(block, Text):
        return f"<p class='muted'>{_e(block.text)}</p>" if block.muted else f"<p>{_e(block.text)}</p>"
    if isinstance(block, Bullets):
        return _list(block.items)
    if isinstance(block, TableBlock):
        return render_table(block.table, first_swatch=block.swatches)
    if isinstance(block, FigureBlock):
        return render_figure(figs[block.name])
    if isinstance(block, Heading):
        anchor = f" id='{block.anchor}'" if block.anchor else ""
        return f"<h3{anchor}>{_e(block.text)}</h3>"
    if isinstance(block, Details):
        swatch = f"<span class='sw' style='background:{block.color}'></span>" if block.color else ""
        return (f"<details><summary>{swatch}{_e(block.summary)}</summary>"
                f"{render_table(block.table, first_swatch=False)}</details>")
    return ("<dl class='defs'>" + "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in block.pairs)
            + "</dl>")


def render(data: ReportData, figures: list[Figure]) -> str:
    figs = {f.name: f for f in figures}
    preset = provenance.presets_text(data)
    parts: list[str] = [
        f"<header><h1>Parallel Vision — data-parallel training report</h1>"
        f"<p class='sub'>{_e(data.root.resolve())} · bench <b>{_e(preset)}</b> · "
        f"{len(data.groups)} configurations, {data.environment['runs']} runs · "
        f"{_e(data.environment['cpu_model'])} · generated {_e(data.generated_at)}</p></header>"
    ]
    head = compare.headline(data)
    if head:
        parts.append("<div class='headline'>" + "".join(f"<p>{_e(s)}</p>" for s in head) + "</div>")
    if data.warnings:
        parts.append("<div class='warnings'><b>Read with care:</b>" + _list(data.warnings) + "</div>")
    report = sections(data, set(figs))
    parts.append("<nav class='toc'>" + " ".join(f"<a href='#{s.anchor}'>{_e(s.toc)}</a>" for s in report) + "</nav>")
    for section in report:
        parts.append(f"<h2 id='{section.anchor}'>{_e(section.title)}</h2>")
        parts.extend(render_block(block, figs) for block in section.blocks)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Parallel Vision report — {_e(preset)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
