"""What the report says, in order, once: a list of sections of typed blocks.

`report.html` and `report.md` render the same list (html.py, markdown.py), so the two can
never drift apart in content; each renderer only decides how a block looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from parallel_vision.report import (
    compare,
    levers,
    provenance,
    sharding,
    sharding_tables,
    stragglers,
    tables,
    trust,
    workloads,
)
from parallel_vision.report.data import ReportData
from parallel_vision.report.memory_budget import budget_lines, size_text
from parallel_vision.report.paper import paper_numbers, scaling_sentence
from parallel_vision.report.scaling import DEFINITIONS


@dataclass(frozen=True)
class Text:
    text: str
    muted: bool = False


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class TableBlock:
    table: tables.Table
    swatches: bool = True
    """Colour swatches (matching the figures) in the first column, where the renderer can draw them."""


@dataclass(frozen=True)
class FigureBlock:
    name: str


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section (with an anchor where other pages link to it)."""

    text: str
    anchor: str | None = None


@dataclass(frozen=True)
class Details:
    """A collapsed block: one configuration's classification report."""

    summary: str
    table: tables.Table
    color: str | None = None


@dataclass(frozen=True)
class Terms:
    """Term → definition pairs."""

    pairs: Sequence[tuple[str, str]]


Block = Text | Bullets | TableBlock | FigureBlock | Heading | Details | Terms


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    toc: str
    blocks: list[Block] = field(default_factory=list)


def sections(data: ReportData, figures: set[str]) -> list[Section]:
    """Every section of the report, in order (the headline and warnings come before them)."""
    return [_runs(data), _scaling(data, figures), *_projected(data, figures),  # projected: docs/projection.md
            *_models(data), *_sharding(data), *_levers(data), *_trust(data), *_timing(data), _comparison(data),
            _paper(data), _classification(data), *_environment(data)]


def _runs(data: ReportData) -> Section:
    blocks: list[Block] = [
        Text("One row per configuration: medians over its repeats, [min–max] when there are several. Steady "
             "epoch T excludes the first (warm-up) epoch; total time runs from the command's launch to the result "
             "being written. The colour matches the figures.", muted=True),
        TableBlock(tables.run_table(data)),
        Text(tables.run_table_note(data), muted=True),
        Heading("Skipped and failed configurations", anchor="skipped"),
        TableBlock(tables.skipped_table(data)) if data.skipped else
        Text("None: every planned configuration ran.", muted=True),
    ]
    if data.incomplete:
        blocks.append(Text(f"{len(data.incomplete)} incomplete run(s) are stored but not reported: "
                           + ", ".join(r["path"] for r in data.incomplete), muted=True))
    return Section("runs", "Runs", "Runs", blocks)


def _scaling(data: ReportData, figures: set[str]) -> Section:
    blocks: list[Block] = []
    if data.strong or data.weak:
        for rows, mode, what in ((data.strong, "strong", "global batch fixed, S = T(1) ÷ T(N)"),
                                 (data.weak, "weak", "per-worker batch fixed, S = X(N) ÷ X(1)")):
            if rows:
                blocks += [Heading(f"{mode.capitalize()} scaling ({what})"),
                           TableBlock(tables.scaling_table(rows, mode))]
        if "scaling" in figures:
            blocks.append(FigureBlock("scaling"))
    else:
        blocks.append(Text("No configuration with N > 1 workers has a matching 1-worker baseline, so no speedup "
                           "can be computed.", muted=True))
    return Section("scaling", "Speedup and efficiency", "Speedup & efficiency", blocks)


def _phi_gamma(cal: dict) -> str:  # type: ignore[type-arg]
    """' (φ …, γ …)' where projection.json has them (older files have no φ)."""
    parts = []
    if isinstance(cal.get("overlap"), dict):
        parts.append(f"overlap φ {cal['overlap']['phi']:.2f}")
    if isinstance(cal.get("contention"), dict):
        parts.append(f"contention γ {cal['contention']['gamma']:.2f}")
    return f" ({', '.join(parts)})" if parts else ""


def _projected(data: ReportData, figures: set[str]) -> list[Section]:
    """Shown when ROOT has a projection.json (`pvision project ROOT`): projected, never mixed with measured."""
    doc = data.projection
    if doc is None:
        return []
    link, cal = doc["link"], doc["calibration"]
    blocks: list[Block] = [Text(
        f"PROJECTED, not measured: {doc['model']} over {link['name']} ({link['bandwidth_gbps']:.3g} Gb/s each way, "
        f"{link['latency_us']:.3g} µs), {doc['scaling']} scaling, calibrated from this ROOT's 1-worker runs "
        f"(T_c(b) {cal['compute']['kind']}, {len(cal['compute']['points'])} batch size(s)), the model's "
        f"{len(cal['buckets'])} DDP bucket(s) and ring all-reduce with overlap{_phi_gamma(cal)}; the band is "
        "no overlap / full "
        "overlap with the ring and tree forms (docs/projection.md). Made by `pvision project`; "
        f"{doc['created_at']}.", muted=True)]
    if "projection" in figures:
        blocks.append(FigureBlock("projection"))
    blocks.append(TableBlock(tables.projection_table(doc), swatches=False))
    if doc.get("measured"):
        blocks += [Heading("Projected vs measured (the same N, over the link its linktest measured)"),
                   TableBlock(tables.projection_error_table(doc), swatches=False)]
    blocks.append(Bullets([f"What would help: {doc['what_would_help']}"]))
    return [Section("projected", "Projected scaling", "Projected", blocks)]


