"""Bench presets and matrix expansion (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel_vision.bench.matrix import expand, multi_strategies
from parallel_vision.bench.presets import BenchSpec, get_preset, resolve_workers
from parallel_vision.errors import ConfigError


def _names(plan):  # type: ignore[no-untyped-def]
    return [p.run_name for p in plan]


def test_quick_preset_on_two_cores() -> None:
    plan = expand(get_preset("quick"), cores=2)
    assert _names(plan) == [
        "torch-single-w1-b512-t1-r1", "torch-ddp-w2-b512-t1-r1", "torch-single-w1-b512-t2-r1",
        "tf-single-w1-b512-t1-r1", "tf-mirrored-w2-b512-t1-r1", "tf-single-w1-b512-t2-r1",
        "jax-single-w1-b512-t1-r1", "jax-dp-w2-b512-t1-r1",  # JAX: no all-cores reference (reference_frameworks)
    ]
    by = {p.run_name: p for p in plan}
    jax_dp = by["jax-dp-w2-b512-t1-r1"].cfg
    assert jax_dp is not None and jax_dp.device == "auto" and jax_dp.threads_per_worker == 2
    ddp = by["torch-ddp-w2-b512-t1-r1"].cfg
    assert ddp is not None and ddp.strategy == "ddp" and ddp.threads_per_worker == 1
    # Mirrored replicas share one process: its pool gets 1 thread per replica × 2 replicas.
    mirrored = by["tf-mirrored-w2-b512-t1-r1"].cfg
    assert mirrored is not None and mirrored.threads_per_worker == 2
    ref = by["torch-single-w1-b512-t2-r1"]
    assert ref.role == "reference" and ref.cfg is not None and ref.cfg.threads_per_worker == 2
    for p in plan:
        assert p.cfg is not None
        assert (p.cfg.epochs, p.cfg.batch_size, p.cfg.limit_train, p.cfg.limit_test) == (2, 512, 6144, 2000)
        assert p.cfg.extra["preset"] == "quick" and p.cfg.extra["repeat"] == 1


def test_paper_preset_five_configurations_and_as_published_optimisers() -> None:
    plan = expand(get_preset("paper"), cores=2)
    assert {(p.cfg.framework, p.cfg.strategy, p.cfg.workers) for p in plan if p.cfg} == {
        ("torch", "single", 1), ("torch", "ddp", 2), ("torch", "dp", 2),
        ("tensorflow", "single", 1), ("tensorflow", "mirrored", 2),
    }
    for p in plan:
        assert p.cfg is not None
        assert (p.cfg.epochs, p.cfg.batch_size, p.cfg.limit_train) == (30, 2048, None)
        assert p.cfg.optimizer == "adam"
    published = expand(get_preset("paper").replace(as_published=True), cores=2)
    opts = {(p.cfg.framework, p.cfg.strategy): (p.cfg.optimizer, p.cfg.lr, p.cfg.momentum)
            for p in published if p.cfg}
    assert opts[("torch", "single")] == ("sgd", 0.01, 0.9)
    assert opts[("torch", "dp")] == ("sgd", 0.01, 0.9)
    assert opts[("torch", "ddp")][0] == "adam"
    assert opts[("tensorflow", "single")][0] == "adam"
    assert all(p.cfg.extra["protocol"] == "as-published" for p in published if p.cfg)


def test_weak_and_strong_share_the_one_worker_run_and_repeats_interleave() -> None:
    spec = BenchSpec(frameworks=("torch",), workers=(1, 2), scaling="both", batch_size=256, limit_train=2048,
                     repeats=2)
    plan = expand(spec, cores=2)
    assert _names(plan) == [
        "torch-single-w1-b256-t1-r1", "torch-ddp-w2-b256-t1-r1", "torch-ddp-w2-b512-t1-r1",
        "torch-single-w1-b256-t1-r2", "torch-ddp-w2-b256-t1-r2", "torch-ddp-w2-b512-t1-r2",
    ]
    assert plan[0].scaling == ["strong", "weak"]
    assert plan[2].cfg is not None and plan[2].cfg.per_worker_batch == 256  # weak: per-worker batch fixed


def test_impossible_configuration_is_planned_once_with_its_reason() -> None:
    spec = BenchSpec(frameworks=("torch",), workers=(1, 4), scaling="weak", batch_size=512, limit_train=1024,
                     repeats=3)
    plan = expand(spec, cores=4)
    bad = [p for p in plan if p.cfg is None]
    assert len(bad) == 1 and "smaller than one global batch" in (bad[0].error or "")


def test_strategies_option_and_scaling_preset_workers() -> None:
    assert multi_strategies("torch", None) == ("ddp",) and multi_strategies("jax", None) == ("dp",)
    assert multi_strategies("tensorflow", ("ddp", "dp", "multiworker")) == ("multiworker",)
    assert multi_strategies("tensorflow", ("ddp",)) == ("mirrored",)
    assert resolve_workers(get_preset("scaling"), 2).workers == (1, 2)
    assert resolve_workers(get_preset("scaling"), 8).workers == (1, 2, 4, 8)
    assert resolve_workers(get_preset("scaling"), 6).workers == (1, 2, 4, 6)
    with pytest.raises(ConfigError):
        expand(BenchSpec(frameworks=("mxnet",)), cores=2)
    with pytest.raises(ConfigError):
        expand(BenchSpec(workers=(0,)), cores=2)
    with pytest.raises(ConfigError):
        get_preset("fastest")


def test_gpu_machine_leaves_threads_to_the_engine() -> None:
    plan = expand(get_preset("quick"), cores=16, gpus=2)
    assert all(p.cfg is not None and p.cfg.threads_per_worker is None for p in plan)
    assert not any(p.role == "reference" for p in plan)


def test_every_preset_with_a_ddp_run_schedules_a_linktest_of_this_host(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`pvision project` needs ROOT/linktest.json to show its error against a measured DDP run: the bench records
    one after a plan with a DDP run (the runner's own step, a fake measurement here), and keeps one already there."""
    from parallel_vision.bench import presets, runner
    from parallel_vision.projection.linktest import make_record, read_record, write_record

    for name, spec in presets.PRESETS.items():
        plan = expand(resolve_workers(spec, 2), cores=2)
        has_ddp = any(p.cfg is not None and p.cfg.strategy == "ddp" and p.cfg.workers > 1 for p in plan)
        assert (runner.linktest_workers(plan) == 2) == has_ddp, name
    assert runner.linktest_workers(expand(get_preset("quick"), cores=2)) == 2
    assert runner.linktest_workers(expand(BenchSpec(frameworks=("tensorflow",), workers=(1, 2)), cores=2)) is None

    measured: list[int] = []

    def fake(root, workers, log_file):  # type: ignore[no-untyped-def]
        measured.append(workers)
        write_record(make_record({4096: [1e-4], 1 << 20: [2e-3], 1 << 22: [8e-3]}, backend="gloo", device="cpu",
                                 world_size=workers, nodes=1, processes_per_node=workers, host="h",
                                 created_at="2026-01-01T00:00:00+00:00"), root)

    bench = runner.Bench.__new__(runner.Bench)  # the linktest step alone: no data, no store
    bench.plan_runs = expand(get_preset("quick"), cores=2)
    bench.root, bench.echo, bench.overwrite, bench.manifest = tmp_path, lambda line: None, False, {}
    (tmp_path / "logs").mkdir()
    bench.linktest(runner=fake)
    assert measured == [2] and read_record(tmp_path)["world_size"] == 2
    assert bench.manifest["linktest"]["state"] == "done"
    bench.linktest(runner=fake)  # a second bench into the same ROOT keeps it
    assert measured == [2] and bench.manifest["linktest"]["state"] == "kept"
    bench.overwrite = True
    bench.linktest(runner=fake)
    assert measured == [2, 2]


