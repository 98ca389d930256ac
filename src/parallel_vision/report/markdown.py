"""report.md: the same content as report.html, with the figures as PNG files in figures/ beside it."""

from __future__ import annotations

from collections.abc import Sequence

from parallel_vision.report import compare, tables
from parallel_vision.report.data import ReportData
from parallel_vision.report.figures import Figure
from parallel_vision.report.paper import paper_numbers, scaling_sentence
from parallel_vision.report.scaling import DEFINITIONS

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


def render(data: ReportData, figures: list[Figure]) -> str:
    figs = {f.name: f for f in figures}
    preset = tables.presets_text(data)
    out: list[str] = []
    out.append("# Parallel Vision — data-parallel training report\n")
    out.append(f"Bench **{preset}** · {len(data.groups)} configurations, "
               f"{data.environment['runs']} runs · "
               f"{data.environment['cpu_model']} · generated {data.generated_at}\n")
    head = compare.headline(data)
    if head:
        out.append("\n>\n".join(f"> {s}" for s in head) + "\n")
    if data.warnings:
        out.append("**Read with care:**\n\n" + _list(data.warnings))

    out.append("## Runs\n")
    out.append("One row per configuration: medians over its repeats, [min–max] when there are several. "
               "Steady epoch T excludes the first (warm-up) epoch; total time runs from the command's launch "
               "to the result being written.\n")
    out.append(render_table(tables.run_table(data)))
    out.append(tables.run_table_note(data) + "\n")
    out.append("### Skipped and failed configurations\n")
    out.append(render_table(tables.skipped_table(data)) if data.skipped else
               "None: every planned configuration ran.\n")

    out.append("## Speedup and efficiency\n")
    if data.strong or data.weak:
        for rows, mode, what in ((data.strong, "strong", "global batch fixed, S = T(1) ÷ T(N)"),
                                 (data.weak, "weak", "per-worker batch fixed, S = X(N) ÷ X(1)")):
            if rows:
                out.append(f"### {mode.capitalize()} scaling ({what})\n")
                out.append(render_table(tables.scaling_table(rows, mode)))
        if "scaling" in figs:
            out.append(_figure(figs["scaling"]))
    else:
        out.append("No configuration with N > 1 workers has a matching 1-worker baseline.\n")

    out.append("## Epoch time\n")
    out.append(_figure(figs["epoch_times"]))
    out.append("## Training curves\n")
    out.append(_figure(figs["curves"]))
    out.append("## Time split: data, compute, communication\n")
    out.append(_figure(figs["time_split"]))
    out.append(render_table(tables.split_table(data)))

    out.append("## TensorFlow vs PyTorch, from these measurements\n")
    out.append("Every sentence below is filled in from the runs above, its direction included. "
               f"{compare.noise_rule(data)}\n")
    for heading, sentences in compare.comparison(data):
        out.append(f"### {heading}\n\n" + _list(sentences))

    pn = paper_numbers()
    out.append("## The paper's published numbers beside ours\n")
    out.append(f"Paper: {pn['hardware']}; {pn['protocol']}. Absolute times are not comparable across "
               "hardware; ratios and accuracy are. Our epoch time is the mean over every epoch including "
               "the warm-up (closest to the paper's 'average time per epoch'), the steady T in brackets; "
               "total-time efficiency is the definition that reproduces the paper's TensorFlow 'scaling'.\n")
    out.append(render_table(tables.paper_table(data)))
    out.append("### What the paper's 'scaling' is\n\n"
               + _list([scaling_sentence(c) for c in data.paper_checks]))
    notes = [f"{c['label']}: " + " ".join(c["notes"]) for c in pn["configurations"] if c.get("notes")]
    notes.append("Our test accuracy evaluates every test image exactly once, whatever the number of workers.")
    out.append("### Where the paper's definitions differ from ours\n\n" + _list(notes))
    if data.protocol_rows:
        out.append("### The paper's protocol (SGD for PyTorch single and DataParallel) vs Adam\n")
        out.append(render_table(tables.protocol_table(data)))

    out.append("## Classification reports and confusion matrices\n")
    out.append("Per-class F1 (first repeat of each configuration):\n")
    out.append(render_table(tables.f1_table(data)))
    out.append(_figure(figs["confusion"]))
    for g in data.groups:
        out.append(f"<details><summary>{g.label}</summary>\n\n{render_table(tables.classification_table(g))}"
                   "\n</details>\n")

    out.append("## Environment and provenance\n")
    out.append(render_table(tables.environment_table(data)))
    out.append("## Definitions\n")
    out.append("".join(f"- **{term}**: {text}\n" for term, text in DEFINITIONS))
    out.append("## All runs\n")
    out.append(render_table(tables.runs_table(data)))
    return "\n".join(out)