def _models(data: ReportData) -> list[Section]:
    """Shown when the runs cover another model than the paper's CNN, or several models."""
    if not any(g.model != "paper_cnn" for g in data.groups):
        return []
    rows = workloads.model_rows(data, data.peak_gflops)
    blocks: list[Block] = [Text(
        "Declared costs of each model (docs/models.md: a multiply-accumulate counts 2 FLOPs, training = 3 × "
        "forward) beside its measured strong scaling. Gradient B / kFLOP is the bytes each worker all-reduces "
        "per thousand FLOPs of its step: the higher it is, the more of the step waits for communication. "
        "All-reduce share: the measured all-reduce time ÷ the steady epoch time (PyTorch DDP; it overlaps the "
        "backward pass, so it bounds what communication costs from above)."
        + ("" if data.peak_gflops else " Declare a peak with `pvision report --peak-gflops X` for MFU."),
        muted=True)]
    if rows:
        blocks.append(TableBlock(tables.models_table(rows, data.peak_gflops)))
        sentence = workloads.verdict(rows)
        if sentence:
            blocks.append(Bullets([sentence]))
    else:
        blocks.append(Text("No model has both a 1-worker and an N-worker run, so no speedup can be shown.",
                           muted=True))
    if any(not g.accuracy_meaningful for g in data.groups):
        blocks.append(Text("Synthetic data: random labels on random pixels measure throughput only; their accuracy "
                           "is not meaningful and is not reported.", muted=True))
    return [Section("models", "Models: why they scale differently", "Models", blocks)]


def _sharding(data: ReportData) -> list[Section]:
    """Shown when the runs hold a run beyond data parallelism (zero1, fsdp, pipeline, tensor, model-parallel) that
    recorded its state bytes (docs/parallelism.md)."""
    comps = sharding.comparisons(data.groups)
    if not comps:
        return []
    blocks: list[Block] = [
        Text(SHARDING_NOTE, muted=True),
        TableBlock(sharding_tables.side_by_side_table(comps)),
        Heading("Measured vs the ZeRO paper's formulas"),
        Text(FORMULA_NOTE, muted=True),
        TableBlock(sharding_tables.formula_table(comps)),
        Bullets(sharding_tables.explanations(comps)),
        Heading("What each strategy buys here"),
        Bullets(sharding.advice_sentences(comps)),
    ]
    if data.memory_per_worker is not None:
        blocks += [Heading(f"The largest model each strategy would fit in {size_text(data.memory_per_worker)} "
                           "per worker"),
                   Bullets(budget_lines(sharding.state_rows(data.groups), data.memory_per_worker))]
    else:
        blocks.append(Text("Declare a memory budget with `pvision report ROOT --memory-per-worker 16GiB` for the "
                           "largest model each strategy would fit in it.", muted=True))
    return [Section("sharding", sharding.TITLE, "Beyond data parallelism", blocks)]


SHARDING_NOTE = (
    "State per worker: the bytes of parameters, gradients and optimizer state each rank held, the largest rank's "
    "(summary.state_bytes_per_worker, measured from the tensors); for FSDP also the full parameters unsharded at "
    "once at the peak of a step. Activations: the bytes autograd saved for backward in one step of one worker's "
    "batch. Peak RSS: the largest worker's. Communication: bytes each worker handed to each collective kind per "
    "optimiser step (median over steps), send-recv being the pipeline's activations and gradients between stages. "
    "Bubble: the pipeline stages' measured idle share of a step, beside (p − 1)/(m + p − 1). MiB = 2^20 bytes; ddp "
    "and single replicate everything, zero1 shards the optimizer state, fsdp shards all three, pipeline gives each "
    "stage its own blocks, tensor (torch) and model-parallel (JAX) split wide_mlp's hidden layers across the "
    "workers, which then all take the whole batch.")
FORMULA_NOTE = (
    "The ZeRO paper's (arXiv 1910.02054) bytes per parameter for fp32 training: replicated 4 (parameters) + 4 "
    "(gradients) + k (optimizer state); ZeRO-1 4 + 4 + k/N; FSDP (4 + 4 + k)/N plus the largest unit's unsharded "
    "parameters (the whole model without resharding). k = 8 for Adam (two moments), 4 for SGD with momentum, 0 for "
    "plain SGD, read from each run's configuration. Below the table, why each measurement differs, if it does.")


