"""Bad input everywhere: every data and configuration failure mode, through the real CLI.

Each case calls the command line's entry point, `parallel_vision.cli.main` (what `python -m parallel_vision`
runs), with the user's arguments and checks its contract: exit code 2, stderr exactly one line starting
`pvision: error:`, no traceback, and a phrase that says what is wrong. Every case that fails in the launcher,
before any framework or worker, calls it in this process (`pvision`: typer's CliRunner isolation, a private
environment and working directory; ~0.1 s instead of ~2 s to start Python); the ones that start an engine or
would run one in this process (a user TF_CONFIG, CUDA-only settings, a busy port) run the real command
(`pvision_process`), and test_the_real_command_prints_the_same_one_line checks that the real command prints
what the entry point prints. docs/bad-input.md is the table of these cases (and of the ones other test modules
already cover through the CLI, e.g. a diverging loss in test_resume.py, a bit flip under `data verify` in
test_data_cli.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from parallel_vision.config import RunConfig, usable_cores

#: Variables that would turn a plain run into a torchrun / TF_CONFIG worker, or change where it reads.
_SCRUBBED = ("TF_CONFIG", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_WORLD_SIZE",
             "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "PVISION_DEBUG", "PVISION_DATA_DIR",
             "PVISION_RESULTS_DIR")

#: The mnist files as the catalogue has them, for damaging copies.
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"


def _private(cwd: Path) -> dict[str, str]:
    return {"PVISION_CACHE_DIR": str(cwd / ".cache" / "arrays"), "XDG_CACHE_HOME": str(cwd / ".cache"),
            "COLUMNS": "200"}


def pvision_process(*args: str, cwd: Path, env: dict[str, str] | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real command (`python -m parallel_vision`) in a clean environment: private caches, no cluster
    variables, cwd in tmp."""
    base = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    base.update(_private(cwd))
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=timeout)


#: Frameworks that must never be imported into this process by a refusal (TensorFlow and torch never share one).
_FRAMEWORKS = ("tensorflow", "jax", "keras")