def test_parallelism_preset_runs_every_strategy_that_supports_each_model_beside_single() -> None:
    """20 runs on 2 cores: per model each framework's 1-worker single baseline (the others refuse 1 worker) and
    torch ddp, zero1, fsdp and pipeline at 2 workers; torch tensor and JAX model-parallel for wide_mlp only (they
    split dense layers: not planned, rather than refused, for the conv models); one thread each, on the subset."""
    plan = expand(get_preset("parallelism"), cores=2)
    assert all(p.cfg is not None for p in plan), [p.error for p in plan if p.cfg is None]
    got = sorted((p.cfg.model, p.cfg.framework, p.cfg.strategy, p.cfg.workers) for p in plan if p.cfg is not None)
    want = [(m, "torch", s, n) for m in ("paper_cnn", "resnet18", "wide_mlp")
            for s, n in (("single", 1), ("ddp", 2), ("zero1", 2), ("fsdp", 2), ("pipeline", 2))]
    want += [(m, "jax", "single", 1) for m in ("paper_cnn", "resnet18", "wide_mlp")]
    want += [("wide_mlp", "torch", "tensor", 2), ("wide_mlp", "jax", "model-parallel", 2)]
    assert got == sorted(want)
    for p in plan:
        assert p.cfg is not None
        assert (p.cfg.limit_train, p.cfg.limit_test, p.cfg.epochs, p.cfg.batch_size) == (512, 200, 2, 128)
        assert p.cfg.threads_per_worker == (2 if p.cfg.strategy == "model-parallel" else 1)  # one process, 2 devices


