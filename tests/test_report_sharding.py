"""The sharding section (report/sharding.py, report/memory_budget.py) on hand-made records: the formula table's
numbers against values computed by hand, the advice sentence's numbers against the records, the budget line,
and the size parser's errors. The records copy what real 2-worker runs measured on this machine (wide_mlp:
P = 20,054,026, its 4096 × 4096 layer fc2 16,781,312 parameters; paper_cnn: P = 905,354, its largest layer dense1
802,944), so every expected value below is the formula worked by hand on those numbers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError
from parallel_vision.report import sharding, sharding_tables, state_formulas
from parallel_vision.report.groups import group_runs
from parallel_vision.report.memory_budget import budget_lines, parse_size
from parallel_vision.report.sharding import comparisons, explain
from parallel_vision.report.state_formulas import formula
from shared_runs import WIDE_SGD, WIDE_SGD_RUNS  # tests/ on sys.path

WIDE_P = 20_054_026
FC2 = 4096 * 4096 + 4096  # wide_mlp's largest FSDP unit
WIDE_ROOT = 2 * (2 * 4096)  # its root: bn1 and bn2's gamma and beta
CNN_P = 905_354
DENSE1 = 128 * 6272 + 128  # paper_cnn's largest FSDP unit
CNN_ROOT = 2 * (32 + 64 + 128 + 128 + 64)  # its root: five BatchNorm layers


def _run(model: str, strategy: str, workers: int, *, params: int, grads: int, opt: int, acts: int,
         images: float, unsharded: int | None = None, n_parameters: int,
         comm: dict[str, float] | None = None, partition: list[int] | None = None, rss: float = 500.0,
         optimizer: str = "adam", momentum: float = 0.0) -> dict[str, Any]:
    """One store row as the report reads it (config, identity, summary, workload)."""
    cfg = dict(RunConfig(model=model, batch_size=128, epochs=2, optimizer=optimizer,  # type: ignore[arg-type]
                         momentum=momentum).to_dict(), strategy=strategy, workers=workers)
    identity = {k: v for k, v in cfg.items() if k not in ("out_dir", "data_dir", "extra")}
    summary = {
        "images_per_s_excl_warmup": images, "mean_epoch_time_excl_warmup_s": 512 / images, "n_train": 512,
        "n_test_evaluated": 200, "peak_rss_mib_per_worker": [rss] * workers, "n_parameters": n_parameters,
        "activation_bytes_per_worker": acts,
        "state_bytes_per_worker": {"parameters": params, "gradients": grads, "optimizer": opt,
                                   "total": params + grads + opt,
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
    steps = 4 * 10  # Adam's step count: 4 B for each of the 10 parameter tensors (each rank's shard of each, fsdp)
    return [
        _run("wide_mlp", "single", 1, params=4 * p, grads=4 * p, opt=8 * p + steps, acts=17_315_844, images=86,
             rss=1192, **kw),
        _run("wide_mlp", "ddp", 2, params=4 * p, grads=4 * p, opt=8 * p + steps, acts=8_723_460, images=235,
             rss=1258, comm={"all_reduce": 4 * p}, **kw),
        # ZeroRedundancyOptimizer gives fc2's 64 MiB weight to rank 0 alone: its Adam state is 2 × that + one step
        _run("wide_mlp", "zero1", 2, params=4 * p, grads=4 * p, opt=2 * 4096 * 4096 * 4 + 4, acts=8_723_460,
             images=165, rss=1275, partition=[4096 * 4096 * 4, 4 * p - 4096 * 4096 * 4],
             comm={"all_reduce": 4 * p, "broadcast": 4 * p}, **kw),
        _run("wide_mlp", "fsdp", 2, params=2 * p, grads=2 * p, opt=4 * p + steps, unsharded=4 * (FC2 + WIDE_ROOT),
             acts=8_723_460, images=97, rss=1332, comm={"all_gather": 8 * p, "reduce_scatter": 4 * p}, **kw),
    ]


def _cnn() -> list[dict[str, Any]]:
    p = CNN_P
    kw = {"n_parameters": p, "acts": 42_956_292}
    steps = 4 * 22
    return [
        _run("paper_cnn", "ddp", 2, params=4 * p, grads=4 * p, opt=8 * p + steps, images=147, rss=556, **kw),
        _run("paper_cnn", "fsdp", 2, params=2 * p, grads=2 * p, opt=4 * p + steps, unsharded=4 * (DENSE1 + CNN_ROOT),
             images=102, rss=563, **kw),
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
    assert state_formulas.optimizer_bytes_per_parameter({"optimizer": "sgd", "momentum": 0.9}) == 4
    assert state_formulas.optimizer_bytes_per_parameter({"optimizer": "sgd", "momentum": 0.0}) == 0


def test_the_section_compares_ddp_zero1_and_fsdp_per_model_with_the_single_baseline(groups: list[Any]) -> None:
    comps = comparisons(groups)
    assert [(c.model, c.workers) for c in comps] == [("paper_cnn", 2), ("wide_mlp", 2)]
    wide = comps[1]
    assert [r.variant for r in wide.rows] == ["single ×1", "ddp ×2", "zero1 ×2", "fsdp ×2"]


def test_no_section_without_sharded_runs() -> None:
    runs = _wide()[:2]
    assert comparisons(group_runs(runs, {r["run_id"]: [] for r in runs})[0]) == []


def _formula_rows(groups: list[Any]) -> dict[tuple[str, str], list[str]]:
    table = sharding_tables.formula_table(comparisons(groups))
    by, model = {}, ""
    for i, r in enumerate(table.rows):
        if i in table.sections:
            model = r[0].split(":")[0]
        else:
            by[(model, r[0])] = r
    return by


def test_the_formula_table_against_hand_computed_values(groups: list[Any]) -> None:
    by = _formula_rows(groups)
    # wide_mlp, Adam (k = 8), N = 2. ddp: 16 B × 20,054,026 = 320,864,416 B = 306.00 MiB (+40 B of step counts)
    ddp = by[("wide_mlp", "ddp ×2")]
    assert ddp[1:3] == ["Adam", "4 + 4 + 8"]
    assert ddp[3] == ddp[4] == "76.50 + 76.50 + 153.00"
    assert (ddp[5], ddp[6], ddp[7], ddp[8]) == ("306.00", "306.00", "16.00", "+0.00 MiB (0 %)")
    # zero1: (4 + 4 + 8/2) × P = 229.50 MiB predicted; measured 4P + 4P + 2 × fc2's 64 MiB weight + 4 B = 281.00
    zero1 = by[("wide_mlp", "zero1 ×2")]
    assert zero1[2] == "4 + 4 + 8/2"
    assert (zero1[3], zero1[4]) == ("76.50 + 76.50 + 76.50", "76.50 + 76.50 + 128.00")
    assert (zero1[5], zero1[6]) == ("229.50", "281.00")
    assert zero1[7] == "14.69"  # 294,649,940 B ÷ P
    assert zero1[8] == "+51.50 MiB (22 %)"  # 54,001,628 B over 240,648,312
    # fsdp: (4 + 4 + 8)/2 × P + fc2 (16,781,312 parameters × 4 B = 64.02 MiB) = 217.02 MiB; measured adds the root
    fsdp = by[("wide_mlp", "fsdp ×2")]
    assert fsdp[2] == "(4 + 4 + 8)/2 + largest unit"
    assert fsdp[3] == "38.25 + 38.25 + 76.50 + 64.02"
    assert fsdp[4] == "38.25 + 38.25 + 76.50 + 64.08"  # fc2 + bn1, bn2 (16,384 parameters = 64 KiB)
    assert (fsdp[5], fsdp[6], fsdp[7]) == ("217.02", "217.08", "11.35")


@pytest.mark.parametrize("momentum,k,words", [(0.9, 4, "SGD with momentum"), (0.0, 0, "plain SGD")])
def test_the_optimizer_state_of_the_formula_is_read_from_the_config(momentum: float, k: int, words: str) -> None:
    p = WIDE_P
    runs = [_run("wide_mlp", s, 2, params=4 * p, grads=4 * p, opt=k * p // (2 if s == "zero1" else 1), acts=0,
                 images=1, n_parameters=p, optimizer="sgd", momentum=momentum) for s in ("ddp", "zero1")]
    (comp,) = comparisons(group_runs(runs, {r["run_id"]: [] for r in runs})[0])
    ddp, zero1 = comp.rows
    assert (ddp.predicted.total, zero1.predicted.total) == ((8 + k) * p, 8 * p + k * p / 2)
    table = sharding_tables.formula_table([comp])
    assert table.rows[2][1:3] == [words, f"4 + 4 + {k}/2"]


def test_the_no_reshard_variant_predicts_the_whole_model_unsharded() -> None:
    p = WIDE_P
    run = _run("wide_mlp", "fsdp", 2, params=2 * p, grads=2 * p, opt=4 * p, unsharded=4 * p, acts=0, images=1,
               n_parameters=p)
    run["config"]["reshard_after_forward"] = False
    (row,) = comparisons(group_runs([run], {run["run_id"]: []})[0])[0].rows
    assert row.variant == "fsdp (no reshard) ×2" and row.predicted.unsharded == 4 * p
    assert explain(row).startswith("as predicted: unsharded: the whole model")


def test_each_difference_is_explained_from_the_records(groups: list[Any]) -> None:
    zero1 = explain(_row(groups, "wide_mlp", "zero1"))
    assert zero1.startswith("+51.50 MiB (22 % of the prediction)")
    assert "rank 0 owns the optimizer state of 64.00 of 76.50 MiB of parameters (84 %, not 1/2)" in zero1
    assert "8/4 × 64.00 = 128.00 MiB, not 8·P/2 = 76.50 MiB" in zero1
    assert "step count per parameter tensor (10 tensors), which the formula does not count: 4 B" in zero1
    assert "not explained" not in zero1  # the partition and the step count account for all of it
    assert explain(_row(groups, "wide_mlp", "ddp")) == (
        "as predicted: Adam keeps a 4-byte step count per parameter tensor (10 tensors), which the formula does not "
        "count: 40 B.")
    fsdp = explain(_row(groups, "wide_mlp", "fsdp"))
    assert fsdp.startswith("as predicted: largest unit: fc2, 64.02 MiB; beside it the root's parameters (bn1, bn2: "
                           "64.00 KiB) stay gathered beside it")
    cnn = explain(_row(groups, "paper_cnn", "fsdp"))
    assert "largest unit: dense1, 3.06 MiB; beside it the root's parameters (bn1, bn2, bn3, bn4 and 1 more: 3.25 KiB)" \
        in cnn


def test_an_unexplained_difference_says_so() -> None:
    p = WIDE_P
    runs = [_run("wide_mlp", "zero1", 2, params=5 * p, grads=4 * p, opt=4 * p, acts=0, images=1, n_parameters=p)]
    (row,) = comparisons(group_runs(runs, {r["run_id"]: [] for r in runs})[0])[0].rows
    assert "not explained by the formula's terms: parameters +19.13 MiB" in explain(row)  # 5 B per parameter, not 4


def test_the_advice_sentences_numbers_come_from_the_records(groups: list[Any]) -> None:
    cnn, wide = (sharding.advice(c) for c in comparisons(groups))
    # fsdp holds 217.08 MiB at its peak against ddp's 306.00; 97 / 235 images/s = 41 %; zero1 281.00 at 165 / 235
    assert wide == ("At 2 workers, fsdp cuts wide_mlp's state per worker from 306.00 to 217.08 MiB at 41 % of ddp's "
                    "throughput; zero1 to 281.00 MiB at 70 % of ddp's throughput (activations: 8.32 MiB per worker).")
    # paper_cnn: 42,956,292 B of activations against 14,485,752 B of state; fsdp holds 10,458,024 B at its peak,
    # so it saves 4,027,728 B (3.84 MiB) of 57,442,044 (54.78 MiB); 102 / 147 images/s = 69 %
    assert cnn == ("At 2 workers, for paper_cnn, activations dominate (40.97 MiB against 13.81 MiB of state per "
                   "worker under ddp), so fsdp saves 3.84 MiB of the 54.78 MiB a step holds at 69 % of ddp's "
                   "throughput; peak RSS 556 MiB under ddp, 563 under fsdp.")


def test_the_advice_says_when_the_machine_was_busy() -> None:
    runs = _cnn()
    runs[0]["other_cores"] = 1.3  # another process used 1.3 cores while ddp trained
    (comp,) = comparisons(group_runs(runs, {r["run_id"]: [] for r in runs})[0])
    assert sharding.advice(comp).endswith("Timing caveat: other processes used ≥ 0.25 cores while ddp ×2 trained, so "
                                          "the throughput ratios may be the machine's; the bytes are not affected.")


def test_the_budget_line_per_strategy_on_the_largest_model(groups: list[Any]) -> None:
    lines = budget_lines(sharding.state_rows(groups), parse_size("16GiB"))
    assert [line.split(":")[0] for line in lines] == ["single ×1", "ddp ×2", "zero1 ×2", "fsdp ×2"]
    # ddp on wide_mlp (the largest model): 320,864,456 B ÷ P = 16.00 B per parameter, 8,723,460 B of activations:
    # (16 GiB − 8,723,460 B) ÷ 16.000002 = 1.073e9
    assert lines[1].startswith("ddp ×2: about 1.07 billion parameters fit in 16 GiB per worker, at 16.00 B of "
                               "state per parameter measured on wide_mlp at N = 2")
    assert "plus 8.32 MiB of activations (wide_mlp's, 64 images per worker)" in lines[1]
    assert "assuming the bytes per parameter stay as measured at N = 2" in lines[1]
    assert "peak RSS was 1,258 MiB here" in lines[1]
    assert lines[2].startswith("zero1 ×2: about 1.17 billion")  # ÷ 14.69 B per parameter
    assert lines[3].startswith("fsdp ×2: about 1.51 billion")  # ÷ 11.35
    assert "largest unit taken to grow with the model" in lines[3]
    tiny = budget_lines(sharding.state_rows(groups), parse_size("10MB"))
    assert tiny[0].startswith("single ×1: nothing fits in 9.537 MiB per worker: 16.51 MiB of activations")


def test_the_catalogues_fsdp_units_are_the_engines() -> None:
    """The report counts FSDP's units from the catalogue (no torch); the engine wraps models.torch_zoo.shard_units:
    the two must name the same groups of parameters."""
    from parallel_vision.models.catalog import model_costs
    from parallel_vision.models.torch_zoo import build_torch_model, shard_units

    for model in ("paper_cnn", "resnet18", "wide_mlp"):
        units, root = state_formulas.fsdp_units({"model": model, "input_shape": [1, 28, 28], "classes": 10})
        torch_model = build_torch_model(model, channels=1, image_size=28, classes=10)
        engine = sorted(sum(p.numel() for p in u.parameters()) for u in shard_units(torch_model))
        assert sorted(units.values()) == engine, model
        assert sum(units.values()) + sum(root.values()) == model_costs(model).parameters


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
    assert section.title == "Beyond data parallelism: memory per worker vs speed"
    md = "".join(markdown.render_block(b, {}) for b in section.blocks)
    page = "".join(html.render_block(b, {}) for b in section.blocks)
    for text in (md, page):
        assert "fsdp ×2" in text and "281.00" in text
        assert "fit in 16 GiB per worker" in text
    assert "At 2 workers, fsdp cuts wide_mlp&#x27;s state per worker from 306.00 to 217.08 MiB" in page
    assert "ZeRO-1's sorted-greedy partition is uneven: rank 0" in md
    (plain,) = _sharding(SimpleNamespace(groups=groups, memory_per_worker=None))  # type: ignore[arg-type]
    assert "--memory-per-worker 16GiB" in "".join(markdown.render_block(b, {}) for b in plain.blocks)


@pytest.mark.slow
def test_the_report_of_real_ddp_zero1_and_fsdp_runs(trained: Any, tmp_path: Any) -> None:
    """Real 2-worker runs of wide_mlp with SGD and momentum (the ones tests/test_sharding.py checks, trained once per
    session, all at once) in one ROOT: the section is there, its numbers are the records' and the formulas' with k = 4
    read from the config, `--memory-per-worker` adds its lines, and the advice sentence quotes the records."""
    import shutil

    from parallel_vision.report import write_report

    root = tmp_path / "root"
    summaries = {}
    trained.together(*WIDE_SGD_RUNS)  # every WIDE_SGD run of the session at once (tests/shared_runs.py)
    for strategy in ("ddp", "zero1", "fsdp"):
        result = trained(strategy=strategy, **WIDE_SGD)
        shutil.copytree(result.out_dir, root / "runs" / strategy)
        summaries[strategy] = result.data["summary"]
    write_report(root, formats=("md",), memory_per_worker=parse_size("8GiB"))
    md = (root / "report.md").read_text()
    assert "## Beyond data parallelism: memory per worker vs speed" in md
    doc = json.loads((root / "report.json").read_text())
    (comp,) = doc["sharding"]
    rows = {r["strategy"]: r for r in comp["rows"]}
    p = summaries["ddp"]["n_parameters"]
    for strategy, s in summaries.items():
        state = s["state_bytes_per_worker"]
        measured = rows[strategy]["measured"]
        assert measured["total"] == state["total"] + (state["unsharded_peak"] or 0)
        assert rows[strategy]["predicted"]["total"] == pytest.approx(
            {"ddp": 12 * p, "zero1": 10 * p, "fsdp": 6 * p + 4 * FC2}[strategy])  # 4 + 4 + 4 (momentum)
        assert rows[strategy]["formula"] == {"ddp": "4 + 4 + 4", "zero1": "4 + 4 + 4/2",
                                             "fsdp": "(4 + 4 + 4)/2 + largest unit"}[strategy]
    # every measured difference is explained by the formula's own terms
    assert not [r["explanation"] for r in comp["rows"] if "not explained" in r["explanation"]]
    assert "ZeRO-1's sorted-greedy partition is uneven" in rows["zero1"]["explanation"]
    ddp_mib = (summaries["ddp"]["state_bytes_per_worker"]["total"]) / 2 ** 20
    fsdp_state = summaries["fsdp"]["state_bytes_per_worker"]
    fsdp_mib = (fsdp_state["total"] + fsdp_state["unsharded_peak"]) / 2 ** 20
    speed = 100 * summaries["fsdp"]["images_per_s_excl_warmup"] / summaries["ddp"]["images_per_s_excl_warmup"]
    assert comp["advice"].startswith(f"At 2 workers, fsdp cuts wide_mlp's state per worker from {ddp_mib:.2f} to "
                                     f"{fsdp_mib:.2f} MiB at {speed:.0f} % of ddp's throughput")
    lines = doc["memory_per_worker"]["lines"]
    assert [line.split(":")[0] for line in lines] == ["ddp ×2", "zero1 ×2", "fsdp ×2"]
    assert all("fit in 8 GiB per worker" in line for line in lines) and lines[0] in md


def test_pipeline_and_tensor_join_the_comparison_with_the_bubble_and_the_fastest_named() -> None:
    """The strategies that split the model sit beside ddp, zero1 and fsdp: no ZeRO formula for them (their note says
    what a worker holds), the pipeline's bubble measured beside its formula, and one sentence on which strategy is
    fastest here and why the others lose (bytes on the wire, the bubble)."""
    p = WIDE_P
    split = 4096 * 784 + 4096 + 2 * 4096 + 4096 * 4096  # fc1, bn1 and fc2's weights, halved under tensor
    tensor = _run("wide_mlp", "tensor", 2, params=4 * (p - split // 2), grads=4 * (p - split // 2),
                  opt=8 * (p - split // 2), acts=8_000_000, images=300, n_parameters=p,
                  comm={"all_reduce": 128 * 4096 * 4})
    pipe = _run("wide_mlp", "pipeline", 2, params=4 * FC2, grads=4 * FC2, opt=8 * FC2, acts=9_000_000, images=120,
                n_parameters=p, comm={"send_recv": 4 * 2 ** 20})
    pipe["summary"].update(bubble_fraction=0.45, pipeline={"bubble_formula": 0.2, "split": {"cuts": [1]}})
    runs = _wide() + [tensor, pipe]
    (comp,) = comparisons(group_runs(runs, {r["run_id"]: [] for r in runs})[0])
    assert [r.strategy for r in comp.rows] == ["single", "ddp", "zero1", "fsdp", "pipeline", "tensor"]
    t, pl = comp.of("tensor"), comp.of("pipeline")
    assert t is not None and pl is not None and t.predicted is None and pl.predicted is None
    assert explain(t).startswith("no ZeRO formula: the hidden layers' weights are split across the workers")
    assert "cut after block 1 by measured block time" in explain(pl)
    assert [row[0] for row in sharding_tables.formula_table([comp]).rows][1:] == ["single ×1", "ddp ×2", "zero1 ×2",
                                                                                 "fsdp ×2"]
    side = sharding_tables.side_by_side_table([comp])
    bubble = {row[0]: row[-1] for row in side.rows[1:]}
    assert bubble["pipeline ×2"] == "45 % / 20 %" and bubble["tensor ×2"] == "—"
    sentence = sharding.advice(comp)
    assert "At 2 workers on this machine, tensor ×2 is fastest for wide_mlp: 300 images/s (3.49× single)" in sentence
    assert "pipeline ×2 120 (4.00 MiB on the wire per step, its stages idle 45 % of a step in the bubble " \
           "(formula 20 %))" in sentence
