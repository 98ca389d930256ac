"""read_idx: round trips, and every way an IDX file can be corrupt or lie about its size."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from parallel_vision.data import parse_idx, read_idx
from parallel_vision.errors import DataError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def header(code: int, *dims: int) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def assert_data_error(path: Path, *words: str) -> DataError:
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message
    return info.value


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path: Path, write_idx, dtype: str, gz: bool) -> None:
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(5, 3, 4)) * 100).astype(dtype)
    back = read_idx(write_idx(tmp_path / "a.idx", array, gz=gz))
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (1, 2, 3, 4), (0, 28, 28)])
def test_round_trip_shapes(tmp_path: Path, write_idx, shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", array)), array)


def test_gzip_is_detected_by_magic_not_extension(tmp_path: Path, write_idx) -> None:
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain.idx", array, gz=True)), array)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "raw.gz", array, gz=False)), array)


def test_parse_idx_reads_bytes_in_memory() -> None:
    data = gzip.compress(header(0x08, 2, 2) + bytes([1, 2, 3, 4]))
    np.testing.assert_array_equal(parse_idx(data, "mem"), [[1, 2], [3, 4]])


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_payload_shorter_than_header_is_truncated(tmp_path: Path, gz: bool) -> None:
    data = header(0x08, 10, 28, 28) + bytes(9 * 784)
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if gz else data)
    assert_data_error(path, "truncated", str(10 * 784))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_payload_longer_than_header_is_trailing_data(tmp_path: Path, gz: bool) -> None:
    data = header(0x08, 10) + bytes(11)
    path = tmp_path / "long"
    path.write_bytes(gzip.compress(data) if gz else data)
    assert_data_error(path, "trailing data")


@pytest.mark.parametrize(
    ("first_bytes", "words"),
    [
        (b"\x01\x00\x08\x01", ["not an IDX file"]),
        (b"\x00\x07\x08\x01", ["not an IDX file"]),
        (b"\x00\x00\x0a\x01", ["element type code 0x0A"]),
        (b"\x00\x00\x08\x00", ["number of dimensions 0"]),
        (b"\x00\x00\x08\x05", ["number of dimensions 5"]),
    ],
    ids=["magic-byte-0", "magic-byte-1", "type-code", "ndim-0", "ndim-5"],
)
def test_bad_magic_is_refused(tmp_path: Path, first_bytes: bytes, words: list[str]) -> None:
    path = tmp_path / "bad"
    path.write_bytes(first_bytes + struct.pack(">5I", 1, 1, 1, 1, 1) + bytes(1))
    assert_data_error(path, *words)


@pytest.mark.parametrize(
    "content", [b"", b"\x00\x00", header(0x08, 3, 4)[:-2]], ids=["empty", "magic", "dims"]
)
def test_truncated_header(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "hdr"
    path.write_bytes(content)
    assert_data_error(path, "truncated header")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    compressed = gzip.compress(header(0x08, 1000) + np.random.default_rng(0).bytes(1000))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    assert_data_error(path, "gzip")
    path.write_bytes(compressed[:-4])  # all data present, only the size trailer missing
    assert_data_error(path, "gzip")


def test_gzip_crc_mismatch(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(header(0x08, 100) + bytes(range(100))))
    compressed[-8] ^= 0xFF  # first byte of the CRC-32 trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(compressed))
    assert_data_error(path, "corrupt gzip")


def test_corrupt_deflate_data(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(header(0x08, 5000) + np.random.default_rng(1).bytes(5000)))
    compressed[len(compressed) // 2] ^= 0xFF
    path = tmp_path / "flip.gz"
    path.write_bytes(bytes(compressed))
    assert_data_error(path, "gzip")


def test_garbage_after_gzip_member(tmp_path: Path) -> None:
    path = tmp_path / "tail.gz"
    path.write_bytes(gzip.compress(header(0x08, 4) + bytes(4)) + b"garbage")
    assert_data_error(path, "gzip")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_header_claiming_2_31_images_fails_fast_without_allocating(tmp_path: Path, gz: bool) -> None:
    data = header(0x08, 2**31, 28, 28) + bytes(784)
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(data) if gz else data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        assert_data_error(path, "limit")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 0.5
    assert peak < 1 << 20


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_plausible_lie_is_caught_with_memory_bounded_by_real_data(tmp_path: Path, gz: bool) -> None:
    """784 MB claimed (under the absolute cap), 7.8 kB present: fail as truncated, using ~no memory."""
    data = header(0x08, 1_000_000, 28, 28) + bytes(10 * 784)
    path = tmp_path / "lie"
    path.write_bytes(gzip.compress(data) if gz else data)
    tracemalloc.start()
    try:
        assert_data_error(path, "truncated")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert_data_error(tmp_path / "nope.gz", "no such file")
    assert_data_error(tmp_path, "directory")
