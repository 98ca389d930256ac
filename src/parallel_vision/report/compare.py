"""The frameworks' comparison (PyTorch, TensorFlow, JAX), written from the measured numbers.

Every sentence is a template filled with numbers from ReportData, and its
direction (faster, slower, scales better, …) is decided by those numbers. A
difference is called a tie when it is within `TIE` (relative) with a single
repeat, or when the min–max ranges overlap with several repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from parallel_vision.report.data import ReportData
from parallel_vision.report.groups import FRAMEWORK_NAMES, STRATEGY_NAMES, ConfigGroup
from parallel_vision.report.scaling import ScalingRow, Spread

#: Relative difference below which two single-repeat measurements are called "about the same".
TIE = 0.03
#: Test-accuracy gap (percentage points) between comparable runs of the two frameworks, under each
#: framework's default initialisation, above which the report names the measured cause.
INIT_GAP_PP = 5.0
INIT_DOC = "docs/definitions.md, section “Framework defaults vs aligned initialisation”"
#: Parallel efficiency above 1 + this (a speedup above N on N workers) is superlinear: not better scaling but a
#: measurement artefact or a 1-worker baseline that underuses its core; such a row is never ranked.
SUPERLINEAR_TOL = 0.02


def _fw(name: str) -> str:
    return FRAMEWORK_NAMES.get(name, name)


def _st(name: str) -> str:
    return STRATEGY_NAMES.get(name, name)


def _sp(text: str) -> str:
    return f" {text}" if text else ""


def resolved(a: Spread, b: Spread) -> bool:
    """Whether a and b differ beyond the noise we can see (range overlap, or TIE with one repeat)."""
    if a.n > 1 and b.n > 1:
        return a.hi < b.lo or b.hi < a.lo
    return abs(a.median - b.median) > TIE * max(abs(a.median), abs(b.median))


def faster_phrase(x_a: Spread, x_b: Spread) -> str:
    """'1.23× faster than', 'about as fast as' or '1.23× slower than' — a vs b by throughput."""
    if not resolved(x_a, x_b):
        return "about as fast as"
    ratio = x_a.median / x_b.median
    return f"{ratio:.2f}× faster than" if ratio > 1 else f"{1 / ratio:.2f}× slower than"


def _noise_note(spreads: Sequence[Spread]) -> str:
    n = min(s.n for s in spreads)
    return f"(medians of {n} repeats)" if n > 1 else ""


def noise_rule(data: ReportData) -> str:
    """How ties are decided, said once at the top of the comparison."""
    repeats = sorted({g.repeats for g in data.groups})
    if repeats == [1]:
        return (f"One repeat per configuration, so no run-to-run spread is measured: a difference under {TIE:.0%} "
                "is called a tie. Use --repeats 3 or more for ranges.")
    return ("Medians over repeats; a difference counts only when the min–max ranges do not overlap (with a "
            f"single repeat: when it exceeds {TIE:.0%}).")


def _single_pairs(data: ReportData) -> list[tuple[ConfigGroup, ConfigGroup]]:
    """1-worker runs of PyTorch and each other framework with the same batch, threads and everything else."""
    pairs = []
    torch_singles = [g for g in data.groups if g.framework == "torch" and g.workers == 1]
    other_singles = [g for g in data.groups if g.framework != "torch" and g.workers == 1]
    for t in torch_singles:
        for f in other_singles:
            if (t.family, t.global_batch, t.threads) == (f.family, f.global_batch, f.threads):
                pairs.append((t, f))
    return pairs


def _name(g: ConfigGroup) -> str:
    return FRAMEWORK_NAMES.get(g.framework, g.framework)


def _x(g: ConfigGroup) -> Spread | None:
    return g.stats.get("images_per_s_excl_warmup")


def single_process_sentences(data: ReportData) -> list[str]:
    out = []
    for t, f in _single_pairs(data):
        xt, xf = _x(t), _x(f)
        if xt is None or xf is None:
            continue
        threads = (f"{t.threads:g} thread{'s' if t.threads != 1 else ''}" if t.threads
                   else "the default threads")
        out.append(
            f"One worker with {threads}, global batch {t.global_batch}: PyTorch trains at {xt.median:,.0f} "
            f"images/s and {_name(f)} at {xf.median:,.0f} images/s — PyTorch is {faster_phrase(xt, xf)} "
            f"{_name(f)}{_sp(_noise_note([xt, xf]))}."
        )
    return out


def _on_cpu(g: ConfigGroup) -> bool:
    return all(not (r.get("environment") or {}).get("gpus") for r in g.runs)


def keras_backend_sentences(data: ReportData) -> list[str]:
    """Where Keras on JAX trains the same model slower than Keras on TensorFlow on a CPU: the measured reason
    (docs/jax.md), so a reader does not take "JAX is slow" for the tool's doing."""
    out = []
    tf_singles = [g for g in data.groups if g.framework == "tensorflow" and g.workers == 1 and _on_cpu(g)]
    jax_singles = [g for g in data.groups if g.framework == "jax" and g.workers == 1 and _on_cpu(g)]
    for t in tf_singles:
        for j in jax_singles:
            xt, xj = _x(t), _x(j)
            if (t.family, t.global_batch, t.threads) != (j.family, j.global_batch, j.threads) or not (xt and xj):
                continue
            if xt.median < 1.2 * xj.median:
                continue
            out.append(f"Keras on JAX trains the same model {xt.median / xj.median:.1f}× slower than Keras on "
                       "TensorFlow here. On CPUs the profile in docs/jax.md (benchmarks/jax_cpu.py: run it to "
                       "check this machine) puts most of the gap in XLA's convolution weight gradients, several "
                       "times TensorFlow's oneDNN kernels, with no XLA flag of the pinned jaxlib changing them; "
                       "Keras itself adds nothing measurable.")
    return out[:1]


