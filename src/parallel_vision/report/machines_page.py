"""`pvision report ROOT_A ROOT_B … --out DIR`: the report across machines, as HTML, Markdown and JSON.

What it says is one list of sections (`machine_sections`), rendered by html.py's and markdown.py's block
renderers, so the two files say the same. Only DIR is written: every ROOT is read where it is (its
results.sqlite index is kept up to date, as `pvision report ROOT` does) and its run files are named, not copied.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.errors import ConfigError
from parallel_vision.report import html as html_page
from parallel_vision.report import markdown as md_page
from parallel_vision.report.groups import ConfigGroup
from parallel_vision.report.machines import Machine, MachinesData, build_machines_data
from parallel_vision.report.scaling import Spread
from parallel_vision.report.sections import Block, Bullets, Section, TableBlock, Text
from parallel_vision.report.tables import Table, fspread, threads_text

FORMATS = ("html", "md", "text")
TITLE = "Parallel Vision — report across machines"


def _ratio(s: Spread | None) -> str:
    return f"{fspread(s)}×" if s is not None else "—"


def _target(entry_target: Spread | None, missed: int | None) -> str:
    if missed is None:
        return "—"
    if entry_target is None or missed:
        return "not reached"
    return fspread(entry_target, 1)


def machines_table(data: MachinesData) -> Table:
    rows = []
    for m in data.machines:
        env = m.data.environment
        own = m.root / "report.html"
        rows.append([m.label, m.host, m.hardware, ", ".join(m.code_versions), str(env["runs"]),
                     str(env["configurations"]), f"{env['first_run'] or '—'} → {env['last_run'] or '—'}",
                     str(m.root.resolve()), str(own.resolve()) if own.is_file() else "—"])
    return Table(["Machine", "Host", "Hardware", "Code version(s)", "Runs", "Configurations", "Run dates (UTC)",
                  "ROOT", "ROOT's own report"], rows, [], "llllrrlll")


def _scaling_cells(m: Machine, g: ConfigGroup) -> tuple[str, str, str]:
    rows = m.scaling(g)
    if not rows:
        return ("baseline" if g.workers == 1 else "—"), "—", "—"
    return ("; ".join(f"{r.baseline.label} ({r.mode})" for r in rows),
            "; ".join(fspread(r.speedup) for r in rows), "; ".join(fspread(r.efficiency, 1, 100.0) for r in rows))


def side_by_side_table(data: MachinesData) -> Table:
    rows: list[list[str]] = []
    sections: set[int] = set()
    headers = ["Configuration", "Threads / worker", "Repeats", "Steady epoch T (s)", "Images/s X",
               "Test accuracy (%)", "Baseline (this machine)", "Speedup S", "Efficiency E (%)"]
    for m in data.machines:
        sections.add(len(rows))
        rows.append([f"{m.label} — {m.hardware}; code {', '.join(m.code_versions)}"] + [""] * (len(headers) - 1))
        for g in m.data.groups:
            base, s, e = _scaling_cells(m, g)
            accuracy = (fspread(g.stats.get("test_accuracy"), 2, 100.0) if g.accuracy_meaningful
                        else "n/a (synthetic)")
            rows.append([g.label, threads_text(g), str(g.repeats),
                         fspread(g.stats.get("mean_epoch_time_excl_warmup_s")),
                         fspread(g.stats.get("images_per_s_excl_warmup"), 0, thousands=True), accuracy, base, s, e])
    return Table(headers, rows, [], "lrrrrrlrr", sections=sections)


def cross_table(data: MachinesData) -> Table:
    headers = ["Configuration", "Machine", "Threads / worker", "Steady epoch T (s)", "Images/s X",
               "X ÷ X(reference)"]
    with_target = any(e.target_missed is not None for row in data.cross for e in row.entries)
    headers += ["Time to target (s)", "Reference's time to target ÷ this"] if with_target else []
    rows: list[list[str]] = []
    for row in data.cross:
        for i, e in enumerate(row.entries):
            g = e.group
            cells = [row.label if i == 0 else "", e.machine.label + (" (reference)" if i == 0 else ""),
                     threads_text(g), fspread(g.stats.get("mean_epoch_time_excl_warmup_s")),
                     fspread(g.stats.get("images_per_s_excl_warmup"), 0, thousands=True),
                     _ratio(e.throughput_ratio) if i else "1×"]
            if with_target:
                ref_reached = e.target_missed == 0 and e.target is not None
                cells += [_target(e.target, e.target_missed),
                          _ratio(e.target_ratio) if i else ("1×" if ref_reached else "—")]
            rows.append(cells)
    return Table(headers, rows, [], "llrrrr" + ("rr" if with_target else ""))


def cross_sentences(data: MachinesData) -> list[str]:
    """One sentence per configuration measured on several machines, its direction from the numbers."""
    out = []
    for row in data.cross:
        ref = row.reference
        for e in row.entries[1:]:
            if e.throughput_ratio is None:
                continue
            r = e.throughput_ratio.median
            how = (f"{r:.2f}× the images per second of" if r >= 1 else
                   f"{r:.2f}× the images per second of (it is {1 / r:.2f}× slower than)")
            text = f"{row.label}: {e.machine.label} processes {how} {ref.machine.label}"
            if e.target_ratio is not None:
                q = e.target_ratio.median
                text += (f"; it reaches the target accuracy {q:.2f}× sooner" if q >= 1 else
                         f"; it takes {1 / q:.2f}× as long to reach the target accuracy")
            out.append(text + ".")
    return out


def files_table(data: MachinesData) -> Table:
    rows = []
    for m in data.machines:
        for g in m.data.groups:
            for r in g.runs:
                rows.append([m.label, g.label, str(r.get("repeat") or "—"), str(r.get("code_version") or "—"),
                             str((m.root / r["path"] / "result.json").resolve())])
    return Table(["Machine", "Configuration", "Repeat", "Code version", "result.json (read where it is)"], rows,
                 [], "llrll")


def machine_sections(data: MachinesData) -> list[Section]:
    """Everything the report across machines says, in order."""
    cross: list[Block] = [Text(
        "The same configuration (every setting equal except threads per worker, which each machine chooses) on "
        "each machine that measured it. The reference is the first ROOT given that has it; X ÷ X(reference) > 1: "
        "this machine processes more images per second. Time to target: training time to the first epoch whose "
        "test accuracy reaches the declared target, where the runs declared one.", muted=True)]
    if data.cross:
        cross += [TableBlock(cross_table(data), swatches=False), Bullets(cross_sentences(data))]
    else:
        cross.append(Text("No configuration was measured on more than one of these machines: nothing to compare "
                          "across machines.", muted=True))
    return [
        Section("machines", "Machines", "Machines", [
            Text("One machine per ROOT, labelled from the provenance stored with its runs (host, CPU, cores, "
                 "GPUs); two ROOTs of the same machine are told apart by the ROOT's name.", muted=True),
            TableBlock(machines_table(data), swatches=False)]),
        Section("side-by-side", "Runs side by side, per machine", "Side by side", [
            Text("Medians over repeats, [min–max] with several. Speedup and efficiency are each machine's own: "
                 "its N-worker run against its own 1-worker baseline (docs/report.md), never against another "
                 "machine.", muted=True),
            TableBlock(side_by_side_table(data), swatches=False)]),
        Section("across", "The same configuration across machines", "Across machines", cross),
        Section("files", "Run files", "Run files", [
            Text("Nothing was copied: each run's result.json is read where it is.", muted=True),
            TableBlock(files_table(data), swatches=False)]),
    ]


def render_html(data: MachinesData) -> str:
    parts = [f"<header><h1>{html_page._e(TITLE)}</h1><p class='sub'>"
             f"{len(data.machines)} machines: {html_page._e(', '.join(m.label for m in data.machines))} · "
             f"generated {html_page._e(data.generated_at)}</p></header>"]
    if data.warnings:
        parts.append("<div class='warnings'><b>Read with care:</b>" + html_page._list(data.warnings) + "</div>")
    report = machine_sections(data)
    parts.append("<nav class='toc'>" + " ".join(f"<a href='#{s.anchor}'>{html_page._e(s.toc)}</a>"
                                               for s in report) + "</nav>")
    for section in report:
        parts.append(f"<h2 id='{section.anchor}'>{html_page._e(section.title)}</h2>")
        parts.extend(html_page.render_block(block, {}) for block in section.blocks)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html_page._e(TITLE)}</title><style>{html_page.CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def render_markdown(data: MachinesData) -> str:
    out = [f"# {TITLE}\n", f"{len(data.machines)} machines: {', '.join(m.label for m in data.machines)} · "
                           f"generated {data.generated_at}\n"]
    if data.warnings:
        out.append("**Read with care:**\n\n" + "".join(f"- {w}\n" for w in data.warnings))
    for section in machine_sections(data):
        out.append(f"## {section.title}\n")
        out.extend(md_page.render_block(block, {}) for block in section.blocks)
    return "\n".join(out)


def summary(data: MachinesData) -> dict[str, Any]:
    """report.json: the machines, each configuration's numbers and own scaling, and the cross-machine ratios."""

    def spread(s: Spread | None) -> Any:
        return None if s is None else {"median": s.median, "lo": s.lo, "hi": s.hi, "n": s.n}

    return {
        "generated_at": data.generated_at,
        "machines": [{
            "label": m.label, "root": str(m.root.resolve()), "host": m.host, "hardware": m.hardware,
            "code_versions": m.code_versions,
            "configurations": [{
                "key": g.key, "label": g.label, "workers": g.workers, "threads_per_worker": g.threads,
                "run_ids": [r["run_id"] for r in g.runs],
                "result_files": [str((m.root / r["path"] / "result.json").resolve()) for r in g.runs],
                "images_per_s": spread(g.stats.get("images_per_s_excl_warmup")),
                "steady_epoch_time_s": spread(g.stats.get("mean_epoch_time_excl_warmup_s")),
                "scaling": [{"mode": r.mode, "baseline": r.baseline.label, "speedup": spread(r.speedup),
                             "efficiency": spread(r.efficiency)} for r in m.scaling(g)],
            } for g in m.data.groups],
        } for m in data.machines],
        "across_machines": [{
            "configuration": row.label, "reference": row.reference.machine.label,
            "machines": [{"machine": e.machine.label, "configuration_key": e.group.key,
                          "throughput_ratio": spread(e.throughput_ratio), "time_to_target_s": spread(e.target),
                          "target_missed": e.target_missed, "target_ratio": spread(e.target_ratio)}
                         for e in row.entries],
        } for row in data.cross],
        "warnings": data.warnings,
    }


