"""KMNIST and CIFAR-10: download, verify, decode, cache, and every way their files can be bad.

The real files are not reachable from here, so the fixtures are small files in the exact
canonical formats (gzip'd IDX for KMNIST; for CIFAR-10 a .tar.gz with the same folder and
member names holding Python-2-style protocol-2 pickles of {b"data", b"labels", ...}), served
over a loopback HTTP server, with catalogue entries that pin the fixtures' own checksums.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cifar_format import (  # noqa: E402 - tests/ is on sys.path
    CIFAR_ARCHIVE,
    CIFAR_DIR,
    CifarFixture,
    make_cifar,
    md5,
    meta_pickle,
    py2_pickle,
    tar_gz,
)
from parallel_vision.data import (
    DATASETS,
    DatasetSpec,
    FileSpec,
    MemberSpec,
    cifar,
    dataset_info,
    fetch,
    load,
    normalize,
    verify,
)
from parallel_vision.errors import DataError

KMNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def kmnist_spec(files: dict[str, bytes], count: int, mirrors: tuple[str, ...] = ()) -> DatasetSpec:
    """The kmnist entry, test split only, pinning these files' MD5s; sizes and SHA-256 unknown, as in the catalogue."""
    real = DATASETS["kmnist"]
    test = dataclasses.replace(
        real.split("test"),
        images=FileSpec(KMNIST_FILES[0], None, md5(files[KMNIST_FILES[0]])),
        labels=FileSpec(KMNIST_FILES[1], None, md5(files[KMNIST_FILES[1]])),
        count=count,
    )
    return dataclasses.replace(real, splits=(test,), mirrors=mirrors)


