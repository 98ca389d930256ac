"""The strategy table is the single source: every column is valid, the docs tables are the generated ones,
and a strategy added in a fixture shows up in config validation, the CLI and the bench matrix."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from parallel_vision import strategies
from parallel_vision.bench.matrix import check_spec, expand, multi_strategies
from parallel_vision.bench.presets import BenchSpec
from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError
from parallel_vision.models.catalog import MODEL_NAMES

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: A configuration change that pulls each lever (RunConfig fields).
PULLS: dict[str, dict[str, Any]] = {
    "lr_scaling": {"lr_scaling": "linear", "base_batch": 256},
    "warmup": {"warmup_epochs": 1},
    "grad_accum": {"grad_accum": 2},
    "grad_compression": {"grad_compression": "fp16"},
    "sync_batchnorm": {"sync_batchnorm": True},
    "precision": {"precision": "bf16"},
    "target": {"target_accuracy": 0.9},
}


def base_config(spec: strategies.StrategySpec, **changes: Any) -> RunConfig:
    return RunConfig(framework=spec.framework, strategy=spec.name, workers=1 if not spec.multi else 2,
                     epochs=2, batch_size=512, model=spec.models[0], **changes)


def test_every_column_is_valid() -> None:
    keys = [s.key for s in strategies.STRATEGY_TABLE]
    assert len(keys) == len(set(keys))
    assert strategies.ALL_MODELS == MODEL_NAMES
    for s in strategies.STRATEGY_TABLE:
        assert s.framework in strategies.FRAMEWORK_TITLES and s.title and s.api, s
        assert set(s.models) <= set(MODEL_NAMES) and s.models, s
        assert s.levers <= set(strategies.LEVERS), s
        assert set(s.collectives) <= set(strategies.COLLECTIVES), s
        assert (s.spawner is None) == (s.processes == "one"), s
        assert s.multi == bool(s.collectives), f"{s.key}: a multi-worker strategy communicates, a single one not"
        assert set(s.refusals) <= set(strategies.LEVERS) - s.levers, f"{s.key} refuses a lever it honours"
    for fw in strategies.frameworks():
        assert len(strategies.bench_defaults(fw)) == 1, fw
        assert [s.name for s in strategies.STRATEGY_TABLE if s.framework == fw and not s.multi] == ["single"]
    assert set(PULLS) == set(strategies.LEVERS)
    titles = {(s.name, s.title) for s in strategies.STRATEGY_TABLE}
    assert len(titles) == len(strategies.all_names()), "one strategy name, one title, in every framework"


@pytest.mark.parametrize("spec", strategies.STRATEGY_TABLE, ids=lambda s: f"{s.framework}-{s.name}")
def test_config_honours_exactly_the_levers_the_table_names(spec: strategies.StrategySpec) -> None:
    for lever, changes in PULLS.items():
        if lever in spec.levers:
            base_config(spec, **changes)
        else:
            with pytest.raises(ConfigError):
                base_config(spec, **changes)
    if spec.needs_cuda:
        with pytest.raises(ConfigError, match="needs >= 2 CUDA devices"):
            base_config(spec, device="cpu")
    if not spec.multi:
        with pytest.raises(ConfigError, match="runs exactly one worker"):
            RunConfig(framework=spec.framework, strategy=spec.name, workers=2)


def _generated(page: str) -> str:
    text = (DOCS / page).read_text()
    return re.search(r"<!-- generated from the strategy table.*?-->\n(.*?)\n<!-- end of generated table -->",
                     text, re.S).group(1)  # type: ignore[union-attr]


def test_the_docs_tables_are_the_generated_ones() -> None:
    assert _generated("architecture.md") == strategies.markdown_table()
    assert _generated("levers.md") == strategies.levers_markdown_table()


@pytest.fixture
def fake_strategy(monkeypatch: pytest.MonkeyPatch) -> strategies.StrategySpec:
    """A new torch strategy, declared only in the table."""
    fake = strategies.StrategySpec(
        framework="torch", name="fake", title="Fake", api="fake.Parallel", processes="per-worker",
        spawner="engine", max_workers=None, models=("wide_mlp",), levers=strategies.COMMON_LEVERS,
        collectives=("all_gather", "reduce_scatter"), bench_default=False,
        refusals={"grad_accum": "the fake strategy accumulates nothing"})
    monkeypatch.setattr(strategies, "STRATEGY_TABLE", [*strategies.STRATEGY_TABLE, fake])
    return fake


def test_a_strategy_added_to_the_table_reaches_config_validation(fake_strategy: strategies.StrategySpec) -> None:
    cfg = RunConfig(strategy="fake", workers=2, model="wide_mlp")
    assert cfg.strategy_spec is fake_strategy and cfg.is_distributed
    with pytest.raises(ConfigError, match="the fake strategy accumulates nothing"):
        RunConfig(strategy="fake", workers=2, model="wide_mlp", grad_accum=2)
    with pytest.raises(ConfigError, match="does not support model paper_cnn"):
        RunConfig(strategy="fake", workers=2)
    from parallel_vision.engines import registry

    assert "fake" in registry.get("torch").strategies


def test_a_strategy_added_to_the_table_reaches_the_cli(fake_strategy: strategies.StrategySpec) -> None:
    from parallel_vision.cli import train_cmd

    app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
    importlib.reload(train_cmd).register(app)  # help strings are built when the module loads
    app.command("unused")(lambda: None)
    try:
        runner = CliRunner()
        shown = " ".join(runner.invoke(app, ["train", "--help"]).output.split())
        assert f"torch: {'|'.join(strategies.strategies_of('torch'))};" in shown
        refused = runner.invoke(app, ["train", "-s", "fake", "-n", "2", "-m", "wide_mlp", "--grad-accum", "2"])
        assert isinstance(refused.exception, ConfigError)
        assert "the fake strategy accumulates nothing" in str(refused.exception)
    finally:
        importlib.reload(train_cmd)


def test_a_strategy_added_to_the_table_reaches_the_bench_matrix(fake_strategy: strategies.StrategySpec) -> None:
    assert multi_strategies("torch", ("fake", "mirrored")) == ("fake",)
    spec = BenchSpec(frameworks=("torch",), strategies=("fake",), models=("wide_mlp",), limit_train=1024)
    check_spec(spec)
    plan = expand(spec, cores=2)
    assert [(p.cfg.strategy, p.cfg.workers) for p in plan if p.cfg] == [("single", 1), ("fake", 2)]
    assert [p.cfg.threads_per_worker for p in plan if p.cfg] == [1, 1]  # one process per worker: not shared


def test_fields_are_documented_in_sections() -> None:
    from parallel_vision.config import SECTIONS

    seen = []
    for f in dataclasses.fields(RunConfig):
        assert f.metadata.get("doc"), f"{f.name} has no documentation"
        assert f.metadata["section"] in SECTIONS, f.name
        assert f.metadata["identity"] in ("always", "unless-default", "never"), f.name
        seen.append(SECTIONS.index(f.metadata["section"]))
    assert seen == sorted(seen), "fields are declared section by section"
