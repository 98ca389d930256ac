"""`pvision data ...` as a user runs it: a real subprocess, exit codes, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def pvision(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PVISION_CACHE_DIR": str(cache), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "parallel_vision", *args], env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pvision: error:"), result.stderr
    for word in words:
        assert word in lines[0]


def test_verify_shared_datasets(data_dir: Path, tmp_path: Path) -> None:
    result = pvision("data", "verify", "--data-dir", str(data_dir), cache=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mnist" in result.stdout and "fashion-mnist" in result.stdout
    assert result.stdout.count(" ok ") == 8


def test_verify_corrupt_directory_fails_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "data" / "mnist" / "raw"
    shutil.copytree(data_dir / "mnist" / "raw", raw)
    target = raw / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))
    result = pvision("data", "verify", "-d", "mnist", "--data-dir", str(tmp_path / "data"), cache=tmp_path)
    assert_one_line_error(result, "1 of 4", "t10k-labels-idx1-ubyte.gz")
    assert "SHA-256" in result.stdout  # the table still shows what is wrong


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["data", "verify", "--data-dir", "{tmp}/missing"], ["missing does not exist"]),
        (["data", "info", "mnist", "--data-dir", "{tmp}"], ["missing from", "pvision data fetch mnist"]),
        (["data", "info", "cifar", "--data-dir", "{tmp}"], ["unknown dataset 'cifar'", "fashion-mnist"]),
        (["data", "fetch", "mnist", "--data-dir", "{tmp}", "--mirror", "http://127.0.0.1:1/"], ["tried"]),
    ],
    ids=["missing-dir", "info-no-files", "unknown-dataset", "fetch-unreachable"],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    result = pvision(*(a.format(tmp=tmp_path) for a in args), cache=tmp_path / "cache")
    assert_one_line_error(result, *words)
    assert not list(tmp_path.rglob(".*.tmp")), "a temp file of the failed download is left behind"


def test_info_prints_shapes_counts_and_stats(data_dir: Path, tmp_path: Path) -> None:
    result = pvision("data", "info", "mnist", "--data-dir", str(data_dir), cache=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("60000 x 28 x 28", "10000 x 28 x 28", "uint8", "int64", "0.1307", "33.318", "5923", "1135"):
        assert text in result.stdout


def test_fetch_on_complete_directory_downloads_nothing(data_dir: Path, tmp_path: Path) -> None:
    result = pvision("data", "fetch", "fashion-mnist", "--data-dir", str(data_dir), cache=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 downloaded" in result.stdout