def superlinear(r: ScalingRow) -> bool:
    """A speedup above N on N workers, beyond noise (SUPERLINEAR_TOL)."""
    return r.efficiency.median > 1 + SUPERLINEAR_TOL


def _images(x: Spread) -> str:
    return f"{x.median:,.0f}"


def scaling_sentences(rows: list[ScalingRow], mode: str) -> list[str]:
    out = []
    by_n: dict[int, list[ScalingRow]] = {}
    for r in rows:
        by_n.setdefault(r.workers, []).append(r)
    what = "global batch fixed" if mode == "strong" else "per-worker batch fixed"
    for n, rs in sorted(by_n.items()):
        parts = [f"{_fw(r.point.framework)} {_st(r.point.strategy)} S = {r.speedup.median:.2f} "
                 f"(E = {100 * r.efficiency.median:.0f} %; {_images(r.baseline.throughput)} → "
                 f"{_images(r.point.throughput)} images/s)" for r in rs]
        sentence = f"{mode.capitalize()} scaling to {n} workers ({what}): " + "; ".join(parts) + "."
        odd = [r for r in rs if superlinear(r)]
        for r in odd:
            sentence += (f" {_fw(r.point.framework)} {_st(r.point.strategy)}'s E above 100 % (more than {n}× its "
                         f"1-worker speed on {n} workers) is a measurement artefact, not better scaling: most likely "
                         f"its 1-worker baseline ({r.baseline.label}) underuses its core, or timing noise; it is "
                         "not ranked.")
        torch_rows = [r for r in rs if r.point.framework == "torch" and not superlinear(r)]
        tf_rows = [r for r in rs if r.point.framework == "tensorflow" and not superlinear(r)]
        if torch_rows and tf_rows:
            bt = max(torch_rows, key=lambda r: r.speedup.median)
            bf = max(tf_rows, key=lambda r: r.speedup.median)
            if not resolved(bt.speedup, bf.speedup):
                sentence += (f" The two frameworks scale about equally here "
                             f"{_noise_note([bt.speedup, bf.speedup])}".rstrip() + ".")
            else:
                win, lose = (bt, bf) if bt.speedup.median > bf.speedup.median else (bf, bt)
                sentence += (f" {_fw(win.point.framework)} {_st(win.point.strategy)} scales better: "
                             f"{100 * win.efficiency.median:.0f} % vs {100 * lose.efficiency.median:.0f} % "
                             f"efficiency{_sp(_noise_note([bt.speedup, bf.speedup]))}.")
        for r in rs:
            if r.speedup.median < 1 and resolved(r.speedup, Spread(1.0, 1.0, 1.0, r.speedup.n)):
                sentence += (f" {_fw(r.point.framework)} {_st(r.point.strategy)} ×{n} is slower than its own "
                             f"1-worker run ({1 / r.speedup.median:.2f}× the epoch time).")
        out.append(sentence)
    return out


