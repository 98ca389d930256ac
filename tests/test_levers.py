"""The levers (docs/levers.md) as specifications: the LR schedule step by step in both engines, gradient
accumulation equal to DDP, the bytes a compression hook sends, time to target, and what result.json records.

The framework-free parts run in-process in milliseconds; the torch engine runs (marked slow) train a few steps
on a real MNIST subset; the Keras schedule is read in a subprocess (TensorFlow never enters this process).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from parallel_vision.config import RunConfig
from parallel_vision.engines import levers
from parallel_vision.errors import ConfigError
from parallel_vision.results.schema import target_summary
from tf_probe import run_probe


# ------------------------------------------------------------------------------ the schedule, framework-free
def test_linear_scaling_with_warmup_is_the_documented_schedule_step_by_step() -> None:
    # lr 0.1 tuned for batch 256; global batch 1024 → ×4 = 0.4; warm-up 2 epochs of 4 steps (n 4096).
    cfg = RunConfig(optimizer="sgd", lr=0.1, batch_size=1024, lr_scaling="linear", base_batch=256,
                    warmup_epochs=2, epochs=3, limit_train=4096)
    rates = levers.lr_sequence(cfg, 4096)
    expected = [0.1 + 0.3 * (s + 1) / 8 for s in range(8)] + [0.4] * 4  # docs/levers.md, "LR scaling and warm-up"
    assert len(rates) == 12
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[7] == pytest.approx(0.4) and levers.effective_lr(cfg) == pytest.approx(0.4)


def test_sqrt_scaling_and_warmup_from_zero_without_scaling() -> None:
    cfg = RunConfig(lr=1e-3, batch_size=1024, lr_scaling="sqrt", base_batch=256)
    assert levers.effective_lr(cfg) == pytest.approx(2e-3)
    plain = RunConfig(lr=1e-3, batch_size=512, warmup_epochs=1, epochs=2, limit_train=2048)
    assert levers.lr_sequence(plain, 2048) == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    assert not levers.needs_schedule(RunConfig())


def test_torch_scheduler_follows_the_schedule_step_by_step() -> None:
    torch = pytest.importorskip("torch")
    from parallel_vision.engines.torch import build

    cfg = RunConfig(optimizer="sgd", lr=0.1, batch_size=1024, lr_scaling="linear", base_batch=256,
                    warmup_epochs=2, epochs=3, limit_train=4096)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = build.scheduler(cfg, optimizer, 4096)
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])  # the rate the step about to be taken uses
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx(levers.lr_sequence(cfg, 4096), rel=1e-12)


@pytest.mark.slow
def test_keras_schedule_gives_the_same_rates_as_torch_step_by_step() -> None:
    """Both engines, one framework-free sequence: the Keras schedule (float32) read as its optimiser reads it,
    with and without gradient accumulation (Keras counts micro-steps)."""
    for accum in (1, 2):
        cfg = RunConfig(framework="tensorflow", optimizer="sgd", lr=0.1, batch_size=1024, lr_scaling="linear",
                        base_batch=256, warmup_epochs=2, epochs=3, limit_train=4096, grad_accum=accum)
        rates = json.loads(run_probe("lr-sequence", cfg.to_json(), "4096").strip().splitlines()[-1])
        assert rates == pytest.approx(levers.lr_sequence(cfg, 4096), rel=1e-6)


# ------------------------------------------------------------------------------ configuration
@pytest.mark.parametrize(("changes", "phrase"), [
    ({"lr_scaling": "linear"}, "needs --base-batch"),
    ({"base_batch": 256}, "base_batch only applies"),
    ({"warmup_epochs": 2, "lr_schedule": "onecycle"}, "cannot be combined"),
    ({"warmup_epochs": 5, "epochs": 2}, "longer than the run"),
    ({"strategy": "ddp", "workers": 2, "batch_size": 100, "grad_accum": 4}, "does not divide into 2 worker(s) × 4"),
    ({"grad_compression": "fp16"}, "strategy ddp only"),
    ({"strategy": "ddp", "workers": 2, "grad_compression": "fp16:2"}, "powersgd[:rank]"),
    ({"strategy": "ddp", "workers": 2, "grad_compression": "powersgd:x"}, "integer >= 1"),
    ({"framework": "tensorflow", "strategy": "ddp", "workers": 2, "grad_compression": "fp16"}, "strategy for"),
    ({"target_accuracy": 0.0}, "(0, 1]"),
    ({"target_accuracy": True}, "must be a number"),
    ({"stop_at_target": True}, "needs --target-accuracy"),
    ({"framework": "jax", "grad_accum": 2, "batch_size": 512}, "not implemented in the JAX engine"),
    ({"framework": "jax", "strategy": "dp", "workers": 2, "grad_compression": "fp16"}, "applies to the torch engine"),
])
def test_levers_refused_in_one_line(changes: dict, phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig(**changes)
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_lever_defaults_keep_the_identity_of_older_runs() -> None:
    assert RunConfig().identity() == {k: v for k, v in RunConfig().identity().items()}
    for key in ("lr_scaling", "base_batch", "warmup_epochs", "grad_accum", "grad_compression", "target_accuracy",
                "stop_at_target"):
        assert key not in RunConfig().identity()
    assert RunConfig(grad_accum=2).identity()["grad_accum"] == 2
    assert RunConfig(strategy="ddp", workers=2, grad_compression="powersgd:4").compression == ("powersgd", 4)
    assert RunConfig(strategy="ddp", workers=2, grad_compression="powersgd").compression == ("powersgd", 1)


def test_native_bf16_is_read_from_the_cpu_flags() -> None:
    assert levers.native_bf16("flags\t: fpu sse avx512f avx512_bf16\n")
    assert levers.native_bf16("flags\t: fpu amx_bf16 amx_tile\n")
    assert not levers.native_bf16("flags\t: fpu sse avx2\n")
    assert levers.bf16_refusal(on_gpu=False, cpuinfo="flags : avx2\n") is not None
    assert levers.bf16_refusal(on_gpu=True, cpuinfo="flags : avx2\n") is None


# ------------------------------------------------------------------------------ time to target
def test_precision_auto_picks_bf16_only_where_it_was_measured_faster() -> None:
    native, plain = "flags : avx512f avx512_bf16\n", "flags : avx2 avx512f\n"
    assert levers.auto_precision("torch", on_gpu=False, cpuinfo=native)[0] == "bf16"
    assert levers.auto_precision("torch", on_gpu=False, cpuinfo=plain)[0] == "fp32"
    assert levers.auto_precision("torch", on_gpu=True, gpu_bf16=True)[0] == "bf16"
    assert levers.auto_precision("torch", on_gpu=True, gpu_bf16=False)[0] == "fp32"
    for framework in ("tensorflow", "jax"):
        assert levers.auto_precision(framework, on_gpu=False, cpuinfo=native)[0] == "fp32"
    cfg = levers.resolve_precision(RunConfig(framework="tensorflow", precision="auto"), on_gpu=False)
    assert cfg.precision == "fp32" and "bf16 was measured faster only with the PyTorch engine" in \
        cfg.extra["precision_auto"]
    explicit = RunConfig(precision="bf16")
    assert levers.resolve_precision(explicit, on_gpu=False) is explicit


@pytest.mark.slow
def test_precision_auto_run_records_the_choice(data_dir: Path, tmp_path: Path) -> None:
    from parallel_vision.launch import run

    out = tmp_path / "auto"
    run(RunConfig(precision="auto", limit_train=512, limit_test=200, batch_size=256, epochs=1, device="cpu",
                  tensorboard=False, data_dir=str(data_dir), out_dir=str(out)), progress=False)
    config = json.loads((out / "result.json").read_text())["config"]
    expected = "bf16" if levers.native_bf16() else "fp32"
    assert config["precision"] == expected
    assert config["extra"]["precision_auto"].startswith(f"auto: {expected}")


def test_time_to_target_sums_epoch_times_to_the_first_epoch_reaching_it() -> None:
    epochs = [{"epoch": 1, "epoch_time_s": 10.0, "test_accuracy": 0.97},
              {"epoch": 2, "epoch_time_s": 8.0, "test_accuracy": 0.991},
              {"epoch": 3, "epoch_time_s": 8.0, "test_accuracy": 0.989}]
    assert target_summary(0.99, epochs) == {"target_accuracy": 0.99, "target_reached": True,
                                            "time_to_target_s": 18.0, "epochs_to_target": 2}
    assert target_summary(0.995, epochs) == {"target_accuracy": 0.995, "target_reached": False,
                                             "time_to_target_s": None, "epochs_to_target": None}


# ------------------------------------------------------------------------------ the torch engine
SMALL = {"limit_train": 512, "limit_test": 200, "batch_size": 128, "epochs": 1, "device": "cpu", "dropout": 0.0,
         "memory_format": "contiguous", "tensorboard": False, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
         "threads_per_worker": 1}  # one thread in both: 2 threads would split the convolutions' sums differently


def _run(data_dir: Path, out: Path, **changes: object) -> dict:
    from parallel_vision.launch import run

    cfg = RunConfig(**dict(SMALL, data_dir=str(data_dir), out_dir=str(out), **changes))  # type: ignore[arg-type]
    run(cfg, progress=False)
    return json.loads((out / "result.json").read_text())


def _run_all(data_dir: Path, runs: dict[str, tuple[Path, dict[str, object]]]) -> dict[str, dict]:
    """Several `_run`s at once, each in a thread (launch.run only waits on its engine processes there).

    One thread per worker and nothing timed is compared, so running them side by side changes no assertion;
    most of each run is starting Python and torch, so this takes about half of running them in turn."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(_run, data_dir, out, **changes) for name, (out, changes) in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def _parameters(out: Path) -> dict[str, np.ndarray]:
    import torch

    from parallel_vision.models.torch_zoo import build_torch_model

    state = torch.load(out / "model.pt")
    names = {n for n, _ in build_torch_model("paper_cnn", 1, 28, 10, 0.0).named_parameters()}
    return {k: v.numpy() for k, v in state.items() if k in names}


