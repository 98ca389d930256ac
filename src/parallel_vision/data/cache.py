"""Verify and decode a raw file once; afterwards load its decoded array from a .npy.

Hashing and gunzipping MNIST costs about a second on every start (and DDP starts
several workers at once); `np.load` of the cached array takes milliseconds. A
cache entry is keyed by the raw file's identity (real path, device, inode, size,
mtime_ns, ctime_ns) and its expected SHA-256, so a replaced or rewritten file
misses the cache and is verified again. Entries are written atomically, so
concurrent loaders at worst decode twice and never read half an entry; an
unwritable cache only costs speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from parallel_vision.atomic import atomic_write
from parallel_vision.data import idx
from parallel_vision.data.catalog import FileSpec
from parallel_vision.data.paths import CACHE_DIR_ENV
from parallel_vision.data.verify import check_digest
from parallel_vision.errors import DataError, DiskFullError

#: Bump when the decoded representation changes, to orphan old entries.
CACHE_VERSION = 1


def read_verified(path: Path, spec: FileSpec, cache_dir: Path) -> np.ndarray:
    """The decoded contents of `path`, whose bytes are known to hash to `spec.sha256`."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        before = os.fstat(f.fileno())
        if before.st_size != spec.size:
            raise DataError(
                f"{path}: size {before.st_size} bytes, expected {spec.size} (truncated or wrong file)"
            )
        entry = _entry(cache_dir, path, spec, before)
        if (cached := _load(entry)) is not None:
            return cached
        data = f.read(spec.size + 1)
        if len(data) != spec.size:
            raise DataError(f"{path}: changed size while being read")
        check_digest(path, spec, hashlib.sha256(data).hexdigest())
        array = idx.parse_idx(data, str(path))
        unchanged = _identity(os.fstat(f.fileno())) == _identity(before)
    if unchanged:
        _store(entry, array)
    return array


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _entry(cache_dir: Path, path: Path, spec: FileSpec, st: os.stat_result) -> Path:
    """<stem>.<which file>.<which version of it>.npy: the middle part lets old versions be pruned."""
    stem = spec.name.removesuffix(".gz")
    where = _digest(os.path.realpath(path))
    version = _digest(CACHE_VERSION, spec.sha256, *_identity(st))
    return cache_dir / f"{stem}.{where}.{version}.npy"


def _load(entry: Path) -> np.ndarray | None:
    try:
        return np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # absent, or damaged: a miss either way, and rewritten
        return None


def _store(entry: Path, array: np.ndarray) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(entry, size=array.nbytes + 128) as f:
            np.save(f, array, allow_pickle=False)
    except (OSError, DiskFullError) as exc:  # a cache that cannot be written costs speed, not the run
        reason = str(exc).split(";")[0] if isinstance(exc, DiskFullError) else (exc.strerror or exc)
        warnings.warn(
            f"array cache {entry.parent} is not writable ({reason}); every load will"
            f" re-verify and decode (set {CACHE_DIR_ENV} to a writable directory)",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    stale_prefix = entry.name.rsplit(".", 2)[0] + "."
    for old in entry.parent.glob(f"{stale_prefix}*.npy"):
        if old != entry:
            with contextlib.suppress(OSError):
                old.unlink()