KMNIST_IMAGES = np.random.default_rng(3).integers(0, 256, (5, 28, 28), dtype=np.uint8)
KMNIST_LABELS = np.array([0, 9, 4, 4, 1], dtype=np.uint8)
KMNIST_GOOD = {KMNIST_FILES[0]: idx_gz(KMNIST_IMAGES), KMNIST_FILES[1]: idx_gz(KMNIST_LABELS)}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def cifar_fixture() -> CifarFixture:
    return make_cifar()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cifar_fixture: CifarFixture) -> Iterator[str]:
    """http://127.0.0.1:<port>/ serving good/, bad/ (one byte flipped) and short/ (truncated) copies."""
    root = tmp_path_factory.mktemp("www")
    good = {**KMNIST_GOOD, CIFAR_ARCHIVE: tar_gz(cifar_fixture.members)}
    for kind in ("good", "bad", "short"):
        (root / kind).mkdir()
        for name, data in good.items():
            if kind == "bad":
                data = bytearray(data)
                data[len(data) // 2] ^= 0xFF
            elif kind == "short":
                data = data[: len(data) // 2]
            (root / kind / name).write_bytes(bytes(data))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("PVISION_CACHE_DIR", str(path))
    return path


def one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def put_archive(root: Path, archive: bytes) -> Path:
    raw = root / "cifar10" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / CIFAR_ARCHIVE).write_bytes(archive)
    return raw / CIFAR_ARCHIVE


# ------------------------------------------------------------------ catalogue
def test_catalogue_entries() -> None:
    assert list(DATASETS) == ["mnist", "fashion-mnist", "kmnist", "cifar10"]
    kmnist, cifar10 = DATASETS["kmnist"], DATASETS["cifar10"]
    assert kmnist.class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    assert (kmnist.mean, kmnist.std, kmnist.channels, kmnist.image_shape) == ((0.1918,), (0.3483,), 1, (28, 28))
    assert [s.count for s in kmnist.splits] == [60000, 10000]
    assert {f.name: f.md5 for f in kmnist.files} == {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    }
    assert all(f.size is None and f.sha256 is None and f.digest_label == "MD5" for f in kmnist.files)
    assert "http://codh.rois.ac.jp/kmnist/dataset/kmnist/" in kmnist.mirrors

    assert (cifar10.channels, cifar10.image_shape, cifar10.format) == (3, (32, 32), "cifar-python")
    assert cifar10.mean == (0.4914, 0.4822, 0.4465) and cifar10.std == (0.2470, 0.2435, 0.2616)
    assert cifar10.class_names[0] == "airplane" and cifar10.class_names[-1] == "truck"
    (archive,) = cifar10.files
    assert (archive.name, archive.size, archive.md5, archive.sha256) == (
        CIFAR_ARCHIVE, 170498071, "c58f30108f718f92721af3b95e74349a", None)
    assert cifar10.mirrors == ("https://www.cs.toronto.edu/~kriz/",)
    assert [s.count for s in cifar10.splits] == [50000, 10000]
    members = {m.name.removeprefix(CIFAR_DIR): m.md5 for s in cifar10.splits for m in s.members}
    assert members["data_batch_2"] == "d4bba439e000b95fd0a9bffe97cbabec"
    assert members["test_batch"] == "40351d587109b95175f43aff81a1287e" and len(members) == 6
    assert cifar10.meta == MemberSpec(CIFAR_DIR + "batches.meta", "5ff9c542aee3614f3951f8cda6e48888")
    assert cifar10.splits_of(archive) == "train+test"

    mnist = DATASETS["mnist"]  # full checks unchanged: size and SHA-256 known, SHA-256 decides
    assert mnist.mean == (0.1307,) and all(f.size and f.digest_name == "sha256" for f in mnist.files)
    with pytest.raises(ValueError, match="one entry per channel"):
        dataclasses.replace(cifar10, mean=(0.5,))


# ------------------------------------------------------------------ KMNIST
def test_kmnist_download_verify_load(server: str, tmp_path: Path, cache: Path) -> None:
    spec = kmnist_spec(KMNIST_GOOD, 5, mirrors=(server + "bad/", server + "short/", server + "good/"))
    downloaded = fetch(spec, tmp_path, progress=False)
    raw = tmp_path / "kmnist" / "raw"
    assert sorted(p.name for p in downloaded) == sorted(KMNIST_FILES)
    assert sorted(p.name for p in raw.iterdir()) == sorted(KMNIST_FILES)  # no temp files left
    assert all(s.ok for s in verify(spec, tmp_path))
    x, y = load(spec, "test", tmp_path, download=False)
    assert x.shape == (5, 28, 28) and x.dtype == np.uint8 and x.flags.c_contiguous
    assert y.dtype == np.int64 and y.tolist() == KMNIST_LABELS.tolist()
    np.testing.assert_array_equal(x, KMNIST_IMAGES)
    out = normalize(x, spec.mean, spec.std)
    np.testing.assert_allclose(out, (x / 255 - 0.1918) / 0.3483, rtol=1e-5, atol=1e-6)


def test_kmnist_wrong_checksum_and_truncated_download(server: str, tmp_path: Path) -> None:
    spec = kmnist_spec(KMNIST_GOOD, 5)
    with pytest.raises(DataError) as info:
        fetch(spec, tmp_path, mirrors=[server + "bad/", server + "short/"], progress=False)
    message = one_line(info)
    assert message.count("MD5") == 2 and "bad/t10k-images" in message and "short/t10k-images" in message
    assert list((tmp_path / "kmnist" / "raw").iterdir()) == []


def test_kmnist_wrong_checksum_on_disk(tmp_path: Path, cache: Path) -> None:
    spec = kmnist_spec(KMNIST_GOOD, 5)
    raw = tmp_path / "kmnist" / "raw"
    raw.mkdir(parents=True)
    for name, data in KMNIST_GOOD.items():
        (raw / name).write_bytes(data)
    damaged = bytearray(KMNIST_GOOD[KMNIST_FILES[1]])
    damaged[-3] ^= 1
    (raw / KMNIST_FILES[1]).write_bytes(bytes(damaged))
    status = {s.file: s for s in verify(spec, tmp_path)}[KMNIST_FILES[1]]
    assert not status.ok and status.size_ok and status.problem.startswith("MD5 ")
    with pytest.raises(DataError) as info:
        load(spec, "test", tmp_path, download=False)
    assert "t10k-labels-idx1-ubyte.gz: MD5 mismatch" in one_line(info)
    assert not list(cache.rglob("t10k-labels*"))


def test_kmnist_truncated_gz_that_matches_its_pin(tmp_path: Path, cache: Path) -> None:
    """Past the checksum (a catalogue pinning a truncated file): the IDX decoder still refuses it."""
    files = {**KMNIST_GOOD, KMNIST_FILES[0]: KMNIST_GOOD[KMNIST_FILES[0]][:-40]}
    spec = kmnist_spec(files, 5)
    raw = tmp_path / "kmnist" / "raw"
    raw.mkdir(parents=True)
    for name, data in files.items():
        (raw / name).write_bytes(data)
    with pytest.raises(DataError) as info:
        load(spec, "test", tmp_path, download=False)
    assert "t10k-images-idx3-ubyte.gz: truncated" in one_line(info)


# ------------------------------------------------------------------ CIFAR-10
def test_cifar_download_verify_load(server: str, tmp_path: Path, cache: Path, cifar_fixture: CifarFixture) -> None:
    archive = tar_gz(cifar_fixture.members)
    spec = cifar_fixture.spec(archive, mirrors=(server + "short/", server + "bad/", server + "good/"))
    downloaded = fetch(spec, tmp_path, progress=False)
    assert [p.name for p in downloaded] == [CIFAR_ARCHIVE]
    assert [p.name for p in (tmp_path / "cifar10" / "raw").iterdir()] == [CIFAR_ARCHIVE]
    (status,) = verify(spec, tmp_path)
    assert status.ok and status.split == "train+test"

    x, y = load(spec, "train", tmp_path, download=False)
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.uint8 and x.flags.c_contiguous
    assert y.shape == (10,) and y.dtype == np.int64
    assert x[0, 1, 2].tolist() == [10, 20, 30]  # CHW rows became HWC: R, G, B of row 1, column 2
    np.testing.assert_array_equal(x, cifar_fixture.images["train"])
    assert y.tolist() == cifar_fixture.labels["train"].tolist()
    xt, yt = load(spec, "test", tmp_path, download=False)
    assert xt.shape == (3, 32, 32, 3) and yt.tolist() == [3, 9, 0]
    np.testing.assert_array_equal(xt, cifar_fixture.images["test"])

    out = normalize(x, spec.mean, spec.std)
    expected = (x / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)

    info = dataset_info(spec, tmp_path)
    train = info.splits[0]
    assert train.images_shape == (10, 32, 32, 3)
    np.testing.assert_allclose(train.channel_mean, (x / 255.0).mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(train.channel_std, (x / 255.0).std(axis=(0, 1, 2)), rtol=1e-9)


def test_cifar_second_load_is_served_from_the_cache(
    tmp_path: Path, cache: Path, cifar_fixture: CifarFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tar_gz(cifar_fixture.members)
    spec = cifar_fixture.spec(archive)
    put_archive(tmp_path, archive)
    first = load(spec, "train", tmp_path, download=False)
    assert sorted(p.name.split(".")[0] for p in cache.rglob("*.npy")) == [
        "cifar-10-python-test-images", "cifar-10-python-test-labels",
        "cifar-10-python-train-images", "cifar-10-python-train-labels",
    ]

    def refuse(*args: object) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(cifar, "decode_archive", refuse)
    monkeypatch.setattr(cifar, "unpickle", refuse)
    monkeypatch.setattr("parallel_vision.data.cache.check_digest", refuse)
    monkeypatch.setattr("parallel_vision.data.cache.hashlib.new", refuse)
    second = load(spec, "train", tmp_path, download=False)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert second[0].flags.c_contiguous and second[0].shape == (10, 32, 32, 3)
    xt, _ = load(spec, "test", tmp_path, download=False)  # decoded with the train split, cached too
    np.testing.assert_array_equal(xt, cifar_fixture.images["test"])


def _evil_pickle(marker: Path) -> bytes:
    """A pickle that would run os.system("touch <marker>") when loaded by a plain pickle.load."""
    command = f"touch {marker}".encode()
    return b"\x80\x02cos\nsystem\nq\x00U" + bytes([len(command)]) + command + b"q\x01\x85q\x02Rq\x03."


def _bad_archive(case: str, fx: CifarFixture, tmp_path: Path) -> tuple[bytes, DatasetSpec, list[str]]:
    """(archive bytes on disk, catalogue entry, phrases the one-line error must contain)."""
    good = tar_gz(fx.members)
    if case == "corrupt-bytes":  # wrong MD5 of the whole archive
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        return bytes(data), fx.spec(good), ["cifar-10-python.tar.gz: MD5 mismatch", md5(good)[:16]]
    if case == "truncated":
        return good[:-100], fx.spec(good), [f"size {len(good) - 100} bytes, expected {len(good)}", "truncated"]
    if case == "truncated-size-unknown":  # no size pin, MD5 of the cut file pinned: the archive reader refuses it
        cut = good[: len(good) // 2]
        return cut, fx.spec(cut, known_size=False), ["cifar-10-python.tar.gz: corrupt archive"]
    if case == "member-md5":  # a consistent archive whose batch is not the canonical one
        members = {**fx.members, "data_batch_3": fx.members["data_batch_4"]}
        archive = tar_gz(members)
        return archive, fx.spec(archive, pinned=fx.members), [f"{CIFAR_DIR}data_batch_3: MD5 mismatch"]
    if case == "missing-member":
        members = {k: v for k, v in fx.members.items() if k != "data_batch_5"}
        archive = tar_gz(members)
        return archive, fx.spec(archive, pinned=fx.members), ["1 member(s) missing", f"{CIFAR_DIR}data_batch_5"]
    if case == "forbidden-global":  # even with its MD5 pinned, the unpickler refuses os.system
        members = {**fx.members, "test_batch": _evil_pickle(tmp_path / "pwned")}
        archive = tar_gz(members)
        return archive, fx.spec(archive, pinned=members), ["refused to unpickle", "os.system", "test_batch"]
    if case == "wrong-class-names":
        members = {**fx.members, "batches.meta": meta_pickle(("cat",) * 10)}
        archive = tar_gz(members)
        return archive, fx.spec(archive, pinned=members), ["batches.meta: label names", "not the catalogue's"]
    raise AssertionError(case)


BAD_ARCHIVES = ["corrupt-bytes", "truncated", "truncated-size-unknown", "member-md5", "missing-member",
                "forbidden-global", "wrong-class-names"]


@pytest.mark.parametrize("case", BAD_ARCHIVES)
def test_bad_cifar_archive_is_one_line_error(
    case: str, tmp_path: Path, cache: Path, cifar_fixture: CifarFixture
) -> None:
    archive, spec, phrases = _bad_archive(case, cifar_fixture, tmp_path)
    put_archive(tmp_path / "data", archive)
    for split in ("train", "test"):
        with pytest.raises(DataError) as info:
            load(spec, split, tmp_path / "data", download=False)
        message = one_line(info)
        for phrase in phrases:
            assert phrase in message, message
    assert not (tmp_path / "pwned").exists()  # the os.system call never ran
    assert not list(cache.rglob("*.npy"))  # nothing cached from a bad archive


def test_restricted_unpickler_allows_only_array_reconstruction(tmp_path: Path) -> None:
    rows = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for data in (py2_pickle({b"data": rows}), pickle.dumps({"data": rows}, protocol=4)):
        batch = cifar.unpickle(data, "x")
        assert isinstance(batch, dict)
        np.testing.assert_array_equal(next(iter(batch.values())), rows)
    refused = {
        "os.system": _evil_pickle(tmp_path / "pwned"),
        "builtins.eval": pickle.dumps((eval, ("1",)), protocol=4),
        "_codecs.encode": pickle.dumps(b"py3 bytes at protocol 2", protocol=2),
    }
    for name, data in refused.items():
        with pytest.raises(DataError) as info:
            cifar.unpickle(data, "member")
        assert name in one_line(info)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(DataError) as info:
        cifar.unpickle(b"\x80\x02}q\x00(U\x04data", "member")  # cut off mid-pickle
    assert "member: not a readable pickle" in one_line(info)


def test_normalize_per_channel() -> None:
    nhwc = np.full((2, 4, 4, 3), 255, dtype=np.uint8)
    out = normalize(nhwc, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 3.0, 1.0], rtol=1e-6)
    grey = np.full((2, 4, 4), 51, dtype=np.uint8)
    np.testing.assert_allclose(normalize(grey, (0.1,), (0.5,)), (0.2 - 0.1) / 0.5, rtol=1e-5)
    np.testing.assert_allclose(normalize(grey, 0.1, 0.5), (0.2 - 0.1) / 0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="3 per-channel entries"):
        normalize(grey, (0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(nhwc, None, (0.5, 0.0, 0.5))


# ------------------------------------------------------------------ command line
def test_cli_verify_of_a_corrupt_cifar_archive_is_one_stderr_line(tmp_path: Path) -> None:
    path = put_archive(tmp_path / "data", b"\x1f\x8b" + os.urandom(1000))
    env = {**os.environ, "PVISION_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "parallel_vision", "data", "verify", "-d", "cifar10",
         "--data-dir", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("pvision: error: 1 of 1 dataset files failed verification")
    assert str(path) in lines[0] and "size 1002 bytes, expected 170498071" in lines[0]


def test_cli_fetch_prints_the_sha256_of_an_md5_only_download(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from parallel_vision.cli import app

    monkeypatch.setitem(DATASETS, "kmnist", kmnist_spec(KMNIST_GOOD, 5))
    args = ["data", "fetch", "kmnist", "--data-dir", str(tmp_path), "--mirror", server + "good/"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name, data in KMNIST_GOOD.items():
        sha256 = hashlib.sha256(data).hexdigest()
        assert f"kmnist/{name}: verified by MD5 {md5(data)}; SHA-256 {sha256}" in result.output