def _expected_powersgd_bytes(rank: int) -> int:
    """What torch's PowerSGD all-reduces per step for the paper CNN: each matrix (a parameter viewed as
    shape[0] × rest) worth compressing — (n + m)·r·2 < n·m, torch's min_compression_rate 2 — as P (n×r) and
    Q (m×r); every other tensor (biases, BatchNorm, small matrices) uncompressed; fp32."""
    from parallel_vision.models.torch_zoo import build_torch_model

    elements = 0
    for _, p in build_torch_model("paper_cnn", 1, 28, 10, 0.0).named_parameters():
        n = p.shape[0]
        m = p.numel() // n
        if p.ndim > 1 and (n + m) * rank * 2 < n * m:
            elements += (n + m) * rank
        else:
            elements += p.numel()
    return elements * 4


@pytest.mark.slow
def test_grad_accum_equals_ddp_and_compression_changes_the_bytes_sent(data_dir: Path, tmp_path: Path) -> None:
    """Spec 1: DDP with 2 workers at per-worker batch 64 = one worker with --grad-accum 2 at micro-batch 64
    (global 128 both, one thread per worker): the same micro-batches through BatchNorm, the same mean gradient, so
    the same weights
    (BatchNorm's running statistics differ by design: DDP keeps rank 0's, accumulation sees every micro-batch;
    they are buffers, not weights). Spec 2: fp16 halves the bytes sent per step, PowerSGD sends P and Q.
    Also: time to target reached and not reached, and the result records the levers."""
    # 2 epochs, but --stop-at-target ends `ddp` after the first (which reaches 5 %): the same training as `accum`
    results = _run_all(data_dir, {
        "ddp": (tmp_path / "ddp", {"strategy": "ddp", "workers": 2, "target_accuracy": 0.05, "stop_at_target": True,
                                   "epochs": 2}),
        "accum": (tmp_path / "accum", {"grad_accum": 2, "target_accuracy": 1.0}),
        "fp16": (tmp_path / "fp16", {"strategy": "ddp", "workers": 2, "grad_compression": "fp16"}),
        "psgd": (tmp_path / "psgd", {"strategy": "ddp", "workers": 2, "grad_compression": "powersgd:1"}),
    })
    ddp, accum, fp16, psgd = (results[name] for name in ("ddp", "accum", "fp16", "psgd"))
    a, b = _parameters(tmp_path / "ddp"), _parameters(tmp_path / "accum")
    assert a.keys() == b.keys() and len(a) == 22
    for name in a:  # bit for bit: the same micro-batches, gradients halved exactly (÷2), summed in the same order
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert accum["summary"]["micro_batch"] == 64 and ddp["summary"]["micro_batch"] == 64

    assert ddp["summary"]["target_reached"] is True and ddp["summary"]["epochs_to_target"] == 1
    assert ddp["status"] == "complete" and len(ddp["epochs"]) == 1
    assert ddp["summary"]["time_to_target_s"] == pytest.approx(ddp["epochs"][0]["epoch_time_s"])
    assert accum["summary"]["target_reached"] is False and accum["summary"]["time_to_target_s"] is None
    assert "comm_bytes_per_step" not in accum["summary"]  # nothing is all-reduced by one worker

    params = sum(int(v.size) for v in a.values())
    plain = ddp["summary"]["comm_bytes_per_step"]
    assert plain == params * 4  # every fp32 gradient once per step (a bucket's buffer)
    assert ddp["epochs"][0]["comm_bytes"] == plain * 4  # 4 steps

    assert fp16["summary"]["comm_bytes_per_step"] == plain / 2
    assert psgd["summary"]["comm_bytes_per_step"] == _expected_powersgd_bytes(1)
    assert plain / psgd["summary"]["comm_bytes_per_step"] > 50  # the 128×6272 dense layer dominates
    for result in (fp16, psgd):
        assert result["epochs"][0]["comm_time_s"] > 0 and math.isfinite(result["summary"]["test_accuracy"])


