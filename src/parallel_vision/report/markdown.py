"""report.md: the same content as report.html, with the figures as PNG files in figures/ beside it."""

from __future__ import annotations

from collections.abc import Sequence

from parallel_vision.report import compare, provenance, tables
from parallel_vision.report.data import ReportData
from parallel_vision.report.figures import Figure
from parallel_vision.report.sections import Block, Bullets, Details, FigureBlock, Heading, TableBlock, Text, sections

FIGURE_DIR = "figures"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(table: tables.Table) -> str:
    if not table.headers:
        return "—\n"
    align = table.alignment()
    lines = ["| " + " | ".join(_cell(h) or " " for h in table.headers) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    for i, row in enumerate(table.rows):
        if i in table.sections:
            row = [f"**{row[0]}**"] + [""] * (len(row) - 1)
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _figure(fig: Figure) -> str:
    return f"![{fig.title}]({FIGURE_DIR}/{fig.name}.png)\n\n*{fig.title}.* {fig.caption}\n"


def _list(items: Sequence[str]) -> str:
    return "".join(f"- {i}\n" for i in items)


def render_block(block: Block, figs: dict[str, Figure]) -> str:
    if isinstance(block, Text):
        return block.text + "\n"
    if isinstance(block, Bullets):
        return _list(block.items)
    if isinstance(block, TableBlock):
        return render_table(block.table)
    if isinstance(block, FigureBlock):
        return _figure(figs[block.name])
    if isinstance(block, Heading):
        return f"### {block.text}\n"
    if isinstance(block, Details):
        return f"<details><summary>{block.summary}</summary>\n\n{render_table(block.table)}\n</details>\n"
    return "".join(f"- **{term}**: {text}\n" for term, text in block.pairs)


def render(data: ReportData, figures: list[Figure]) -> str:
    figs = {f.name: f for f in figures}
    out = ["# Parallel Vision — data-parallel training report\n",
           f"Bench **{provenance.presets_text(data)}** · {len(data.groups)} configurations, "
           f"{data.environment['runs']} runs · {data.environment['cpu_model']} · generated {data.generated_at}\n"]
    head = compare.headline(data)
    if head:
        out.append("\n>\n".join(f"> {s}" for s in head) + "\n")
    if data.warnings:
        out.append("**Read with care:**\n\n" + _list(data.warnings))
    for section in sections(data, set(figs)):
        out.append(f"## {section.title}\n")
        for block in section.blocks:
            out.append(render_block(block, figs))
    return "\n".join(out)
