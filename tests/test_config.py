"""RunConfig: validation with clear messages, JSON round-trip, no framework import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError


def test_defaults_are_the_papers_protocol() -> None:
    cfg = RunConfig()
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs) == ("adam", 1e-3, 2048, 30)


def test_json_round_trip() -> None:
    cfg = RunConfig(framework="tensorflow", strategy="mirrored", workers=2, limit_train=4096, extra={"p": "q"})
    assert RunConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"framework": "mxnet"}, "framework must be one of"),
        ({"strategy": "mirrored"}, "strategy for torch"),
        ({"framework": "tensorflow", "strategy": "ddp"}, "strategy for tensorflow"),
        ({"workers": 0, "strategy": "ddp"}, "workers must be >= 1"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": -4}, "batch_size must be >= 1"),
        ({"batch_size": 2047, "workers": 2, "strategy": "ddp"}, "does not divide evenly"),
        ({"workers": 2}, "strategy 'single' runs exactly one worker"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"dataset": "cifar"}, "dataset must be one of"),
        ({"limit_train": 100}, "smaller than one global batch"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"sync_batchnorm": True}, "sync_batchnorm only applies"),
        ({"strategy": "dp", "workers": 2, "device": "cpu"}, "needs >= 2 CUDA devices"),
        ({"epochs": 2.5}, "epochs must be an integer"),
    ],
)
def test_invalid_configs_are_refused_with_a_reason(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(**changes)


def test_unknown_fields_and_bad_json() -> None:
    with pytest.raises(ConfigError, match="unknown configuration field"):
        RunConfig.from_dict({"epochz": 3})
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.from_json("{")


def test_threads_default_to_cores_over_processes() -> None:
    assert RunConfig(strategy="ddp", workers=2).resolved_threads(cores=8) == 4
    assert RunConfig(framework="tensorflow", strategy="mirrored", workers=2).resolved_threads(cores=8) == 8
    assert RunConfig(threads_per_worker=3).resolved_threads(cores=8) == 3


def test_building_configs_imports_no_framework() -> None:
    code = (
        "import sys; from parallel_vision.config import RunConfig; import parallel_vision.cli;"
        "RunConfig(strategy='ddp', workers=2);"
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_specific_fields_say_so_and_are_refused_elsewhere() -> None:
    """Each field one engine alone honours is marked in the type (field metadata) and refused, in one line,
    when set for the other framework, instead of being silently ignored."""
    import dataclasses

    from parallel_vision.config import FIELD_ENGINE, engine_only
    from parallel_vision.errors import ConfigError

    assert engine_only("compile") == "torch" and engine_only("jit_compile") == "tensorflow"
    assert engine_only("lr") is None and engine_only("batch_size") is None
    assert len(FIELD_ENGINE) >= 9
    other = {"torch": "tensorflow", "tensorflow": "torch"}
    changed = {"lr_schedule": "onecycle", "label_smoothing": 0.1, "memory_format": "contiguous", "fused_bn": False,
               "compile": True, "compile_mode": "reduce-overhead", "malloc_tuning": False, "jit_compile": True,
               "sync_batchnorm": True, "checkpoint_every": 5, "master_port": 29500, "grad_compression": "fp16",
               "collective_timeout": 60.0, "reshard_after_forward": False, "microbatches": 8,
               "pipeline_schedule": "gpipe", "recompute_stem": True, "inplace_bn_backward": False,
               "allocator": "glibc"}
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    for name, engine in FIELD_ENGINE.items():
        assert name in fields and name in changed, name
        with pytest.raises(ConfigError, match=f"{name} applies to the .* engine only"):
            RunConfig(framework=other[engine], **{name: changed[name]})  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "stored"), [
    ({}, "dd8c9dffa01def8a"),
    ({"framework": "tensorflow", "strategy": "mirrored", "workers": 2, "epochs": 3, "limit_train": 4096,
      "out_dir": "/x", "extra": {"preset": "quick"}}, "f2c8141af318fdf7"),
    ({"framework": "jax", "strategy": "dp", "workers": 2, "model": "wide_mlp", "dataset": "synthetic",
      "image_size": 16, "channels": 1, "classes": 5}, "1c3d8006c8a551ba"),
    ({"strategy": "ddp", "workers": 2, "lr_scaling": "linear", "base_batch": 256, "warmup_epochs": 1,
      "grad_accum": 2, "grad_compression": "powersgd:2", "target_accuracy": 0.99, "stop_at_target": True,
      "fused_bn": False, "checkpoint_every": 5, "master_port": 29400}, "25c81dbbe128f765"),
])
def test_identity_hashes_of_stored_runs_do_not_move(changes: dict, stored: str) -> None:
    """The hashes results databases hold (computed by the code before RunConfig was split into sections):
    reordering fields or moving identity rules into field metadata must not change them."""
    from parallel_vision.results.rows import identity_hash

    assert identity_hash(RunConfig(**changes)) == stored