def baseline_speed_sentences(rows: list[ScalingRow]) -> list[str]:
    """How far apart the frameworks' own 1-worker speeds are: efficiency alone hides it."""
    out = []
    by_n: dict[int, list[ScalingRow]] = {}
    for r in rows:
        by_n.setdefault(r.workers, []).append(r)
    for n, rs in sorted(by_n.items()):
        best: dict[str, ScalingRow] = {}
        for r in rs:  # each framework's fastest N-worker row, with its own 1-worker baseline
            held = best.get(r.point.framework)
            if held is None or r.point.throughput.median > held.point.throughput.median:
                best[r.point.framework] = r
        if len(best) < 2:
            continue
        ordered = sorted(best.values(), key=lambda r: -r.baseline.throughput.median)
        fast, slow = ordered[0].baseline.throughput, ordered[-1].baseline.throughput
        if not resolved(fast, slow):
            continue
        ones = ", ".join(f"{_fw(r.point.framework)} {_images(r.baseline.throughput)}" for r in ordered)
        ns = ", ".join(f"{_fw(r.point.framework)} {_images(r.point.throughput)}"
                       for r in sorted(ordered, key=lambda r: -r.point.throughput.median))
        out.append(f"The frameworks' 1-worker speeds differ up to {fast.median / slow.median:.1f}× ({ones} "
                   f"images/s); at {n} workers: {ns} images/s. Efficiency compares each framework with its own "
                   "1-worker run, not which one trains fastest.")
    return out


def best_single_sentences(rows: list[ScalingRow]) -> list[str]:
    """The practical question: does N-worker training beat the best single-process run on this machine?"""
    out = []
    for r in rows:
        if r.best.key == r.baseline.key and r.same_threads:
            continue
        s = r.speedup_vs_best
        if not resolved(s, Spread(1.0, 1.0, 1.0, s.n)):
            verdict = "about as fast as"
        elif s.median > 1:
            verdict = f"{s.median:.2f}× faster than"
        else:
            verdict = f"{1 / s.median:.2f}× slower than"
        out.append(
            f"{r.point.label} is {verdict} the fastest single-process {_fw(r.point.framework)} run "
            f"({r.best.label}) — the comparison that matters when both use the same machine."
        )
    return out


def overhead_sentences(data: ReportData) -> list[str]:
    """Fixed costs outside the epochs (start-up, import, data, model build, evaluation), per framework."""
    out = []
    for fw in data.frameworks:
        groups = [g for g in data.groups if g.framework == fw]
        fixed, shares = [], []
        for g in groups:
            for r in g.runs:
                s = r["summary"]
                if s.get("total_time_s") and s.get("train_time_s") is not None:
                    extra = s["total_time_s"] - s["train_time_s"]
                    fixed.append(extra)
                    shares.append(extra / s["total_time_s"])
        if fixed:
            fixed.sort()
            shares.sort()
            out.append(
                f"{_fw(fw)}: {fixed[len(fixed) // 2]:.1f} s of each run (median; "
                f"{100 * shares[len(shares) // 2]:.0f} % of its total time) is spent outside the training "
                "epochs — process start-up, framework import, data loading, model build and evaluation."
            )
    return out


def warmup_sentences(data: ReportData) -> list[str]:
    out = []
    for g in data.groups:
        w, t = g.stats.get("warmup_epoch_time_s"), g.stats.get("mean_epoch_time_excl_warmup_s")
        if w is None or t is None or g.config["epochs"] < 2:
            continue
        out.append(f"{g.label}: warm-up epoch {w.median:.2f} s vs {t.median:.2f} s steady "
                   f"({w.median / t.median:.2f}×).")
    return out


