"""The sharding section (report/sharding.py, report/memory_budget.py) on hand-made records: the formula table's
numbers against values computed by hand, the advice sentence's numbers against the records, the budget line,
and the size parser's errors. Round numbers (P = 1,000,000 parameters) so every expected value is written out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError
from parallel_vision.report import sharding
from parallel_vision.report.groups import group_runs
from parallel_vision.report.memory_budget import budget_lines, parse_size
from parallel_vision.report.sharding import MIB, comparisons, explain, formula

WIDE_P = 1_000_000  # wide_mlp in these records (the formula reads summary.n_parameters)
CNN_P = 100_000  # paper_cnn in these records


def _run(model: str, strategy: str, workers: int, *, params: int, grads: int, opt: int, acts: int,
         images: float, unsharded: int | None = None, total: int | None = None, n_parameters: int,
         comm: dict[str, float] | None = None, partition: list[int] | None = None, rss: float = 500.0,
         optimizer: str = "adam", momentum: float = 0.0) -> dict[str, Any]:
    """One store row as the report reads it (config, identity, summary, workload)."""
    cfg = dict(RunConfig(model=model, batch_size=128, epochs=2, optimizer=optimizer,  # type: ignore[arg-type]
                         momentum=momentum).to_dict(), strategy=strategy, workers=workers)
    identity = {k: v for k, v in cfg.items() if k not in ("out_dir", "data_dir", "extra")}
    total = params + grads + opt if total is None else total
    summary = {
        "images_per_s_excl_warmup": images, "mean_epoch_time_excl_warmup_s": 512 / images, "n_train": 512,
        "n_test_evaluated": 200, "peak_rss_mib_per_worker": [rss] * workers, "n_parameters": n_parameters,
        "activation_bytes_per_worker": acts,
        "state_bytes_per_worker": {"parameters": params, "gradients": grads, "optimizer": opt, "total": total,
                                   "per_rank": [], "unsharded_peak": unsharded, "how": "test records"},
        "comm_bytes_by_op": {"all_reduce": 0.0, "all_gather": 0.0, "reduce_scatter": 0.0, "broadcast": 0.0,
                             **(comm or {})},
    }
    if partition is not None:
        summary["zero1_partition"] = partition
    return {"run_id": f"{model}-{strategy}-{workers}", "name": f"{model}-{strategy}-w{workers}",
            "identity_hash": json.dumps(identity, sort_keys=True), "identity": identity, "config": cfg,
            "summary": summary, "workload": {"model": model, "dataset": "mnist", "input_shape": [1, 28, 28],
                                             "classes": 10, "parameters": n_parameters},
            "code_version": "abc", "created_at": "2026-01-01T00:00:00+00:00", "repeat": 1}


def _wide() -> list[dict[str, Any]]:
    p = WIDE_P
    kw = {"n_parameters": p}
    return [
        _run("wide_mlp", "single", 1, params=4 * p, grads=4 * p, opt=8 * p, acts=1_000_000, images=1000, **kw),
        _run("wide_mlp", "ddp", 2, params=4 * p, grads=4 * p, opt=8 * p, acts=500_000, images=1800, rss=520,
             comm={"all_reduce": 4 * p}, **kw),
        # rank 0 owns 3 of the 4 MB of parameters: its Adam state is 2 × 3 MB, not 8 B × P / 2 = 4 MB
        _run("wide_mlp", "zero1", 2, params=4 * p, grads=4 * p, opt=6 * p, acts=500_000, images=1700,
             partition=[3 * p, 1 * p], comm={"all_reduce": 4 * p, "broadcast": 4 * p}, **kw),
        _run("wide_mlp", "fsdp", 2, params=2 * p, grads=2 * p, opt=4 * p, unsharded=1_500_000, acts=500_000,
             images=900, rss=480, comm={"all_gather": 8 * p, "reduce_scatter": 4 * p}, **kw),
    ]


def _cnn() -> list[dict[str, Any]]:
    p = CNN_P
    kw = {"n_parameters": p, "acts": 20_000_000}
    return [
        _run("paper_cnn", "ddp", 2, params=4 * p, grads=4 * p, opt=8 * p, images=2000, rss=600, **kw),
        _run("paper_cnn", "fsdp", 2, params=2 * p, grads=2 * p, opt=4 * p, unsharded=200_000,
             total=1_000_000, images=1000, rss=590, **kw),  # this record's total holds the unsharded peak
    ]


@pytest.fixture(scope="module")
def groups() -> list[Any]:
    runs = _wide() + _cnn()
    return group_runs(runs, {r["run_id"]: [] for r in runs})[0]


def _row(groups: list[Any], model: str, strategy: str) -> sharding.ShardRow:
    comp = next(c for c in comparisons(groups) if c.model == model)
    row = comp.of(strategy)
    assert row is not None
    return row


def test_the_formulas_are_the_zero_papers_bytes_per_parameter() -> None:
    assert formula("ddp", 2, 1000, 8).total == 16_000  # 4 + 4 + 8
    assert formula("single", 1, 1000, 4).total == 12_000  # SGD with momentum: one buffer
    assert formula("zero1", 4, 1000, 8).total == 4_000 + 4_000 + 2_000  # 4 + 4 + 8/4
    assert formula("zero1", 2, 1000, 0).total == 8_000  # plain SGD: no optimizer state to shard
    fsdp = formula("fsdp", 2, 1000, 8, unsharded_unit=500)
    assert (fsdp.parameters, fsdp.gradients, fsdp.optimizer, fsdp.unsharded) == (2_000, 2_000, 4_000, 500)
    assert sharding.optimizer_bytes_per_parameter({"optimizer": "sgd", "momentum": 0.9}) == 4
    assert sharding.optimizer_bytes_per_parameter({"optimizer": "sgd", "momentum": 0.0}) == 0


def test_the_section_compares_ddp_zero1_and_fsdp_per_model_with_the_single_baseline(groups: list[Any]) -> None:
    comps = comparisons(groups)
    assert [(c.model, c.workers) for c in comps] == [("paper_cnn", 2), ("wide_mlp", 2)]
    wide = comps[1]
    assert [r.variant for r in wide.rows] == ["single ×1", "ddp ×2", "zero1 ×2", "fsdp ×2"]


def test_no_section_without_sharded_runs() -> None:
    runs = _wide()[:2]
    assert comparisons(group_runs(runs, {r["run_id"]: [] for r in runs})[0]) == []


def test_the_formula_table_against_hand_computed_values(groups: list[Any]) -> None:
    table = sharding.formula_table(comparisons(groups))
    by = {}
    model = ""
    for i, r in enumerate(table.rows):
        if i in table.sections:
            model = r[0].split(":")[0]
            continue
        by[(model, r[0])] = r
    # wide_mlp, P = 1e6, Adam (k = 8), N = 2
    ddp = by[("wide_mlp", "ddp ×2")]
    assert ddp[2] == "4 + 4 + 8"
    assert ddp[5] == ddp[6] == f"{16e6 / MIB:,.2f}" == "15.26"
    zero1 = by[("wide_mlp", "zero1 ×2")]
    assert zero1[2] == "4 + 4 + 8/2"
    assert zero1[3] == "3.81 + 3.81 + 3.81"  # 4e6 B each = 3.81 MiB
    assert (zero1[5], zero1[6]) == ("11.44", "13.35")  # 12e6 predicted, 14e6 measured
    assert zero1[7] == "14.00"  # B per parameter measured
    assert zero1[8] == "+1.91 MiB (17 %)"  # 2e6 B over 12e6
    fsdp = by[("wide_mlp", "fsdp ×2")]
    assert fsdp[2] == "(4 + 4 + 8)/2 + largest unit"
    assert fsdp[3] == fsdp[4] == "1.91 + 1.91 + 3.81 + 1.43"  # 2e6, 2e6, 4e6, 1.5e6 B
    assert fsdp[5] == fsdp[6] == "9.06"  # 9.5e6 B
    # a record whose total already holds the unsharded peak: the peak is not counted twice
    cnn = by[("paper_cnn", "fsdp ×2")]
    assert cnn[6] == f"{1_000_000 / MIB:.2f}" and cnn[4].endswith(f"+ {200_000 / MIB:.2f}")


def test_the_difference_is_explained_from_the_zero1_partition(groups: list[Any]) -> None:
    zero1 = _row(groups, "wide_mlp", "zero1")
    text = explain(zero1)
    assert text.startswith("+1.91 MiB (17 % of the prediction)")
    assert "rank 0 owns the optimizer state of 2.86 of 3.81 MiB of parameters (75 %" in text
    assert "8/4 × 2.86 = 5.72 MiB, not 8·P/2 = 3.81 MiB" in text
    assert "not explained" not in text  # the partition accounts for all of it
    assert explain(_row(groups, "wide_mlp", "ddp")) == "as predicted."
    assert explain(_row(groups, "wide_mlp", "fsdp")).startswith("as predicted: largest unit: 1.43 MiB")


def test_an_unexplained_difference_says_so() -> None:
    p = WIDE_P
    runs = [_run("wide_mlp", "zero1", 2, params=5 * p, grads=4 * p, opt=4 * p, acts=0, images=1, n_parameters=p)]
    (row,) = comparisons(group_runs(runs, {r["run_id"]: [] for r in runs})[0])[0].rows
    assert "not explained by the formula's terms: parameters +0.95 MiB" in explain(row)


def test_the_advice_sentences_numbers_come_from_the_records(groups: list[Any]) -> None:
    cnn, wide = (sharding.advice(c) for c in comparisons(groups))
    # fsdp 9.5e6 B vs ddp 16e6 B; 900 / 1800 images/s = 50 %; zero1 14e6 B at 1700 / 1800 = 94 %
    assert wide == ("At 2 workers, fsdp cuts wide_mlp's state per worker from 15.26 to 9.06 MiB at 50 % of ddp's "
                    "throughput; zero1 to 13.35 MiB at 94 % of ddp's throughput (activations: 0.48 MiB per worker).")
    # paper_cnn: 20e6 B of activations against 1.6e6 B of state; fsdp holds 1e6 B, so it saves 0.6e6 of 21.6e6
    assert cnn == ("At 2 workers, for paper_cnn, activations dominate (19.07 MiB against 1.53 MiB of state per "
                   "worker under ddp), so fsdp saves 0.57 MiB of the 20.60 MiB a step holds at 50 % of ddp's "
                   "throughput; peak RSS 600 → 590 MiB.")


def test_the_budget_line_per_strategy_on_the_largest_model(groups: list[Any]) -> None:
    lines = budget_lines(sharding.state_rows(groups), parse_size("16GiB"))
    assert [line.split(":")[0] for line in lines] == ["single ×1", "ddp ×2", "zero1 ×2", "fsdp ×2"]
    budget = 16 * 2 ** 30
    # ddp on wide_mlp (the largest model): 16 B per parameter, 0.5 MB of activations
    assert f"{(budget - 500_000) / 16 / 1e9:.3g}" == "1.07"
    assert lines[1].startswith("ddp ×2: about 1.07 billion parameters fit in 16 GiB per worker, at 16.00 B of "
                               "state per parameter measured on wide_mlp at N = 2")
    assert "plus 0.48 MiB of activations (wide_mlp's, 64 images per worker)" in lines[1]
    assert "assuming the bytes per parameter stay as measured at N = 2" in lines[1]
    assert "peak RSS was 520 MiB here" in lines[1]
    assert lines[2].startswith("zero1 ×2: about 1.23 billion")  # (budget − 0.5e6) / 14
    assert lines[3].startswith("fsdp ×2: about 1.81 billion")  # (budget − 0.5e6) / 9.5
    assert "largest unit taken to grow with the model" in lines[3]
    tiny = budget_lines(sharding.state_rows(groups), parse_size("100kB"))
    assert tiny[0].startswith("single ×1: nothing fits in 97.66 KiB per worker: 0.95 MiB of activations")


@pytest.mark.parametrize("text,expected", [("16GiB", 16 * 2 ** 30), ("512MiB", 512 * 2 ** 20), ("8GB", 8 * 10 ** 9),
                                           ("1.5 GiB", 3 * 2 ** 29), ("64kb", 64_000)])
def test_sizes_are_read_in_binary_and_decimal_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,message", [
    ("16", "a number and a unit"), ("GiB", "a number and a unit"), ("16 parsecs", "unknown unit 'parsecs'"),
    ("-1GiB", "a number and a unit"), ("0GiB", "at least 1 byte"), ("", "a number and a unit"),
])
def test_a_bad_size_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_size(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("size,phrase", [("16parsecs", "unknown unit 'parsecs'"), ("lots", "cannot read 'lots'")])
def test_the_report_command_refuses_a_bad_size_in_one_line_with_exit_2(
        size: str, phrase: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from parallel_vision.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path), "--memory-per-worker", size])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("pvision: error: --memory-per-worker")
    assert phrase in lines[0]


def test_the_section_renders_in_html_and_markdown_with_the_budget_lines(groups: list[Any]) -> None:
    from types import SimpleNamespace

    from parallel_vision.report import html, markdown
    from parallel_vision.report.sections import _sharding

    (section,) = _sharding(SimpleNamespace(groups=groups, memory_per_worker=parse_size("16GiB")))  # type: ignore[arg-type]
    assert section.title == "Sharding: memory per worker vs speed"
    md = "".join(markdown.render_block(b, {}) for b in section.blocks)
    page = "".join(html.render_block(b, {}) for b in section.blocks)
    for text in (md, page):
        assert "fsdp ×2" in text and "13.35" in text
        assert "fit in 16 GiB per worker" in text
    assert "At 2 workers, fsdp cuts wide_mlp&#x27;s state per worker from 15.26 to 9.06 MiB" in page
    assert "ZeRO-1's sorted-greedy partition is uneven: rank 0" in md
    (plain,) = _sharding(SimpleNamespace(groups=groups, memory_per_worker=None))  # type: ignore[arg-type]
    assert "--memory-per-worker 16GiB" in "".join(markdown.render_block(b, {}) for b in plain.blocks)
