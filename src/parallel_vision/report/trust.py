"""The report's section "Do parallel-trained models look at the same pixels?", from ROOT/explain/compare.json
(`pvision explain ROOT`, explain/compare.py): each group of pairs beside the seed band, its verdict, and the
measured answer in one sentence. Reads the document only."""

from __future__ import annotations

from typing import Any

from parallel_vision.report.tables import Table

#: The columns, in compare.json's metric names (explain/similarity.py), with their headers.
COLUMNS = (("spearman_abs", "Spearman |·|"), ("spearman", "Spearman"), ("ssim", "SSIM"), ("hog", "HOG"),
           ("topk", "top-10 %"))


def cell(s: dict[str, Any]) -> str:
    if s.get("median") is None:
        return "n/a"
    return f"{s['median']:.2f} [{s['lo']:.2f}–{s['hi']:.2f}]"


def groups_table(doc: dict[str, Any]) -> Table:
    """One row per (group, method): its pairs, each metric's median with its 95 % bootstrap interval, the verdict."""
    verdicts = {(v["group"], v["method"]): v["verdict"].split(":")[0] for v in doc["verdicts"]}
    rows = []
    for key, got in doc["groups"].items():
        group, method = key.split("|")
        verdict = "the yardstick" if group == "seed band" else verdicts.get((group, method), "")
        rows.append([group, method, str(got["pairs"]), *(cell(got[k]) for k, _ in COLUMNS), verdict])
    floor = doc.get("randomised_floor") or {}
    for method, f in floor.items():
        if f.get("spearman_median") is not None:
            rows.append(["randomised floor", method, f"{f['runs']} run(s)", "", f"{f['spearman_median']:.2f}",
                         "", "", "", "what unrelated maps give"])
    return Table(headers=["group", "method", "pairs", *(h for _, h in COLUMNS), "against the seed band"],
                 rows=rows, align="lll" + "r" * len(COLUMNS) + "l")


def intro(doc: dict[str, Any]) -> str:
    explained = [r for r in doc["runs"] if r["explained"]]
    left = [r for r in doc["runs"] if not r["explained"]]
    text = (f"{len(explained)} run(s) explained on the same {doc['images']} test images (seed {doc['seed']}, "
            f"{', '.join(doc['methods'])}), compared image by image for every pair that differs in one respect: the "
            "seed (the seed band, the yardstick: any nondeterminism gives a seed's worth of difference), the strategy "
            "at the same seed, or the framework under --init aligned. Medians over images with 95 % bootstrap "
            "intervals; the verdict compares a group's interval of the headline metric (Spearman of |maps|) with the "
            "seed band's.")
    if left:
        text += " Not explained: " + "; ".join(f"{r['run']} ({r['reason']})" for r in left) + "."
    return text