def accuracy_sentences(data: ReportData) -> list[str]:
    out = []
    for t, f in _single_pairs(data) + _multi_pairs(data):
        at, af = t.stats.get("test_accuracy"), f.stats.get("test_accuracy")
        if at is None or af is None:
            continue
        diff = 100 * (at.median - af.median)
        if abs(diff) < 0.005:
            direction = "the same"
        else:
            direction = f"{abs(diff):.2f} percentage points {'higher' if diff > 0 else 'lower'} for PyTorch"
        out.append(
            f"Test accuracy after {t.config['epochs']} epoch(s) on {t.n_test:,} images: {t.label} "
            f"{100 * at.median:.2f} %, {f.label} {100 * af.median:.2f} % — {direction} "
            f"{_noise_note([at, af])}".rstrip() + "."
        )
    return out


def init_gap_sentences(data: ReportData) -> list[str]:
    """A note where the frameworks' accuracy differs by more than INIT_GAP_PP under `init=framework`."""
    gaps = []
    for t, f in _single_pairs(data) + _multi_pairs(data):
        at, af = t.stats.get("test_accuracy"), f.stats.get("test_accuracy")
        if at is None or af is None or t.init != "framework" or f.init != "framework":
            continue
        diff = 100 * (at.median - af.median)
        if abs(diff) > INIT_GAP_PP:
            gaps.append((abs(diff), t, f))
    if not gaps:
        return []
    gap, t, f = max(gaps, key=lambda g: g[0])
    pairs = f"{len(gaps)} comparable pair{'s' if len(gaps) != 1 else ''}"
    return [
        f"Accuracy gap of more than {INIT_GAP_PP:g} percentage points between the frameworks in {pairs} "
        f"(largest: {t.label} vs {f.label}, {gap:.1f} points), with each framework's default initialisation "
        "(--init framework). Measured cause: the weight initialisation scheme, not the framework — Keras' "
        "Glorot-uniform kernels with zero biases against PyTorch's Kaiming-uniform (a = √5) weights and "
        "biases; in short runs BatchNorm's moving statistics, which test-time evaluation uses, have not yet "
        "caught up with Glorot's much smaller first-layer activations. Adam's epsilon (1e-7 vs 1e-8) made no "
        "measurable difference. `--init aligned` starts both frameworks from the same weights and optimiser "
        f"constants; see {INIT_DOC}."
    ]


def _multi_pairs(data: ReportData) -> list[tuple[ConfigGroup, ConfigGroup]]:
    pairs = []
    for t in (g for g in data.groups if g.framework == "torch" and g.workers > 1):
        for f in (g for g in data.groups if g.framework == "tensorflow" and g.workers > 1):
            if (t.family, t.global_batch, t.workers) == (f.family, f.global_batch, f.workers):
                pairs.append((t, f))
    return pairs


def split_sentences(data: ReportData) -> list[str]:
    out = []
    for g in data.groups:
        split = g.time_split()
        epoch = split.get("epoch_time_s")
        if not epoch:
            continue
        data_share = 100 * (split.get("data_time_s") or 0) / epoch
        comm = split.get("comm_time_s")
        if g.workers == 1:
            comm_text = "no communication (1 worker)"
        elif comm is None:
            comm_text = "communication not measured"
        else:
            comm_text = f"gradient all-reduce {comm:.2f} s ({100 * comm / epoch:.0f} %, overlapping compute)"
        out.append(f"{g.label}: data {data_share:.0f} % of the steady epoch, {comm_text}.")
    return out


