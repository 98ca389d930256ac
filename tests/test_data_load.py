"""load(): real datasets, validation of what checksums cannot prove, and the decoded-array cache."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from parallel_vision.data import DATASETS, DatasetSpec, FileSpec, dataset_info, idx, load, normalize, verify
from parallel_vision.errors import DataError

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One array cache for the real-data tests, so each full split is decoded once per module."""
    return tmp_path_factory.mktemp("arrays")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty array cache (set through the environment, as users would)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PVISION_CACHE_DIR", str(path))
    return path


def copy_dataset(data_dir: Path, dest: Path, name: str = "mnist", split: str = "test") -> Path:
    """A writable copy of one split's raw files; returns the raw folder."""
    raw = dest / name / "raw"
    raw.mkdir(parents=True)
    part = DATASETS[name].split(split)
    for f in (part.images, part.labels):
        shutil.copy(data_dir / name / "raw" / f.name, raw / f.name)
    return raw


def flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def file_spec(path: Path) -> FileSpec:
    data = path.read_bytes()
    return FileSpec(path.name, len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())


def tiny_dataset(root: Path, write_idx, images: np.ndarray, labels: np.ndarray) -> DatasetSpec:
    """A catalogue entry, checksums included, for small hand-made files: checks past the checksum."""
    raw = root / "tiny" / "raw"
    raw.mkdir(parents=True)
    test = dataclasses.replace(
        DATASETS["mnist"].split("test"),
        images=file_spec(write_idx(raw / "t10k-images-idx3-ubyte.gz", images, gz=True)),
        labels=file_spec(write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels, gz=True)),
        count=len(images),
    )
    return dataclasses.replace(DATASETS["mnist"], name="tiny", splits=(test,), mirrors=())


# ------------------------------------------------------------------ real data
def test_mnist_both_splits(data_dir: Path, shared_cache: Path) -> None:
    before = sorted(p.name for p in (data_dir / "mnist" / "raw").iterdir())
    x, y = load("mnist", "train", data_dir, download=False, cache_dir=shared_cache)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and x.flags.c_contiguous
    assert y.shape == (60000,) and y.dtype == np.int64
    assert x.mean() == pytest.approx(33.318, abs=0.01)
    x, y = load("mnist", "test", data_dir, download=False, cache_dir=shared_cache)
    assert x.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == MNIST_TEST_COUNTS
    assert sorted(p.name for p in (data_dir / "mnist" / "raw").iterdir()) == before  # read-only dir untouched


def test_fashion_mnist(data_dir: Path, shared_cache: Path) -> None:
    x, y = load("fashion-mnist", "test", data_dir, download=False, cache_dir=shared_cache)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10
    x, y = load("fashion-mnist", "train", data_dir, download=False, cache_dir=shared_cache)
    assert x.shape == (60000, 28, 28) and np.bincount(y).tolist() == [6000] * 10


def test_warm_load_is_fast(data_dir: Path, shared_cache: Path) -> None:
    load("mnist", "train", data_dir, cache_dir=shared_cache)
    start = time.perf_counter()
    load("mnist", "train", data_dir, cache_dir=shared_cache)
    assert time.perf_counter() - start < 0.5


def test_dataset_info(data_dir: Path, shared_cache: Path) -> None:
    info = dataset_info("mnist", data_dir, cache_dir=shared_cache)
    train, test = info.splits
    assert train.images_shape == (60000, 28, 28) and train.images_dtype == "uint8"
    assert list(test.class_counts) == MNIST_TEST_COUNTS
    assert train.pixel_mean == pytest.approx(0.1307, abs=1e-4)
    assert train.pixel_std == pytest.approx(0.3081, abs=1e-4)


def test_verify_reports_every_file(data_dir: Path) -> None:
    statuses = verify("mnist", data_dir)
    assert [s.file for s in statuses] == [f.name for f in DATASETS["mnist"].files]
    assert all(s.ok and s.problem is None for s in statuses)


def test_verify_names_each_problem(data_dir: Path, tmp_path: Path) -> None:
    raw = copy_dataset(data_dir, tmp_path)
    flip_byte(raw / "t10k-images-idx3-ubyte.gz")
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"short")
    by_file = {s.file: s for s in verify("mnist", tmp_path)}
    assert by_file["t10k-images-idx3-ubyte.gz"].size_ok and not by_file["t10k-images-idx3-ubyte.gz"].sha256_ok
    assert "size 5 bytes" in by_file["t10k-labels-idx1-ubyte.gz"].problem
    assert by_file["train-images-idx3-ubyte.gz"].problem == "missing"
    assert not any(s.ok for s in by_file.values())


# ---------------------------------------------------------------- validation
def test_checksum_mismatch_names_file_and_digests(data_dir: Path, tmp_path: Path, cache: Path) -> None:
    raw = copy_dataset(data_dir, tmp_path)
    flip_byte(raw / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError) as info:
        load("mnist", "test", tmp_path, download=False)
    message = str(info.value)
    expected = DATASETS["mnist"].split("test").images.sha256
    assert "t10k-images-idx3-ubyte.gz" in message and "SHA-256" in message and expected[:16] in message
    assert "\n" not in message
    assert not list(cache.rglob("t10k-images*"))  # nothing cached from a bad file


