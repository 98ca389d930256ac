"""fetch(): local HTTP mirrors, one serving corrupt files, prove verify-before-place and fallback."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from parallel_vision.data import DATASETS, fetch, load, verify
from parallel_vision.errors import DataError

MNIST = DATASETS["mnist"]
NAMES = sorted(f.name for f in MNIST.files)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """http://127.0.0.1:<port>/ serving good/ (the real MNIST files) and bad/ (one byte flipped each)."""
    root = tmp_path_factory.mktemp("www")
    for kind in ("good", "bad"):
        shutil.copytree(data_dir / "mnist" / "raw", root / kind)
    for path in (root / "bad").iterdir():
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.chmod(0o644)
        path.write_bytes(bytes(data))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_corrupt_mirror_falls_through_to_good_one(server: str, tmp_path: Path) -> None:
    mirrors = [server + "bad/", server + "missing/", server + "good"]  # no trailing slash on the last
    downloaded = fetch("mnist", tmp_path, mirrors=mirrors, progress=False)
    raw = tmp_path / "mnist" / "raw"
    assert sorted(p.name for p in downloaded) == NAMES
    assert listing(raw) == NAMES  # no temp files left behind
    assert all(s.ok for s in verify("mnist", tmp_path))
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in raw.iterdir())


def test_all_mirrors_bad_lists_what_was_tried_and_leaves_nothing(server: str, tmp_path: Path) -> None:
    mirrors = [server + "bad/", server + "missing/", "http://127.0.0.1:1/"]
    with pytest.raises(DataError) as info:
        fetch("mnist", tmp_path, mirrors=mirrors, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "SHA-256" in message and "HTTP 404" in message and "127.0.0.1:1/" in message
    assert listing(tmp_path / "mnist" / "raw") == []


def test_damaged_file_is_replaced_only_by_a_verified_one(server: str, tmp_path: Path) -> None:
    raw = tmp_path / "mnist" / "raw"
    raw.mkdir(parents=True)
    damaged = raw / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"damaged")
    with pytest.raises(DataError):
        fetch("mnist", tmp_path, mirrors=[server + "bad/"], progress=False)
    assert damaged.read_bytes() == b"damaged"
    fetch("mnist", tmp_path, mirrors=[server + "good/"], progress=False)
    assert all(s.ok for s in verify("mnist", tmp_path))


def test_complete_directory_is_not_touched(server: str, tmp_path: Path) -> None:
    fetch("mnist", tmp_path, mirrors=[server + "good/"], progress=False)
    raw = tmp_path / "mnist" / "raw"
    before = {p.name: p.stat().st_ino for p in raw.iterdir()}
    assert fetch("mnist", tmp_path, mirrors=["http://127.0.0.1:1/"], progress=False) == []
    assert {p.name: p.stat().st_ino for p in raw.iterdir()} == before


def test_load_downloads_missing_files(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVISION_CACHE_DIR", str(tmp_path / "cache"))
    spec = dataclasses.replace(MNIST, mirrors=(server + "bad/", server + "good/"))
    x, y = load(spec, "test", tmp_path / "fresh")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert listing(tmp_path / "fresh" / "mnist" / "raw") == NAMES
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing from"):
        load(spec, "test", tmp_path / "empty", download=False)


def test_readiness_checks_each_file_once_and_fetches_only_the_missing_one(
        server: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from parallel_vision.data.ready import VerifiedDataset, ensure_dataset

    raw = tmp_path / "mnist" / "raw"
    shutil.copytree(data_dir / "mnist" / "raw", raw)
    (raw / NAMES[0]).unlink()
    verify_module = sys.modules["parallel_vision.data.verify"]  # the package's `verify` is the function
    hashed: list[str] = []
    real = verify_module.hash_file

    def counting(path: Path, algorithm: str) -> str:
        hashed.append(path.name)
        return real(path, algorithm)

    monkeypatch.setattr(verify_module, "hash_file", counting)
    monkeypatch.setenv("PVISION_MIRRORS", server + "good/")
    ready = ensure_dataset("mnist", tmp_path)
    assert ready == VerifiedDataset(MNIST, tmp_path) and ready.raw == raw
    assert sorted(hashed) == NAMES[1:]  # the present files once each; the fetched one while it streamed
    assert listing(raw) == NAMES and all(s.ok for s in verify("mnist", tmp_path))