def _trust(data: ReportData) -> list[Section]:
    """Shown when ROOT has explain/compare.json (`pvision explain ROOT`; docs/explain.md)."""
    doc = data.explain_compare
    if doc is None:
        return []
    blocks: list[Block] = [Text(trust.intro(doc), muted=True), TableBlock(trust.groups_table(doc), swatches=False),
                           Text(doc["answer"])]
    return [Section("trust", "Do parallel-trained models look at the same pixels?", "Same pixels?", blocks)]


def _levers(data: ReportData) -> list[Section]:
    """Shown when a run pulled a lever (docs/levers.md)."""
    rows = levers.lever_rows(data)
    if not any(levers.levers_of(r.group.config) for r in rows):
        return []
    blocks: list[Block] = [
        Text("Each lever run beside the run without levers that has the same settings otherwise. All-reduce: "
             "seconds per steady epoch and bytes each worker hands to all-reduce per optimiser step (PyTorch DDP, "
             "measured in the communication hook; docs/levers.md). Time to target: training time to the end of the "
             "first epoch whose test accuracy reaches the declared target.", muted=True),
        TableBlock(tables.levers_table(rows)),
        Heading("What each lever buys"),
        Bullets(levers.sentences(data)),
    ]
    return [Section("levers", "Levers: what each one buys", "Levers", blocks)]


def _timing(data: ReportData) -> list[Section]:
    return [
        Section("epoch-time", "Epoch time", "Epoch time", [FigureBlock("epoch_times")]),
        Section("curves", "Training curves", "Training curves", [FigureBlock("curves")]),
        Section("split", "Time split: data, compute, communication", "Time split",
                [FigureBlock("time_split"), TableBlock(tables.split_table(data))]),
        *_ranks(data),
    ]


def _ranks(data: ReportData) -> list[Section]:
    """Per-rank step times (torch DDP on the CPU), the straggler marked; none without such runs."""
    if not stragglers.runs_with_ranks(data.groups):
        return []
    return [Section("ranks", "Per-rank step times: stragglers", "Per-rank step times",
                    [Text(stragglers.NOTE, muted=True), TableBlock(stragglers.per_rank_table(data.groups))])]


def _comparison(data: ReportData) -> Section:
    blocks: list[Block] = [Text("Every sentence below is filled in from the runs above, its direction included. "
                                f"{compare.noise_rule(data)}", muted=True)]
    for heading, sentences in compare.comparison(data):
        blocks += [Heading(heading), Bullets(sentences)]
    title = compare.frameworks_title(data)
    return Section("compare", f"{title}, from these measurements", title, blocks)


def _paper(data: ReportData) -> Section:
    pn = paper_numbers()
    notes = [f"{c['label']}: " + " ".join(c["notes"]) for c in pn["configurations"] if c.get("notes")]
    notes.append("Our test accuracy evaluates every test image exactly once, whatever the number of workers; "
                 "the paper's DDP figure covers one rank's half.")
    notes.append("Our epoch time is the training loop only, synchronised, evaluation excluded; the paper does not "
                 "say what its per-epoch time includes.")
    blocks: list[Block] = [
        Text(f"Paper: {pn['hardware']}; {pn['protocol']}. Ours: the machine below. Absolute times are not "
             "comparable across this hardware; ratios and accuracy are. Our epoch time is the mean over every epoch "
             "including the warm-up (closest to the paper's 'average time per epoch'), the steady T in brackets; "
             "total-time efficiency T_total(1) ÷ (N·T_total(N)) is the definition that reproduces the paper's "
             "TensorFlow 'scaling'.", muted=True),
        TableBlock(tables.paper_table(data)),
        Heading("What the paper's 'scaling' is"), Bullets([scaling_sentence(c) for c in data.paper_checks]),
        Heading("Where the paper's definitions differ from ours"), Bullets(notes),
    ]
    if data.protocol_rows:
        blocks += [Heading("The paper's protocol (SGD for PyTorch single and DataParallel) vs Adam"),
                   TableBlock(tables.protocol_table(data), swatches=False)]
    return Section("paper", "The paper's published numbers beside ours", "Paper vs ours", blocks)


def _classification(data: ReportData) -> Section:
    blocks: list[Block] = [
        Text("First repeat of each configuration. Per-class F1 side by side; the full scikit-learn report per "
             "configuration below (the paper's Figs. 3, 4, 8, 10 and 14).", muted=True),
        TableBlock(tables.f1_table(data), swatches=False),
        FigureBlock("confusion"),
    ]
    blocks += [Details(g.label, tables.classification_table(g), g.color) for g in data.groups]
    return Section("classification", "Classification reports and confusion matrices", "Classification", blocks)


def _environment(data: ReportData) -> list[Section]:
    return [
        Section("environment", "Environment and provenance", "Environment",
                [TableBlock(provenance.environment_table(data), swatches=False)]),
        Section("definitions", "Definitions", "Definitions", [Terms(DEFINITIONS)]),
        Section("all-runs", "All runs", "All runs", [
            TableBlock(tables.runs_table(data)),
            Text(f"Source of truth: the result.json files under {data.root}; this report was generated from "
                 "results.sqlite, which is rebuilt from them.", muted=True),
        ]),
    ]
