"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_IDX_CODES = {
    np.dtype("uint8"): 0x08,
    np.dtype("int8"): 0x09,
    np.dtype("int16"): 0x0B,
    np.dtype("int32"): 0x0C,
    np.dtype("float32"): 0x0D,
    np.dtype("float64"): 0x0E,
}


def pytest_configure(config: pytest.Config) -> None:
    """A relative $PVISION_DATA_DIR / $PVISION_CACHE_DIR means pytest's working directory, as the CLI's
    entry point would read it; tests start CLIs in other folders, so hand them absolute paths."""
    from parallel_vision.data.paths import absolutize_environment

    absolutize_environment()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The verified offline datasets: $PVISION_DATA_DIR, else ../shared/datasets beside the repo."""
    env = os.environ.get("PVISION_DATA_DIR")
    path = Path(env).absolute() if env else Path(__file__).parents[2] / "shared" / "datasets"
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (set PVISION_DATA_DIR)")
    return path


def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every test process of this session sees: under pytest-xdist each worker has its own base
    temp, and their parent is the session's; without xdist, the base temp itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """trained(**config) -> RunResult: one real `launch.run` of `config` on the shared datasets, trained
    once per session and reused by every test that asks for the same configuration (tests/shared_runs.py
    names the ones several files share). Callers only read the run's folder, never change it.

    Runs live in a folder all test processes share, one per configuration behind a file lock: under
    pytest-xdist (the README's command) the first worker to ask trains it and the others wait for it and
    read the same run, never train it twice.

    trained.together(config, ...) -> [RunResult, ...]: the same for several configurations, the ones not
    trained yet all at once (each in its own engine process, started from a thread): most of a small run is
    starting Python and its framework, single-threaded, which then overlaps on the cores instead of leaving
    one idle. Only for runs whose assertions read no timing."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from filelock import FileLock, Timeout

    from parallel_vision.config import RunConfig
    from parallel_vision.launch import run
    from parallel_vision.results.run_result import RunResult

    cache: dict[str, Any] = {}
    root = shared_tmp(tmp_path_factory) / "trained-runs"
    root.mkdir(exist_ok=True)

    def key(config: dict[str, Any]) -> str:
        return json.dumps(config, sort_keys=True)

    def folder(config: dict[str, Any]) -> Path:
        return root / hashlib.sha1(key(config).encode()).hexdigest()[:16]

    def lock(config: dict[str, Any]) -> FileLock:
        return FileLock(str(folder(config)) + ".lock")

    def launch(config: dict[str, Any]) -> Any:
        """Train into the configuration's folder (its lock held by the caller); `done` marks a finished run,
        so a run that failed half-way is trained again from scratch by the next test asking for it."""
        out = folder(config) / "run"
        if (folder(config) / "done").exists():
            return RunResult.load(out)
        shutil.rmtree(folder(config), ignore_errors=True)
        folder(config).mkdir()
        result = run(RunConfig(**config, data_dir=str(data_dir), out_dir=str(out)), progress=False)
        assert result.out_dir == out
        (folder(config) / "done").touch()
        return result

    def train(**config: Any) -> Any:
        if key(config) not in cache:  # a failed run is not cached: the next test asking for it fails on its own
            with lock(config):
                cache[key(config)] = launch(config)
        return cache[key(config)]

    def together(*configs: dict[str, Any]) -> list[Any]:
        todo = list({key(c): c for c in configs if key(c) not in cache}.values())
        held = []
        for config in todo:  # the ones another test process is training now are waited for by train() below
            try:
                held.append((config, lock(config).acquire(timeout=0)))
            except Timeout:
                pass
        try:
            with ThreadPoolExecutor(max(1, len(held))) as pool:
                futures = [pool.submit(launch, config) for config, _ in held]
                for (config, _), future in zip(held, futures, strict=True):
                    try:
                        cache[key(config)] = future.result()
                    except Exception:  # noqa: BLE001 - not cached: train() below runs it again, alone, and fails there
                        pass
        finally:
            for _, proxy in held:
                proxy.lock.release()
        return [train(**config) for config in configs]

    train.together = together  # type: ignore[attr-defined]
    return train


def _idx_bytes(array: np.ndarray) -> bytes:
    """Serialise `array` as an IDX file (big-endian), the format MNIST ships in."""
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def write_idx() -> Callable[..., Path]:
    """write_idx(path, array, gz=False) -> path: a small IDX file to read back or corrupt."""

    def write(path: Path, array: np.ndarray, gz: bool = False) -> Path:
        data = _idx_bytes(np.asarray(array))
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    return write


#: The slowest test files, slowest first (`--durations`, 2026-12-07). pytest-xdist (the README's command) hands
#: whole files to its two processes in collection order, so these go first and the session ends on short files
#: in both processes, not on one long file in one of them while the other idles. A stale list only costs balance.
SLOWEST_FILES = (
    "test_multinode.py", "test_explain_keras.py", "test_elastic.py", "test_tf_resume.py", "test_explain_compare.py",
    "test_resume.py", "test_accuracy_contract.py", "test_workloads_e2e.py", "test_jax_engine.py",
    "test_torch_engine.py", "test_disk_full.py", "test_levers.py", "test_bench_e2e.py", "test_signals.py",
    "test_report_sharding.py", "test_projection.py", "test_explain.py", "test_tf_engine.py",
    "test_jax_model_parallel.py", "test_predict.py", "test_projection_sharding.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first (SLOWEST_FILES); every other file, and the tests inside each file, keep their order."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An empty collection is a failure, never a quiet green: CI must run real tests."""
    if session.testscollected == 0 and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