def pvision(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The entry point `main(args)` in this process, as pvision_process runs it: the same environment (every variable
    it touches is restored afterwards), cwd, exit code, stdout and stderr (typer's CliRunner isolation). For cases
    that fail before any framework or worker starts; a framework imported here fails the case."""
    from typer.testing import CliRunner

    from parallel_vision import cli, envvars

    before = {name for name in _FRAMEWORKS if name in sys.modules}
    changes: dict[str, str | None] = {k: None for k in (*_SCRUBBED, envvars.LAUNCH_TIME, envvars.PROGRESS)}
    changes.update({**_private(cwd), **(env or {})})
    debug = cli._state["debug"]
    with CliRunner().isolation(env=changes) as (stdout, stderr, _), contextlib.chdir(cwd):
        cli._state["debug"] = False
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            cli._state["debug"] = debug
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    imported = {name for name in _FRAMEWORKS if name in sys.modules} - before
    assert not imported, f"pvision {' '.join(args)} imported {imported} into the calling process"
    return subprocess.CompletedProcess(["pvision", *args], code, out, err)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """Exit 2, one stderr line `pvision: error: ...` holding every phrase, no traceback; returns the line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pvision: error:"), proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


def train_args(data_dir: Path | str | None, out: Path, **options: object) -> list[str]:
    """`train` with tiny settings; `options` override or (None) drop them, e.g. batch_size=0; True is a flag."""
    values: dict[str, object] = {"epochs": 1, "batch_size": 256, "limit_train": 512, "limit_test": 100,
                                 "device": "cpu", "data_dir": data_dir, "out": out}
    values.update(options)
    args = ["train", "--quiet", "--no-tensorboard"]
    for key, value in values.items():
        if value is True:
            args.append(f"--{key.replace('_', '-')}")
        elif value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def test_the_real_command_prints_the_same_one_line(data_dir: Path, tmp_path: Path) -> None:
    """What the in-process cases see is what a user sees: for a refusal of each command family (and click's usage
    error), `python -m parallel_vision` exits with the same code and prints the same stderr and stdout as `main()`
    here, so nothing printed while Python starts (a warning, an import's message) slips past the one-line checks."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "datasets.txt").write_text("not a folder")
    cases = [train_args(data_dir, tmp_path / "out", epochs=0),
             ["train", "--epochs", "abc"],
             ["data", "verify", "--data-dir", "datasets.txt"],
             ["report", str(tmp_path / "no-such-root")],
             ["bench", "--dry-run", "--data-dir", str(data_dir), "--out", "bench", "--preset", "nope"]]
    with ThreadPoolExecutor(len(cases)) as pool:  # the real commands at once: most of each is starting Python
        real = list(pool.map(lambda args: pvision_process(*args, cwd=tmp_path), cases))
    for args, proc in zip(cases, real, strict=True):
        here = pvision(*args, cwd=tmp_path)
        assert (proc.returncode, proc.stderr, proc.stdout) == (here.returncode, here.stderr, here.stdout), args
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- configuration
_CORES = usable_cores()
_TOO_MANY = _CORES + 1
_DDP_WORKERS = min(2, _CORES)  # a ddp run this machine could start, so only the port is wrong

CONFIG_CASES = [
    # (id, overrides, phrases)
    ("epochs-0", {"epochs": 0}, ["epochs must be >= 1", "got 0"]),
    ("epochs-negative", {"epochs": -3}, ["epochs must be >= 1", "got -3"]),
    ("batch-0", {"batch_size": 0}, ["batch_size must be >= 1", "got 0"]),
    ("batch-negative", {"batch_size": -8}, ["batch_size must be >= 1", "got -8"]),
    ("workers-0", {"strategy": "ddp", "workers": 0}, ["workers must be >= 1"]),
    ("batch-not-divisible", {"strategy": "ddp", "workers": 2, "batch_size": 255},
     ["global batch 255 does not divide evenly over 2 workers"]),
    ("batch-over-limit-train", {"batch_size": 1024, "limit_train": 512},
     ["limit_train 512 is smaller than one global batch (1024)"]),
    ("unknown-dataset", {"dataset": "cifar"}, ["dataset must be one of", "'cifar'"]),
    ("unknown-model", {"model": "vgg16"}, ["model must be one of paper_cnn, resnet18, wide_mlp", "'vgg16'"]),
    ("shape-of-a-real-dataset", {"image_size": 64}, ["image_size applies to --dataset synthetic only"]),
    ("augment-digits", {"augment": True}, ["applies to cifar10, synthetic only", "a flipped mnist image"]),
    ("unknown-framework", {"framework": "mxnet"}, ["framework must be one of torch, tensorflow, jax", "'mxnet'"]),
    ("torch-mirrored", {"framework": "torch", "strategy": "mirrored", "workers": 2},
     ["strategy for torch must be one of single, dp, ddp", "'mirrored'"]),
    ("torch-multiworker", {"framework": "torch", "strategy": "multiworker", "workers": 2},
     ["strategy for torch", "'multiworker'"]),
    ("tensorflow-ddp", {"framework": "tensorflow", "strategy": "ddp", "workers": 2},
     ["strategy for tensorflow must be one of single, mirrored, multiworker", "'ddp'"]),
    ("tensorflow-dp", {"framework": "tensorflow", "strategy": "dp", "workers": 2},
     ["strategy for tensorflow", "'dp'"]),
    ("single-with-2-workers", {"workers": 2}, ["strategy 'single' runs exactly one worker", "--workers 2"]),
    ("dp-on-cpu", {"strategy": "dp", "workers": 2}, ["'dp'", "needs >= 2 CUDA devices", "--device cpu"]),
    ("ddp-more-workers-than-cores", {"strategy": "ddp", "workers": _TOO_MANY, "batch_size": 64 * _TOO_MANY,
                                     "limit_train": 64 * _TOO_MANY},
     [f"{_TOO_MANY} CPU workers requested", f"{_CORES} usable cores"]),
    ("multiworker-more-workers-than-cores", {"framework": "tensorflow", "strategy": "multiworker",
                                             "workers": _TOO_MANY, "batch_size": 64 * _TOO_MANY,
                                             "limit_train": 64 * _TOO_MANY},
     [f"{_TOO_MANY} CPU workers requested", f"{_CORES} usable cores"]),
    ("master-port-0", {"strategy": "ddp", "workers": 2, "master_port": 0}, ["master_port must be >= 1", "got 0"]),
    ("master-port-70000", {"strategy": "ddp", "workers": 2, "master_port": 70000},
     ["master_port must be a TCP port (1..65535)", "70000"]),
    ("collective-timeout-0", {"strategy": "ddp", "workers": 2, "collective_timeout": 0},
     ["collective_timeout must be a positive number of seconds", "got 0"]),
    ("collective-timeout-tensorflow", {"framework": "tensorflow", "collective_timeout": 60},
     ["collective_timeout applies to the torch engine and JAX multiworker only", "heartbeats"]),
    ("collective-timeout-jax-single", {"framework": "jax", "collective_timeout": 20},
     ["collective_timeout applies to the torch engine and JAX multiworker only", "not JAX single"]),
    ("threads-0", {"threads": 0}, ["threads_per_worker must be >= 1"]),
    ("lr-0", {"lr": 0}, ["lr must be a positive number"]),
    ("lr-nan", {"lr": "nan"}, ["lr must be a finite number", "nan"]),
    ("lr-inf", {"lr": "inf"}, ["lr must be a finite number", "inf"]),
    ("limit-test-0", {"limit_test": 0}, ["limit_test must be >= 1"]),
    ("label-smoothing-on-tensorflow", {"framework": "tensorflow", "label_smoothing": 0.1},
     ["label_smoothing applies to the torch engine only"]),
    ("compile-on-tensorflow", {"framework": "tensorflow", "compile": True}, ["compile applies to the torch engine"]),
    ("checkpoint-every-on-tensorflow", {"framework": "tensorflow", "checkpoint_every": 5},
     ["checkpoint_every applies to the torch engine", "every epoch end"]),
    ("jit-compile-on-torch", {"jit_compile": True}, ["jit_compile applies to the TensorFlow engine"]),
    ("sync-batchnorm-without-ddp", {"sync_batchnorm": True}, ["sync_batchnorm only applies to strategy 'ddp'"]),
    ("checkpoint-every-negative", {"checkpoint_every": -1}, ["checkpoint_every must be >= 0"]),
    ("momentum-1", {"optimizer": "sgd", "momentum": 1.0}, ["momentum must be in [0, 1)"]),
    ("dropout-1", {"dropout": 1.0}, ["dropout must be in [0, 1)"]),
    ("unknown-optimizer", {"optimizer": "rmsprop"}, ["optimizer must be one of adam, sgd", "'rmsprop'"]),
    ("unknown-precision", {"precision": "fp8"}, ["precision must be one of fp32, bf16, fp16", "'fp8'"]),
    ("unknown-device", {"device": "tpu"}, ["device must be one of auto, cpu, cuda", "'tpu'"]),
    ("unknown-lr-schedule", {"lr_schedule": "cosine"}, ["lr_schedule must be one of", "'cosine'"]),
    # the levers (docs/levers.md)
    ("lr-scaling-without-base-batch", {"lr_scaling": "linear"}, ["lr_scaling linear needs --base-batch"]),
    ("unknown-lr-scaling", {"lr_scaling": "cubic", "base_batch": 64}, ["lr_scaling must be one of none, linear, sqrt"]),
    ("warmup-with-onecycle", {"warmup_epochs": 1, "lr_schedule": "onecycle"},
     ["warmup_epochs cannot be combined with lr_schedule onecycle"]),
    ("grad-accum-not-dividing", {"strategy": "ddp", "workers": 2, "batch_size": 256, "grad_accum": 3},
     ["global batch 256 does not divide into 2 worker(s) × 3 micro-batches"]),
    ("grad-accum-tf-mirrored", {"framework": "tensorflow", "strategy": "mirrored", "workers": 2, "grad_accum": 2},
     ["grad_accum under TensorFlow's mirrored strategy is not possible"]),
    ("grad-compression-on-tensorflow", {"framework": "tensorflow", "grad_compression": "fp16"},
     ["grad_compression applies to the torch engine only"]),
    ("grad-compression-without-ddp", {"grad_compression": "powersgd"},
     ["grad_compression applies to strategy ddp only"]),
    ("unknown-grad-compression", {"strategy": "ddp", "workers": 2, "grad_compression": "int8"},
     ["grad_compression must be none, fp16, bf16 or powersgd[:rank]", "'int8'"]),
    ("powersgd-rank-0", {"strategy": "ddp", "workers": 2, "grad_compression": "powersgd:0"},
     ["the PowerSGD rank must be an integer >= 1"]),
    ("target-accuracy-percent", {"target_accuracy": 99}, ["target_accuracy must be in (0, 1]", "0.99 for 99 %"]),
    ("model-parallel-conv", {"framework": "jax", "strategy": "model-parallel", "workers": 2},
     ["JAX's model-parallel strategy does not support model paper_cnn; it supports wide_mlp"]),
    ("model-parallel-3-devices", {"framework": "jax", "strategy": "model-parallel", "workers": 3, "batch_size": 96,
                                  "model": "wide_mlp"}, ["--workers 3 does not divide 4096"]),
]


@pytest.mark.parametrize(("overrides", "phrases"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_impossible_configuration(data_dir: Path, tmp_path: Path, overrides: dict, phrases: list[str]) -> None:
    out = tmp_path / "out"
    assert_one_line_error(pvision(*train_args(data_dir, out, **overrides), cwd=tmp_path), *phrases)
    assert not out.exists()  # refused before anything was written


def test_busy_master_port(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        proc = pvision_process(*train_args(data_dir, out, strategy="ddp", workers=_DDP_WORKERS, master_port=port),
                               cwd=tmp_path)
    assert_one_line_error(proc, f"port {port} on 127.0.0.1 is busy")
    assert not out.exists()


def test_tcmalloc_asked_for_where_none_is_installed(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = pvision(*train_args(data_dir, out), "--allocator", "tcmalloc", cwd=tmp_path, env={"PVISION_TCMALLOC": ""})
    assert_one_line_error(proc, "allocator tcmalloc: no libtcmalloc on this machine", "--allocator auto")
    assert not out.exists()


def test_non_integer_option_is_a_usage_error(tmp_path: Path) -> None:
    """Values typer/click cannot parse are usage errors: exit 2 and click's own 'Usage:' block (not one line)."""
    proc = pvision("train", "--epochs", "abc", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Invalid value for '--epochs'" in proc.stderr and proc.stderr.startswith("Usage: pvision train")


# ------------------------------------------------------------------------------- output folder
def test_output_under_a_regular_file_is_not_writable(data_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    proc = pvision(*train_args(data_dir, out), cwd=tmp_path)
    assert_one_line_error(proc, f"output directory {out} is not writable", "Not a directory")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_under_proc_is_not_writable(data_dir: Path, tmp_path: Path) -> None:
    out = Path("/proc/pvision-bad-input/run")  # unwritable even for root
    assert_one_line_error(pvision(*train_args(data_dir, out), cwd=tmp_path), f"output directory {out} is not writable")


def _config_file(data_dir: Path, out: Path, path: Path, **changes: object) -> RunConfig:
    cfg = RunConfig(epochs=1, batch_size=256, limit_train=512, limit_test=100, device="cpu", tensorboard=False,
                    data_dir=str(data_dir), out_dir=str(out), **changes)  # type: ignore[arg-type]
    path.write_text(cfg.to_json())
    return cfg


@pytest.mark.parametrize(
    ("previous", "phrase"),
    [("other-seed", "holds a different run"), ("garbage", "holds a different run"),
     ("finished", "already holds a finished run")],
    ids=["other-seed", "garbage-config", "finished"],
)
def test_output_folder_holding_another_run(data_dir: Path, tmp_path: Path, previous: str, phrase: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cfg = _config_file(data_dir, out, tmp_path / "run.json")
    if previous == "other-seed":
        (out / "config.json").write_text(cfg.replace(seed=7).to_json())
    elif previous == "garbage":
        (out / "config.json").write_text("{ not a config")
    else:
        (out / "config.json").write_text(cfg.to_json())
        (out / "result.json").write_text(json.dumps({"status": "complete"}))
    before = sorted(p.name for p in out.iterdir())
    proc = pvision("train", "--config", str(tmp_path / "run.json"), "--quiet", cwd=tmp_path)
    assert_one_line_error(proc, f"output directory {out}", phrase, "choose another --out")
    assert sorted(p.name for p in out.iterdir()) == before  # the other run's files are untouched


@pytest.mark.parametrize("result_text", ["{ truncated", "[1, 2]"], ids=["not-json", "not-an-object"])
def test_output_folder_with_a_corrupt_result_file(data_dir: Path, tmp_path: Path, result_text: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cfg = _config_file(data_dir, out, tmp_path / "run.json")
    (out / "config.json").write_text(cfg.to_json())
    (out / "result.json").write_text(result_text)
    proc = pvision("train", "--config", str(tmp_path / "run.json"), "--quiet", cwd=tmp_path)
    assert_one_line_error(proc, f"{out}", "result.json")


# ------------------------------------------------------------------------------- --config file
@pytest.mark.parametrize(
    ("content", "phrases"),
    [
        ("{ not json", ["configuration is not valid JSON"]),
        ("", ["configuration is not valid JSON"]),
        ("[1, 2]", ["a run configuration must be a JSON object, got list"]),
        ('{"epochz": 1}', ["unknown configuration field(s): epochz"]),
        ('{"epochs": 0}', ["epochs must be >= 1"]),
        ('{"workers": "2", "strategy": "ddp"}', ["workers must be an integer", "'2'"]),
        ('{"lr": "fast"}', ["lr must be a number", "'fast'"]),
        ('{"strategy": "ddp", "workers": 2, "batch_size": 255}', ["does not divide evenly"]),
    ],
    ids=["not-json", "empty", "list", "unknown-field", "epochs-0", "workers-string", "lr-string", "not-divisible"],
)
def test_bad_config_file(tmp_path: Path, content: str, phrases: list[str]) -> None:
    (tmp_path / "bad.json").write_text(content)
    assert_one_line_error(pvision("train", "--config", "bad.json", cwd=tmp_path), *phrases)


@pytest.mark.parametrize("name", ["missing.json", "."], ids=["missing", "directory"])
def test_unreadable_config_file(tmp_path: Path, name: str) -> None:
    assert_one_line_error(pvision("train", "--config", name, cwd=tmp_path), f"cannot read {name}")


@pytest.mark.parametrize("content", ['{"momentum": "high"}', '{"data_dir": 5}'], ids=["momentum-string",
                                                                                      "data-dir-number"])
def test_config_file_with_wrongly_typed_values(tmp_path: Path, content: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    assert_one_line_error(pvision("train", "--config", "bad.json", cwd=tmp_path), json.loads(content).popitem()[0])


# ------------------------------------------------------------------------------- TF_CONFIG
_TWO = ["127.0.0.1:23401", "127.0.0.1:23402"]


@pytest.mark.parametrize(
    ("tf_config", "phrases"),
    [
        ("{oops", ["TF_CONFIG is not valid JSON"]),
        ("", ["strategy 'multiworker' needs TF_CONFIG"]),
        ('"worker"', ["TF_CONFIG must be a JSON object; got str"]),
        (json.dumps({"task": {"type": "worker", "index": 0}}), ["TF_CONFIG has no 'cluster' object"]),
        (json.dumps({"cluster": {"worker": _TWO}}), ["TF_CONFIG has no 'task' object"]),
        (json.dumps({"cluster": {"worker": _TWO}, "task": {"type": "worker", "index": 2}}),
         ["TF_CONFIG task.index 2 is out of range for the 2 worker(s)"]),
        (json.dumps({"cluster": {"worker": _TWO}, "task": {"type": "chief", "index": 0}}),
         ["TF_CONFIG task.type 'chief' is not a job of the cluster"]),
        (json.dumps({"cluster": {"worker": [*_TWO, "127.0.0.1:23403"]}, "task": {"type": "worker", "index": 0}}),
         ["--workers 2 but TF_CONFIG describes 3 training process(es)"]),
        (json.dumps({"cluster": {"worker": ["127.0.0.1", "127.0.0.1:23402"]}, "task": {"type": "worker", "index": 0}}),
         ["TF_CONFIG cluster.worker[0] must be a 'host:port' string"]),
    ],
    ids=["not-json", "empty", "not-object", "no-cluster", "no-task", "index-out-of-range", "task-type-not-in-cluster",
         "wrong-worker-count", "address-without-port"],
)
def test_invalid_tf_config_for_multiworker(data_dir: Path, tmp_path: Path, tf_config: str, phrases: list[str]) -> None:
    out = tmp_path / "out"
    args = train_args(data_dir, out, framework="tensorflow", strategy="multiworker", workers=2)
    # the real command: under a valid TF_CONFIG the engine would run in the calling process
    assert_one_line_error(pvision_process(*args, cwd=tmp_path, env={"TF_CONFIG": tf_config}), *phrases)
    assert not out.exists()  # refused before the output folder (and before TensorFlow is imported)


# ------------------------------------------------------------------------------- data files
@pytest.fixture(scope="module")
def damaged(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies of the shared mnist files, one damage per copy: name -> datasets root."""
    roots: dict[str, Path] = {}
    base = tmp_path_factory.mktemp("damaged")
    for name in ("flipped", "truncated", "empty", "random", "appended", "missing-file"):
        raw = base / name / "mnist" / "raw"
        shutil.copytree(data_dir / "mnist" / "raw", raw)
        for f in raw.iterdir():
            f.chmod(0o644)
        roots[name] = base / name
    flip = roots["flipped"] / "mnist" / "raw" / TRAIN_IMAGES
    data = bytearray(flip.read_bytes())
    data[len(data) // 2] ^= 0x10
    flip.write_bytes(bytes(data))
    cut = roots["truncated"] / "mnist" / "raw" / TRAIN_LABELS
    cut.write_bytes(cut.read_bytes()[:-100])
    (roots["empty"] / "mnist" / "raw" / TEST_IMAGES).write_bytes(b"")
    noise = roots["random"] / "mnist" / "raw" / TEST_LABELS
    noise.write_bytes(os.urandom(noise.stat().st_size))  # right size, wrong content
    with open(roots["appended"] / "mnist" / "raw" / TEST_IMAGES, "ab") as f:
        f.write(b"\0" * 16)
    (roots["missing-file"] / "mnist" / "raw" / TEST_LABELS).unlink()
    return roots


def _sizes(data_dir: Path) -> dict[str, int]:
    return {f.name: f.stat().st_size for f in (data_dir / "mnist" / "raw").iterdir()}


DATA_CASES = [
    # (damage, file, phrases for train, phrases for data verify)
    ("flipped", TRAIN_IMAGES, ["SHA-256", "!= expected"], None),  # verify of a bit flip: test_data_cli
    ("truncated", TRAIN_LABELS, ["size {size_cut} bytes, expected {size}"], ["size {size_cut} bytes"]),
    ("empty", TEST_IMAGES, ["size 0 bytes, expected {size}"], ["size 0 bytes"]),
    ("random", TEST_LABELS, ["SHA-256", "!= expected"], ["SHA-256"]),
    ("appended", TEST_IMAGES, ["size {size_long} bytes, expected {size}"], ["size {size_long} bytes"]),
]


def _fill(phrases: list[str], data_dir: Path, file: str) -> list[str]:
    size = _sizes(data_dir)[file]
    return [p.format(size=size, size_cut=size - 100, size_long=size + 16) for p in phrases]


@pytest.mark.parametrize(("damage", "file", "phrases"), [c[:3] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_train_refuses_damaged_data(data_dir: Path, damaged: dict[str, Path], tmp_path: Path, damage: str,
                                    file: str, phrases: list[str]) -> None:
    out = tmp_path / "out"
    proc = pvision(*train_args(damaged[damage], out), cwd=tmp_path)
    path = damaged[damage] / "mnist" / "raw" / file
    assert_one_line_error(proc, str(path), *_fill(phrases, data_dir, file))
    assert not out.exists()  # checked once, in the launcher, before any worker or folder


@pytest.mark.parametrize(("damage", "file", "phrases"), [(c[0], c[1], c[3]) for c in DATA_CASES if c[3]],
                         ids=[c[0] for c in DATA_CASES if c[3]])
def test_data_verify_reports_damaged_data(data_dir: Path, damaged: dict[str, Path], tmp_path: Path, damage: str,
                                          file: str, phrases: list[str]) -> None:
    proc = pvision("data", "verify", "-d", "mnist", "--data-dir", str(damaged[damage]), cwd=tmp_path)
    path = damaged[damage] / "mnist" / "raw" / file
    assert_one_line_error(proc, "1 of 4 dataset files failed verification", str(path), *_fill(phrases, data_dir, file))
    assert "NO" in proc.stdout  # the table still shows which check failed


def test_data_verify_reports_a_missing_file(damaged: dict[str, Path], tmp_path: Path) -> None:
    proc = pvision("data", "verify", "-d", "mnist", "--data-dir", str(damaged["missing-file"]), cwd=tmp_path)
    assert_one_line_error(proc, "1 of 4", TEST_LABELS, "missing")


def test_data_info_refuses_truncated_data(damaged: dict[str, Path], tmp_path: Path) -> None:
    proc = pvision("data", "info", "mnist", "--data-dir", str(damaged["truncated"]), cwd=tmp_path)
    assert_one_line_error(proc, TRAIN_LABELS, "truncated or wrong file")


@pytest.mark.parametrize("how", ["option", "environment", "regular-file"])
def test_train_with_a_missing_data_dir(tmp_path: Path, how: str) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "no-such-datasets"
    if how == "regular-file":
        missing = tmp_path / "datasets.txt"
        missing.write_text("not a folder")
    if how == "environment":
        proc = pvision(*train_args(None, out), cwd=tmp_path, env={"PVISION_DATA_DIR": str(missing)})
    else:
        proc = pvision(*train_args(missing, out), cwd=tmp_path)
    word = "is not a directory" if how == "regular-file" else "does not exist"
    assert_one_line_error(proc, f"data directory {missing} {word}")
    assert not out.exists() and (how == "regular-file" or not missing.exists())  # nothing created or fetched


def test_data_verify_of_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "datasets.txt").write_text("not a folder")
    proc = pvision("data", "verify", "--data-dir", "datasets.txt", cwd=tmp_path)
    assert_one_line_error(proc, "data directory datasets.txt is not a directory")


def test_unknown_dataset_in_data_verify(data_dir: Path, tmp_path: Path) -> None:
    proc = pvision("data", "verify", "-d", "cifar", "--data-dir", str(data_dir), cwd=tmp_path)
    assert_one_line_error(proc, "unknown dataset 'cifar'", "mnist, fashion-mnist")


# ------------------------------------------------------------------------------- results database
def _damaged_database(root: Path, how: str) -> None:
    """A real (empty) results database, then damaged: cut short, or only its 16-byte SQLite magic kept."""
    from parallel_vision.results.store import DB_FILE, open_store

    root.mkdir()
    open_store(root, create_empty=True).close()
    db = root / DB_FILE
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] if how == "truncated" else data[:16])
    with pytest.raises(sqlite3.DatabaseError):  # really damaged, as SQLite sees it
        sqlite3.connect(db).execute("select * from sqlite_master").fetchall()


@pytest.mark.parametrize(
    ("state", "phrases"),
    [
        ("no-folder", ["no such folder"]),
        ("regular-file", ["not a folder", "results.sqlite"]),
        ("truncated", ["corrupt results database", "malformed", "pvision runs rebuild"]),
        ("magic-only", ["corrupt results database", "pvision runs rebuild"]),
    ],
    ids=["no-folder", "regular-file", "truncated-db", "magic-only-db"],
)
def test_report_of_a_bad_results_folder(tmp_path: Path, state: str, phrases: list[str]) -> None:
    """Missing / empty / garbage databases are in test_store.py; these are the other ways a ROOT is bad."""
    root = tmp_path / "bench"
    if state == "regular-file":
        root.write_text("not a folder")
    elif state in ("truncated", "magic-only"):
        _damaged_database(root, state)
    for command in (["report", str(root)], ["runs", "list", str(root)]):
        assert_one_line_error(pvision(*command, cwd=tmp_path), str(root), *phrases)
    assert not (tmp_path / "bench" / "report.html").exists()


# ------------------------------------------------------------------------------- bench options
@pytest.mark.parametrize(
    ("options", "phrases"),
    [(["--workers", "1,x"], ["--workers takes integers separated by commas", "'1,x'"]),
     (["--frameworks", "mxnet"], ["unknown framework 'mxnet'"]),
     (["--preset", "nope"], ["unknown preset 'nope'", "quick, paper, scaling"])],
    ids=["workers-list", "framework", "preset"],
)
def test_bench_refuses_bad_options(data_dir: Path, tmp_path: Path, options: list[str], phrases: list[str]) -> None:
    proc = pvision("bench", "--dry-run", "--data-dir", str(data_dir), "--out", "bench", *options, cwd=tmp_path)
    assert_one_line_error(proc, *phrases)


# ------------------------------------------------------------------------------- devices
@pytest.mark.parametrize(
    ("options", "phrase"),
    [({"device": "cuda"}, "--device cuda was requested but PyTorch sees no CUDA device"),
     ({"device": "cuda", "strategy": "ddp", "workers": 2}, "--device cuda was requested but PyTorch sees no CUDA"),
     ({"precision": "fp16"}, "fp16 needs a CUDA device")],
    ids=["cuda-single", "cuda-ddp", "fp16-on-cpu"],
)
def test_cuda_only_settings_on_a_machine_without_cuda(data_dir: Path, tmp_path: Path, options: dict,
                                                      phrase: str) -> None:
    """Checked in the engine process (it needs torch): still one line from the launcher, no traceback."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA devices")
    proc = pvision_process(*train_args(data_dir, tmp_path / "out", **options), cwd=tmp_path)
    assert_one_line_error(proc, phrase)