def test_wrong_size_is_refused_before_hashing(data_dir: Path, tmp_path: Path, cache: Path) -> None:
    raw = copy_dataset(data_dir, tmp_path)
    with open(raw / "t10k-labels-idx1-ubyte.gz", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: size 4543 bytes, expected 4542"):
        load("mnist", "test", tmp_path, download=False)


def test_labels_outside_classes(tmp_path: Path, write_idx, cache: Path) -> None:
    spec = tiny_dataset(tmp_path, write_idx, np.zeros((3, 28, 28), np.uint8), np.array([1, 10, 2], np.uint8))
    with pytest.raises(DataError, match=r"1 label\(s\) outside 0..9 \(first: 10 at index 1\)"):
        load(spec, "test", tmp_path, download=False)


def test_image_label_count_mismatch(tmp_path: Path, write_idx, cache: Path) -> None:
    spec = tiny_dataset(tmp_path, write_idx, np.zeros((3, 28, 28), np.uint8), np.array([1, 2], np.uint8))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load(spec, "test", tmp_path, download=False)


def test_images_of_wrong_shape(tmp_path: Path, write_idx, cache: Path) -> None:
    spec = tiny_dataset(tmp_path, write_idx, np.zeros((2, 28, 27), np.uint8), np.array([1, 2], np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load(spec, "test", tmp_path, download=False)


def test_tiny_valid_dataset_loads(tmp_path: Path, write_idx, cache: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28)
    spec = tiny_dataset(tmp_path, write_idx, images, np.array([9, 0], np.uint8))
    x, y = load(spec, "test", tmp_path, download=False)
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == [9, 0] and y.dtype == np.int64


def test_missing_directory_and_files(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(DataError, match=f"data directory {tmp_path / 'nope'} does not exist"):
        load("mnist", "test", tmp_path / "nope", download=False)
    with pytest.raises(DataError, match=f"data directory {tmp_path / 'nope'} does not exist"):
        verify("mnist", tmp_path / "nope")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz missing from"):
        load("mnist", "test", tmp_path, download=False)
    with pytest.raises(DataError, match="unknown split"):
        load("mnist", "validation", tmp_path)
    assert list(tmp_path.iterdir()) == []  # a refused load creates nothing


def test_normalize() -> None:
    images = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    out = normalize(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 1], [0.2, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(normalize(images, 0.5, 0.25), (images / 255 - 0.5) / 0.25, rtol=1e-5)
    with pytest.raises(TypeError, match="already normalised"):
        normalize(out)
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(images, 0.1, 0.0)


# --------------------------------------------------------------------- cache
def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = idx.parse_idx

    def counting(data: bytes, source: str) -> np.ndarray:
        calls.append(Path(source).name)
        return real(data, source)

    monkeypatch.setattr(idx, "parse_idx", counting)
    return calls


def test_second_load_neither_hashes_nor_decompresses(
    data_dir: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load("mnist", "test", data_dir)
    cached = sorted(p.name.split(".")[0] for p in cache.rglob("*.npy"))
    assert cached == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

    def refuse(*args: object) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(idx, "parse_idx", refuse)
    monkeypatch.setattr("parallel_vision.data.cache.check_digest", refuse)
    second = load("mnist", "test", data_dir)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_changed_raw_file_invalidates_cache(
    data_dir: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = copy_dataset(data_dir, tmp_path)
    images = raw / "t10k-images-idx3-ubyte.gz"
    load("mnist", "test", tmp_path)
    calls = _count_decodes(monkeypatch)

    st = images.stat()
    os.utime(images, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    load("mnist", "test", tmp_path)
    assert calls == ["t10k-images-idx3-ubyte.gz"]  # re-verified and decoded; labels still cached
    assert len(list(cache.rglob("t10k-images*.npy"))) == 1  # the stale entry was pruned

    replacement = tmp_path / "replacement"
    shutil.copy(images, replacement)
    flip_byte(replacement)
    os.replace(replacement, images)  # new inode, same size
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load("mnist", "test", tmp_path)


def test_unwritable_cache_still_loads(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PVISION_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="not writable"):
        x, _ = load("mnist", "test", data_dir)
    assert x.shape == (10000, 28, 28)


def test_damaged_cache_entry_is_rebuilt(data_dir: Path, cache: Path) -> None:
    load("mnist", "test", data_dir)
    (entry,) = cache.rglob("t10k-images*.npy")
    entry.write_bytes(b"garbage")
    x, _ = load("mnist", "test", data_dir)
    assert x.shape == (10000, 28, 28)
    assert np.load(entry).shape == (10000, 28, 28)


def test_two_processes_loading_at_once(data_dir: Path, cache: Path) -> None:
    """DDP workers start together on an empty cache: both must succeed and agree."""
    code = (
        "import hashlib; from parallel_vision.data import load;"
        f"x, y = load('mnist', 'test', {str(data_dir)!r});"
        "print(hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest())"
    )
    env = {**os.environ, "PVISION_CACHE_DIR": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode() for _, err in outputs]
    assert outputs[0][0] == outputs[1][0]
    files = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert len(files) == 2 and all(name.endswith(".npy") for name in files)