# ------------------------------------------------------------------------------ the report
def _fake_result(root: Path, name: str, *, steady: float, accuracies: list[float], comm_bytes: float | None = None,
                 **changes: object) -> None:
    """A complete result.json written the engines' way (summary from the epoch records, target included)."""
    import uuid

    from parallel_vision.engines.levers import schedule_record
    from parallel_vision.results.schema import summarise_epochs, write_result

    cfg = RunConfig(**dict({"epochs": 3, "batch_size": 512, "limit_train": 6144, "limit_test": 2000,
                            "threads_per_worker": 1, "target_accuracy": 0.85}, **changes))  # type: ignore[arg-type]
    times = [steady * 1.5, steady, steady]
    ddp = cfg.strategy == "ddp"
    epochs = [{"epoch": i + 1, "train_loss": 1.0, "train_accuracy": a, "test_loss": 0.5, "test_accuracy": a,
               "epoch_time_s": t, "images_per_s": 6144 / t, "data_time_s": 0.1, "compute_time_s": t - 0.1,
               "comm_time_s": 0.3 * t if ddp else None, "eval_time_s": 0.4, "n_train_images": 6144,
               "n_test_evaluated": 2000, "comm_bytes": comm_bytes * 12 if comm_bytes else None}
              for i, (t, a) in enumerate(zip(times, accuracies, strict=True))]
    summary = summarise_epochs(epochs, total_time_s=sum(times) + 8.0)
    summary.update({"world_size": cfg.workers, "global_batch": 512, "per_worker_batch": 512 // cfg.workers,
                    "steps_per_epoch": 12, "n_train": 6144, **schedule_record(cfg, 6144),
                    **target_summary(0.85, epochs)})
    if comm_bytes is not None:
        summary["comm_bytes_per_step"] = comm_bytes
    data = {"schema_version": 1, "run_id": uuid.uuid4().hex, "status": "complete",
            "created_at": "2026-01-01T00:00:00+00:00", "config": cfg.to_dict(),
            "environment": {"host": "h", "code_version": "abc", "cpu_model": "CPU", "torch_threads": 1},
            "epochs": epochs, "summary": summary, "timing": {},
            "classification_report": {str(c): {"precision": 0.9, "recall": 0.9, "f1-score": 0.9, "support": 200}
                                      for c in range(10)},
            "confusion_matrix": [[200 if i == j else 0 for j in range(10)] for i in range(10)], "artifacts": {}}
    write_result(data, root / "runs" / name)