def test_seeds_train_every_configuration_once_per_seed_and_repeats_stay_repeats() -> None:
    spec = BenchSpec(frameworks=("torch",), workers=(1, 2), batch_size=256, limit_train=2048, seeds=(0, 3),
                     repeats=2)
    plan = expand(spec, cores=2)
    assert _names(plan) == [
        "torch-single-w1-b256-t1-seed0-r1", "torch-single-w1-b256-t1-seed3-r1",
        "torch-ddp-w2-b256-t1-seed0-r1", "torch-ddp-w2-b256-t1-seed3-r1",
        "torch-single-w1-b256-t1-seed0-r2", "torch-single-w1-b256-t1-seed3-r2",
        "torch-ddp-w2-b256-t1-seed0-r2", "torch-ddp-w2-b256-t1-seed3-r2",
    ]
    assert [p.cfg.seed for p in plan if p.cfg is not None] == [0, 3, 0, 3, 0, 3, 0, 3]
    assert [p.cfg.seed for p in expand(spec.replace(seeds=None), cores=2) if p.cfg is not None] == [0] * 4


@pytest.mark.parametrize("seeds", [(), (1, 1), (-1,)])
def test_seeds_must_be_distinct_non_negative_integers(seeds: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="seeds must be distinct non-negative integers"):
        expand(BenchSpec(frameworks=("torch",), seeds=seeds), cores=2)


def test_trust_preset_three_seeds_of_the_issues_configurations_aligned_then_explain(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from parallel_vision.bench import runner

    plan = expand(get_preset("trust"), cores=2)
    configs = [p.cfg for p in plan]
    assert all(c is not None and c.init == "aligned" and c.limit_train is None and c.model == "paper_cnn"
               for c in configs)
    # every run on every core: the 1-worker runs get both threads, each of 2 workers one (a shared process 2)
    threads = {(c.framework, c.workers): c.threads_per_worker for c in configs if c is not None}
    assert threads == {("torch", 1): 2, ("torch", 2): 1, ("tensorflow", 1): 2, ("tensorflow", 2): 2, ("jax", 1): 2}
    layouts = {(c.framework, c.strategy, c.workers) for c in configs if c is not None}
    assert layouts == {("torch", "single", 1), ("torch", "ddp", 2), ("tensorflow", "single", 1),
                       ("tensorflow", "mirrored", 2), ("jax", "single", 1)}
    for layout in layouts:
        seeds = sorted(c.seed for c in configs if c is not None and (c.framework, c.strategy, c.workers) == layout)
        assert seeds == [0, 1, 2], layout

    called: list[Path] = []
    bench = runner.Bench.__new__(runner.Bench)  # the explain step alone: no data, no store
    bench.spec, bench.root, bench.echo, bench.manifest = get_preset("trust"), tmp_path, lambda line: None, {}
    bench.explain(runner=lambda root, log_file: called.append(root))
    assert called == [tmp_path] and bench.manifest["explain"]["state"] == "done"

    def broken(root, log_file):  # type: ignore[no-untyped-def]
        raise ConfigError("no run could be explained")

    bench.explain(runner=broken)  # a warning in the manifest, never the bench's failure
    assert bench.manifest["explain"] == {"state": "failed", "reason": "no run could be explained"}
    bench.spec = get_preset("quick")
    bench.explain(runner=lambda root, log_file: called.append(root))
    assert called == [tmp_path]  # only a preset that asks for it explains
