"""Property-based fuzzing of the IDX reader: only DataError may escape, and a success is exactly the header.

Thousands of generated files per run: valid IDX files of every element type with random
shapes, then mutated (bit flips, truncation, appended / inserted / deleted / overwritten
bytes, a rewritten header), gzip-wrapped before or after the damage (one member or two,
stored or deflated), and plain random bytes. For each one `parse_idx` (and, for a sample,
`read_idx` on a real file) must either raise `DataError` with a one-line message naming
the source, or return a native-endian array whose shape is the header's dimensions and
whose bytes are exactly the payload, with nothing left over.

Reproducible in CI: derandomized, no example database. fuzz/idx_fuzz.py is the Atheris
harness for long offline runs of the same property (see fuzz/README.md).
"""

from __future__ import annotations

import gzip
import io
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from parallel_vision.data.idx import IDX_DTYPES, MAX_NDIM, parse_idx, read_idx
from parallel_vision.errors import DataError

SETTINGS = {"deadline": None, "derandomize": True, "database": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
GZIP_MAGIC = b"\x1f\x8b"


def check_decode(data: bytes, decode=None, source: str = "fuzz-input") -> np.ndarray | None:  # type: ignore[no-untyped-def]
    """Decode `data`; return the array, or None after a proper DataError. Anything else propagates."""
    try:
        array = decode() if decode else parse_idx(data, source)
    except DataError as exc:
        message = str(exc)
        event("DataError: " + re.sub(r"0x[0-9A-F]+|\d+", "N", message.replace(source, "").split("(")[0].strip(": ")))
        assert source in message, message
        assert "\n" not in message and message.strip() == message, repr(message)
        return None
    # A success must be exactly what the (decompressed) bytes say, read independently here.
    raw = gzip.GzipFile(fileobj=io.BytesIO(data)).read() if data[:2] == GZIP_MAGIC else data
    assert raw[:2] == b"\0\0" and raw[2] in IDX_DTYPES and 1 <= raw[3] <= MAX_NDIM
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    assert isinstance(array, np.ndarray)
    assert array.shape == dims and array.size == math.prod(dims)
    assert array.dtype == dtype.newbyteorder("=") and array.dtype.isnative
    assert len(body) == array.size * dtype.itemsize  # no byte missing, none ignored
    assert array.astype(dtype).tobytes() == body
    event("decoded")
    return array


# ------------------------------------------------------------------------------- strategies
@st.composite
def idx_files(draw: st.DrawFn) -> tuple[bytes, tuple[int, ...], int]:
    """A valid IDX file (bytes, shape, type code): random type, 1..4 dims, random payload."""
    code = draw(st.sampled_from(sorted(IDX_DTYPES)))
    ndim = draw(st.integers(1, MAX_NDIM))
    shape = (draw(st.integers(0, 40)), *draw(st.lists(st.integers(0, 7), min_size=ndim - 1, max_size=ndim - 1)))
    size = math.prod(shape) * IDX_DTYPES[code].itemsize
    if draw(st.booleans()):
        payload = draw(st.binary(min_size=size, max_size=size)) if size <= 2048 else bytes(size)
    else:
        payload = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).bytes(size)
    header = bytes([0, 0, code, ndim]) + struct.pack(f">{ndim}I", *shape)
    return header + payload, shape, code


def _position(draw: st.DrawFn, data: bytes, bias_header: bool = True) -> int:
    """A byte index, often in the header or the gzip framing where decisions are made."""
    if not data:
        return 0
    if bias_header and draw(st.booleans()):
        return draw(st.integers(0, min(len(data), 24) - 1))
    return draw(st.integers(0, len(data) - 1))


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> tuple[str, bytes]:
    """One damage to `data`: its name and the damaged bytes."""
    kind = draw(st.sampled_from(["none", "flip", "truncate", "append", "insert", "delete", "overwrite",
                                 "dims", "header-byte", "splice"]))
    buf = bytearray(data)
    if kind == "flip" and buf:
        for _ in range(draw(st.integers(1, 4))):
            buf[_position(draw, bytes(buf))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del buf[draw(st.integers(0, max(0, len(buf) - 1))):]
    elif kind == "append":
        buf += draw(st.one_of(st.binary(min_size=1, max_size=64), st.just(b"\0" * 8), st.just(data[:32])))
    elif kind == "insert":
        at = _position(draw, data)
        buf[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete" and buf:
        at = _position(draw, data)
        del buf[at : at + draw(st.integers(1, 16))]
    elif kind == "overwrite" and buf:
        at = _position(draw, data)
        chunk = draw(st.binary(min_size=1, max_size=16))
        buf[at : at + len(chunk)] = chunk
    elif kind == "dims" and len(buf) >= 8:  # a header that lies about its sizes, plausibly or wildly
        ndim = min(buf[3], (len(buf) - 4) // 4)
        for i in range(ndim):
            if draw(st.booleans()):
                dim = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1), st.sampled_from([2**31, 60000])))
                buf[4 + 4 * i : 8 + 4 * i] = struct.pack(">I", dim)
    elif kind == "header-byte" and len(buf) >= 4:
        buf[draw(st.integers(0, 3))] = draw(st.integers(0, 255))
    elif kind == "splice":  # a chunk of the file copied elsewhere in it
        a, b = sorted((_position(draw, data, False), _position(draw, data, False)))
        at = _position(draw, data)
        buf[at:at] = data[a : b + 1]
    return kind, bytes(buf)