def print_machines_text(data: MachinesData) -> None:
    from parallel_vision.report.text import _rich_table, make_console

    console = make_console()
    for title, table in (("Machines", machines_table(data)), ("Runs side by side", side_by_side_table(data)),
                         ("The same configuration across machines", cross_table(data))):
        console.print(_rich_table(table, title))
    for sentence in cross_sentences(data):
        console.print(f"- {sentence}", highlight=False)


def check_out(roots: Sequence[Path], out: Path) -> None:
    """DIR must not be one of the ROOTs: their own report.html/report.md would be overwritten."""
    target = Path(out).resolve()
    for root in roots:
        if Path(root).resolve() == target:
            raise ConfigError(f"--out {out} is the ROOT {root} itself; give a folder of its own for the report "
                              "across machines")


def write_machines_report(roots: Sequence[str | Path], out: str | Path, formats: Sequence[str] = ("html", "md"),
                          peak_gflops: float | None = None) -> list[Path]:
    """Build the report across machines from ROOTs and write DIR/report.html, report.md, report.json."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown report format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    roots, out = [Path(r) for r in roots], Path(out)
    check_out(roots, out)
    data = build_machines_data(roots, peak_gflops)
    written: list[Path] = []
    if "html" in formats:
        atomic_write_bytes(out / "report.html", render_html(data).encode())
        written.append(out / "report.html")
    if "md" in formats:
        atomic_write_bytes(out / "report.md", render_markdown(data).encode())
        written.append(out / "report.md")
    if any(f != "text" for f in formats):
        atomic_write_bytes(out / "report.json", (json.dumps(summary(data), indent=2) + "\n").encode())
        written.append(out / "report.json")
    if "text" in formats:
        print_machines_text(data)
    return written