def test_report_gives_speedup_to_target_and_one_sentence_per_lever(tmp_path: Path) -> None:
    from parallel_vision.report import levers as report_levers
    from parallel_vision.report import tables
    from parallel_vision.report.data import build_report_data

    ddp = {"strategy": "ddp", "workers": 2}
    _fake_result(tmp_path, "single", steady=10.0, accuracies=[0.80, 0.86, 0.88])
    _fake_result(tmp_path, "ddp", steady=6.0, accuracies=[0.80, 0.84, 0.86], comm_bytes=3.6e6, **ddp)
    _fake_result(tmp_path, "ddp-lr", steady=6.0, accuracies=[0.86, 0.88, 0.89], comm_bytes=3.6e6, lr_scaling="linear",
                 base_batch=256, warmup_epochs=1, **ddp)
    _fake_result(tmp_path, "ddp-psgd", steady=5.0, accuracies=[0.70, 0.80, 0.82], comm_bytes=6.7e4,
                 grad_compression="powersgd:1", **ddp)
    data = build_report_data(tmp_path)

    [row] = data.strong  # the lever runs differ from the 1-worker run in more than workers: no scaling row
    assert row.speedup_to_target is not None
    assert row.speedup_to_target.median == pytest.approx((15 + 10) / (9 + 6 + 6))
    assert "Speedup to target" in tables.scaling_table(data.strong, "strong").headers

    rows = report_levers.lever_rows(data)
    assert [r.group.config.get("grad_compression") for r in rows][0] == "none"  # the reference first
    text = report_levers.sentences(data)
    assert len(text) == 3 and text[-1] == report_levers.NO_PROJECTION
    lr, psgd = text[0], text[1]
    assert lr.startswith("linear LR scaling (lr 0.002) with 1-epoch warm-up on PyTorch DDP ×2, against the same run")
    assert "buys 12.0 s to 85.0 %" in lr and "Timing caveat" not in lr
    assert "PowerSGD rank 1 compression" in psgd and "never reaches 85.0 %" in psgd and "×0.0186" in psgd
    table = tables.levers_table(rows)
    assert "not reached" in [line[6] for line in table.rows]

    from parallel_vision.report import write_report

    write_report(tmp_path, formats=("md",))
    markdown = (tmp_path / "report.md").read_text()
    assert "What each lever buys" in markdown and "buys 12.0 s to 85.0 %" in markdown

    # With a projection in ROOT, the slow-link line quotes its recommendation beside the measured compression.
    help_line = "At N = 8, 61 % of the step is exposed communication; 4× gradient compression helps most (+120 %)."
    (tmp_path / "projection.json").write_text(json.dumps({"kind": "projection", "link": {"name": "1gbe"},
                                                          "what_would_help": help_line}))
    last = report_levers.sentences(build_report_data(tmp_path))[-1]
    assert last.startswith(f"Projection over 1gbe (docs/projection.md): {help_line}")
    assert "powersgd:1 compression changed the steady epoch" in last


