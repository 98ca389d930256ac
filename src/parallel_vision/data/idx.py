"""Decode IDX files (the MNIST container format) without trusting their headers.

A header is a claim, not a fact: a corrupt or hostile file can promise 2^31
images. The payload is therefore read into a buffer that grows only with the
bytes actually present, so a lying header fails as "truncated" long before it
can make us allocate gigabytes.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from parallel_vision.errors import DataError

#: IDX element type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_NDIM = 4
#: No sensible IDX payload is bigger (MNIST train images are 47 MB); larger claims are corruption.
MAX_PAYLOAD_BYTES = 1 << 30
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_FIRST_BUFFER = 1 << 20


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a native-endian array."""
    try:
        with open(path, "rb") as f:
            return _decode(f, str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an IDX file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode IDX bytes already in memory (e.g. just checksummed); `source` names them in errors."""
    return _decode(io.BytesIO(data), source)


def _decode(f: BinaryIO, source: str) -> np.ndarray:
    compressed = f.read(2) == _GZIP_MAGIC
    f.seek(0)
    stream: BinaryIO = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
    try:
        dtype, shape = _read_header(stream, source)
        payload = _read_payload(stream, math.prod(shape) * dtype.itemsize, source)
    except EOFError:
        raise DataError(f"{source}: truncated gzip stream") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{source}: corrupt gzip stream ({exc})") from None
    array = payload.view(dtype).reshape(shape)
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def _read_header(stream: BinaryIO, source: str) -> tuple[np.dtype, tuple[int, ...]]:
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{source}: truncated header ({len(magic)} of 4 magic bytes)")
    if magic[:2] != b"\0\0":
        raise DataError(f"{source}: not an IDX file (magic {magic.hex()} does not start with 0000)")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{source}: unknown IDX element type code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{source}: unsupported number of dimensions {ndim} (expected 1..{MAX_NDIM})")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{source}: truncated header ({len(raw_dims)} of {4 * ndim} dimension bytes)")
    shape = struct.unpack(f">{ndim}I", raw_dims)
    # Zero-length dimensions make the product 0; the others must still describe a sane array.
    nbytes = math.prod(max(d, 1) for d in shape) * IDX_DTYPES[code].itemsize
    if nbytes > MAX_PAYLOAD_BYTES:
        raise DataError(
            f"{source}: header claims shape {shape} ({nbytes} bytes), over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    return IDX_DTYPES[code], shape


def _read_payload(stream: BinaryIO, expected: int, source: str) -> np.ndarray:
    """Read exactly `expected` bytes, then demand EOF (which also makes gzip check its CRC)."""
    buf = np.empty(min(expected, _FIRST_BUFFER), dtype=np.uint8)
    filled = 0
    while filled < expected:
        if filled == buf.size:  # grow with the data actually read, never to the header's claim at once
            grown = np.empty(min(expected, 2 * buf.size), dtype=np.uint8)
            grown[:filled] = buf
            buf = grown
        n = stream.readinto(memoryview(buf)[filled : min(buf.size, filled + _CHUNK)])
        if not n:
            raise DataError(
                f"{source}: truncated: header promises {expected} data bytes, only {filled} present"
            )
        filled += n
    if stream.read(1):
        raise DataError(f"{source}: trailing data after the {expected} bytes the header describes")
    return buf
