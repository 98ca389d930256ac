"""Atheris (libFuzzer) harness for the IDX reader, for long offline runs.

The property is the one tests/test_fuzz_idx.py checks in CI: `parse_idx` either raises
`DataError` with a one-line message naming the source, or returns a native-endian array
whose shape is the header's dimensions and whose bytes are exactly the payload. Any other
exception (or a failed check) is a crash; libFuzzer's `-timeout` turns a hang into one.

The first input byte picks how the rest reaches the reader, so the fuzzer can work on IDX
headers inside gzip without having to forge deflate streams and CRCs itself:

    0: the bytes as they are (raw IDX, or a gzip file from the seeds)
    1: gzip-compressed (deflate, level 1)
    2: gzip-compressed with stored blocks (level 0: damage reaches the CRC check, not inflate)

Usage (see fuzz/README.md):

    python fuzz/idx_fuzz.py --write-seeds fuzz/seeds
    python fuzz/idx_fuzz.py -max_total_time=600 -timeout=10 -rss_limit_mb=2048 fuzz/corpus fuzz/seeds
    python fuzz/idx_fuzz.py crash-<sha1>          # replay one input

Set PVISION_FUZZ_SKIP_KNOWN=1 to step over inputs that only reproduce a bug already tracked
by a strict xfail in tests/test_fuzz_idx.py, so that a long run can look for new ones.
"""

from __future__ import annotations

import io
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np  # imported before instrumentation: numpy itself is not the target

MODES = 3
SKIP_KNOWN = os.environ.get("PVISION_FUZZ_SKIP_KNOWN", "") not in ("", "0")


#: Predicates `(input bytes) -> bool` for inputs that only reproduce a bug already tracked by a strict
#: xfail in tests/test_fuzz_idx.py; skipped under PVISION_FUZZ_SKIP_KNOWN=1. Empty: none open.
#: (The first one, a zero-size header whose other dimensions overflow numpy, was fixed in ba4293f.)
KNOWN_BUGS: tuple = ()


def known_bug(data: bytes) -> bool:
    return any(predicate(data) for predicate in KNOWN_BUGS)


def _header(code: int, *dims: int) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def write_seeds(folder: Path) -> list[Path]:
    """A few small, valid (and two slightly wrong) inputs for libFuzzer to start from."""
    import gzip

    rng = np.random.default_rng(0)
    seeds = {
        "raw-u8-3x2x2": b"\0" + _header(0x08, 3, 2, 2) + bytes(range(12)),
        "gzip-u8-labels": b"\1" + _header(0x08, 10) + bytes(range(10)),
        "stored-i16-2x3": b"\2" + _header(0x0B, 2, 3) + rng.bytes(12),
        "gzfile-i32-4": b"\0" + gzip.compress(_header(0x0C, 4) + rng.bytes(16), mtime=0),
        "raw-f32-2x2": b"\0" + _header(0x0D, 2, 2) + np.array([1.5, -0.0, np.inf, np.nan], ">f4").tobytes(),
        "raw-f64-1x1x1x2": b"\0" + _header(0x0E, 1, 1, 1, 2) + rng.bytes(16),
        "raw-i8-empty": b"\0" + _header(0x09, 0, 28, 28),
        "raw-u8-trailing": b"\0" + _header(0x08, 2) + b"\1\2\3",
        "raw-u8-truncated": b"\0" + _header(0x08, 2, 28, 28) + bytes(100),
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in seeds.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        for path in write_seeds(Path(sys.argv[2])):
            print(path)
        return

    import atheris

    with atheris.instrument_imports(include=["parallel_vision", "gzip", "_compression"]):
        import gzip

        from parallel_vision.data.idx import IDX_DTYPES, MAX_NDIM, parse_idx
        from parallel_vision.errors import DataError

    source = "fuzz-input"

    def check(data: bytes) -> None:
        if SKIP_KNOWN and known_bug(data):
            return
        try:
            array = parse_idx(data, source)
        except DataError as exc:
            message = str(exc)
            if source not in message or "\n" in message or message.strip() != message:
                raise AssertionError(f"badly worded DataError: {message!r}") from None
            return
        raw = gzip.GzipFile(fileobj=io.BytesIO(data)).read() if data[:2] == b"\x1f\x8b" else data
        assert raw[:2] == b"\0\0" and raw[2] in IDX_DTYPES and 1 <= raw[3] <= MAX_NDIM, raw[:4]
        dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
        dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        body = raw[4 + 4 * ndim :]
        assert isinstance(array, np.ndarray)
        assert array.shape == dims and array.size == math.prod(dims), (array.shape, dims)
        assert array.dtype == dtype.newbyteorder("=") and array.dtype.isnative, array.dtype
        assert len(body) == array.size * dtype.itemsize, (len(body), array.size, dtype)
        assert array.astype(dtype).tobytes() == body

    def test_one_input(data: bytes) -> None:
        if not data:
            check(data)
            return
        mode, rest = data[0] % MODES, data[1:]
        if mode == 1:
            rest = gzip.compress(rest, compresslevel=1, mtime=0)
        elif mode == 2:
            rest = gzip.compress(rest, compresslevel=0, mtime=0)
        check(rest)

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