def test_speedup_to_target_says_not_reached(tmp_path: Path) -> None:
    from parallel_vision.report.data import build_report_data

    _fake_result(tmp_path, "single", steady=10.0, accuracies=[0.80, 0.86, 0.88])
    _fake_result(tmp_path, "ddp", steady=6.0, accuracies=[0.80, 0.81, 0.82], strategy="ddp", workers=2)
    [row] = build_report_data(tmp_path).strong
    assert row.speedup_to_target is None and row.target_text == "not reached (2 workers)"


def test_levers_preset_plans_each_lever_where_the_engine_honours_it() -> None:
    from parallel_vision.bench.matrix import expand
    from parallel_vision.bench.presets import LEVER_VARIANTS, get_preset

    plan = expand(get_preset("levers"), cores=2)
    assert [p.cfg.extra.get("lever") for p in plan if p.cfg] == [None, None] + [label for label, _ in LEVER_VARIANTS]
    assert all(p.cfg and p.cfg.target_accuracy == 0.90 and p.error is None for p in plan)
    both = expand(get_preset("levers").replace(frameworks=("torch", "tensorflow")), cores=2)
    tf = [p.cfg.extra.get("lever") for p in both if p.cfg and p.cfg.framework == "tensorflow"]
    assert tf == [None, None, "lr-linear-warmup", "bf16"]  # Mirrored: no accumulation, no DDP hooks