def _gzip(data: bytes, draw: st.DrawFn) -> bytes:
    level = draw(st.sampled_from([0, 1, 6, 9]))  # 0: stored blocks, so damage reaches the CRC, not inflate
    if len(data) > 1 and draw(st.booleans()):  # two members: gzip says the content is their concatenation
        cut = draw(st.integers(1, len(data) - 1))
        return gzip.compress(data[:cut], level, mtime=0) + gzip.compress(data[cut:], level, mtime=0)
    return gzip.compress(data, level, mtime=0)


@st.composite
def fuzz_cases(draw: st.DrawFn) -> tuple[bytes, str, str, bytes]:
    """(input bytes, wrapping, damage, the valid file it came from)."""
    original, _, _ = draw(idx_files())
    wrap = draw(st.sampled_from(["raw", "gzip-then-damage", "damage-then-gzip"]))
    if wrap == "raw":
        kind, data = draw(mutated(original))
    elif wrap == "gzip-then-damage":
        kind, data = draw(mutated(_gzip(original, draw)))
    else:
        kind, damaged = draw(mutated(original))
        data = _gzip(damaged, draw)
    return data, wrap, kind, original


# ------------------------------------------------------------------------------- properties
@settings(max_examples=3000, **SETTINGS)
@given(case=fuzz_cases())
def test_generated_and_mutated_files_raise_only_data_error(case: tuple[bytes, str, str, bytes]) -> None:
    data, _, kind, original = case
    array = check_decode(data)
    if kind == "none":  # undamaged, raw or gzip-wrapped (one member or two): must decode to the original
        assert array is not None
        assert check_decode(original) is not None


@settings(max_examples=1200, **SETTINGS)
@given(data=st.one_of(
    st.binary(max_size=256),
    st.binary(max_size=256).map(lambda b: GZIP_MAGIC + b),  # gzip magic, then anything
    st.binary(max_size=256).map(lambda b: b"\x1f\x8b\x08" + b),  # ... with the deflate method byte
    st.tuples(st.sampled_from(sorted(IDX_DTYPES)), st.integers(0, 255), st.binary(max_size=256)).map(
        lambda t: bytes([0, 0, t[0], t[1]]) + t[2]),  # a plausible magic, then anything
    st.binary(max_size=256).map(lambda b: gzip.compress(b, mtime=0)),  # valid gzip of random content
))
@example(data=b"")
@example(data=GZIP_MAGIC)
@example(data=bytes([0, 0, 0x08, 1, 0, 0, 0, 0]))  # a valid empty vector
@example(data=bytes([0, 0, 0x0E, 4]) + b"\xff" * 16)  # float64, 4 dims of 2^32-1
def test_random_bytes_raise_only_data_error(data: bytes) -> None:
    check_decode(data)


def numpy_size_overflow(dims: tuple[int, ...] | list[int], itemsize: int) -> bool:
    """A zero-size shape whose other dimensions overflow numpy's size: the known bug below."""
    nonzero = math.prod(d for d in dims if d) * itemsize
    return 0 in dims and nonzero >= 2**63


_DIM = st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1),
                 st.sampled_from([28, 60000, 2**16, 2**31 - 1, 2**31, 2**32 - 1]))


@settings(max_examples=800, **SETTINGS)
@given(code=st.sampled_from(sorted(IDX_DTYPES)), dims=st.lists(_DIM, min_size=1, max_size=MAX_NDIM),
       body=st.binary(max_size=64), gz=st.booleans())
def test_lying_headers_raise_only_data_error(code: int, dims: list[int], body: bytes, gz: bool) -> None:
    """Any claimed shape (zero, plausible, 2^32-1, over the size cap) with a few real bytes behind it."""
    data = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body
    check_decode(gzip.compress(data, mtime=0) if gz else data)


@pytest.mark.parametrize("dims", [(0, 2**32 - 1, 2**32 - 1), (2**32 - 1, 2**32 - 1, 0, 1)], ids=["3d", "4d"])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_zero_size_header_with_overflowing_dimensions(dims: tuple[int, ...], gz: bool) -> None:
    data = bytes([0, 0, 0x09, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    assert numpy_size_overflow(dims, 1)
    with pytest.raises(DataError, match="over the .*-byte limit"):
        parse_idx(gzip.compress(data, mtime=0) if gz else data, "fuzz-input")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idx-fuzz")


@settings(max_examples=400, **SETTINGS)
@given(case=fuzz_cases())
def test_read_idx_on_files_raises_only_data_error(scratch: Path, case: tuple[bytes, str, str, bytes]) -> None:
    data, _, kind, _ = case
    path = scratch / "case.idx.gz"
    path.write_bytes(data)
    array = check_decode(data, decode=lambda: read_idx(path), source=str(path))
    assert array is not None or kind != "none"
