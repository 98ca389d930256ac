"""Relative folders are the user's, resolved once at the entry; an offline machine fails fast.

Runs the real CLI from a working directory of its own with *relative* paths in the
environment and on the command line, and checks that the engine (a child process)
read and wrote exactly the folders the user meant, and that result.json records them
as absolute paths. Then the main job with no reachable mirror and an empty cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bad_input import _SCRUBBED, assert_one_line_error


def _cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in (*_SCRUBBED, "PVISION_CACHE_DIR")}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "parallel_vision", *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_relative_paths_mean_the_users_working_directory(data_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    relative_data = os.path.relpath(data_dir, work)
    assert not os.path.isabs(relative_data)
    env = {"PVISION_DATA_DIR": relative_data, "PVISION_CACHE_DIR": "arrays", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = _cli("train", "-f", "torch", "--epochs", "1", "--batch-size", "256", "--limit-train", "512",
                "--limit-test", "200", "--threads", "1", "--no-tensorboard", "--out", "runs/one", "--quiet",
                cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((work / "runs" / "one" / "result.json").read_text())
    assert os.path.isabs(result["config"]["data_dir"])
    assert Path(result["config"]["data_dir"]).resolve() == data_dir.resolve()
    assert result["config"]["out_dir"] == str(work / "runs" / "one")
    # The decoded-array cache went where the relative $PVISION_CACHE_DIR pointed, not elsewhere.
    assert list((work / "arrays" / "mnist").glob("*.npy"))
    assert not (tmp_path / "xdg").exists()


@pytest.mark.slow
def test_bench_root_and_data_dir_options_are_resolved_at_the_entry(data_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {"PVISION_CACHE_DIR": str(tmp_path / "arrays"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = _cli("bench", "--frameworks", "torch", "--workers", "1", "--no-reference", "--epochs", "1",
                "--batch-size", "256", "--limit-train", "512", "--limit-test", "200", "--wait-idle", "0",
                "--no-report", "--data-dir", os.path.relpath(data_dir, work), "--out", "bench", cwd=work, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = list((work / "bench" / "runs").glob("*/result.json"))
    assert len(results) == 1
    config = json.loads(results[0].read_text())["config"]
    assert Path(config["data_dir"]).resolve() == data_dir.resolve() and os.path.isabs(config["data_dir"])
    assert config["out_dir"].startswith(str(work / "bench" / "runs"))
    manifest = json.loads((work / "bench" / "bench.json").read_text())
    assert manifest["idle_policy"] == {"mode": "bounded", "wait_s": 0.0}


@pytest.mark.parametrize("command", [
    ["bench", "--preset", "quick"],
    ["train", "--epochs", "1"],
    ["eda", "--dataset", "mnist"],
], ids=["bench-quick", "train", "eda"])
def test_offline_with_an_empty_cache_fails_fast_in_one_line(tmp_path: Path, command: list[str]) -> None:
    """No mirror reachable, nothing cached: one line naming the dataset, the folder and the fixes, in seconds."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PVISION_CACHE_DIR": str(tmp_path / "cache" / "arrays"),
           "PVISION_MIRRORS": "http://127.0.0.1:1/", "COLUMNS": "200"}
    t0 = time.monotonic()
    proc = _cli(*command, cwd=tmp_path, env=env, timeout=120)
    seconds = time.monotonic() - t0
    raw = tmp_path / "cache" / "parallel-vision" / "mnist" / "raw"
    line = assert_one_line_error(proc, "mnist is not available", str(raw), "pvision data fetch mnist",
                                 "--data-dir", "PVISION_DATA_DIR", "pvision data verify")
    assert "127.0.0.1:1" in line
    assert seconds < 30, seconds
    assert "planned" not in proc.stdout and not (tmp_path / "bench-quick").exists()  # nothing was started
    assert not list(tmp_path.rglob("*.part"))