def paper_claim_sentences(data: ReportData) -> list[str]:
    """The paper's qualitative conclusions, checked against our numbers (direction only)."""
    out = []
    strong = data.strong
    tf2 = [r for r in strong if r.point.framework == "tensorflow" and r.point.strategy == "mirrored"]
    ddp2 = [r for r in strong if r.point.framework == "torch" and r.point.strategy == "ddp"]
    if tf2:
        r = max(tf2, key=lambda r: r.workers)
        holds = "holds" if r.speedup.median > 1 and resolved(r.speedup, Spread(1, 1, 1, r.speedup.n)) \
            else "does not hold"
        out.append(f"Paper: TensorFlow data parallelism on 2 devices beats 1 device (S = 1.66 by its epoch "
                   f"times). Here, Mirrored ×{r.workers}: S = {r.speedup.median:.2f} against "
                   f"{r.baseline.label} — the claim {holds} on this machine.")
    if ddp2:
        r = max(ddp2, key=lambda r: r.workers)
        holds = "holds" if r.speedup.median > 1 and resolved(r.speedup, Spread(1, 1, 1, r.speedup.n)) \
            else "does not hold"
        out.append(f"Paper: PyTorch DDP is much faster than 1 device (S = 3.75 by its epoch times, 'scaling "
                   f"184.88 %'). Here, DDP ×{r.workers}: S = {r.speedup.median:.2f} (E = "
                   f"{100 * r.efficiency.median:.0f} %) — the claim {holds} on this machine.")
    if tf2 and ddp2:
        a, b = max(tf2, key=lambda r: r.workers), max(ddp2, key=lambda r: r.workers)
        if a.workers == b.workers:
            if superlinear(a) or superlinear(b):
                verdict = ("not decided here: an efficiency above 100 % is a measurement artefact, not better "
                           "scaling")
            elif not resolved(a.speedup, b.speedup):
                verdict = "neither scales better here"
            elif a.speedup.median > b.speedup.median:
                verdict = "TensorFlow scales better here, as the paper concludes"
            else:
                verdict = "PyTorch DDP scales better here, contrary to the paper's conclusion"
            out.append(f"Paper: 'Data Parallelism in Tensorflow is superior to Pytorch due to high scaling'. "
                       f"Here, E({a.workers}) = {100 * a.efficiency.median:.0f} % (TensorFlow Mirrored) vs "
                       f"{100 * b.efficiency.median:.0f} % (PyTorch DDP): {verdict}.")
    # The claim is about PyTorch's nn.DataParallel; JAX's `dp` (one process, several devices) is another thing.
    dp = [s for s in data.skipped if s.get("strategy") == "dp" and s.get("framework") == "torch"]
    dp_runs = [r for r in strong if r.point.framework == "torch" and r.point.strategy == "dp"]
    if dp_runs:
        r = max(dp_runs, key=lambda r: r.workers)
        out.append(f"Paper: DataParallel gives no speedup over 1 GPU. Here, PyTorch DataParallel ×{r.workers}: "
                   f"S = {r.speedup.median:.2f} against {r.baseline.label}.")
    elif dp:
        out.append(f"Paper: DataParallel gives no speedup over 1 GPU — not testable here: {dp[0]['reason']}")
    else:
        out.append("Paper: DataParallel gives no speedup over 1 GPU — not measured in these results "
                   "(no PyTorch DataParallel run).")
    return out


def frameworks_title(data: ReportData) -> str:
    """The comparison section's name, for the frameworks it holds: 'PyTorch, TensorFlow and JAX compared'."""
    names = [_fw(f) for f in data.frameworks]
    if len(names) < 2:
        return f"{names[0] if names else 'The runs'}: speed, scaling and costs"
    return f"{', '.join(names[:-1])} and {names[-1]} compared"


def comparison(data: ReportData) -> list[tuple[str, list[str]]]:
    """Headed paragraphs of the frameworks' comparison (empty sections left out)."""
    sections: list[tuple[str, list[str]]] = [
        ("Single-process speed", single_process_sentences(data) + keras_backend_sentences(data)),
        ("Scaling", scaling_sentences(data.strong, "strong") + baseline_speed_sentences(data.strong)
         + scaling_sentences(data.weak, "weak")),
        ("Against the best single-process run", best_single_sentences(data.strong + data.weak)),
        ("Accuracy", accuracy_sentences(data) + init_gap_sentences(data)),
        ("Fixed costs", overhead_sentences(data)),
        ("Warm-up", warmup_sentences(data)),
        ("Where the time goes", split_sentences(data)),
        ("The paper's conclusions, checked here", paper_claim_sentences(data)),
    ]
    return [(h, s) for h, s in sections if s]


def headline(data: ReportData) -> list[str]:
    """Two or three sentences for the top of the report."""
    out: list[str] = []
    out += scaling_sentences(data.strong, "strong")[:1]
    out += baseline_speed_sentences(data.strong)[:1]
    out += best_single_sentences(data.strong)[:2]
    out += single_process_sentences(data)[:1]
    if out:
        out.append(noise_rule(data))
    return out


def as_dict(data: ReportData) -> dict[str, Any]:
    return {h: s for h, s in comparison(data)}
