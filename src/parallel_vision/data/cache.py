"""Verify and decode a raw file once; afterwards load its decoded arrays from .npy files.

Hashing and gunzipping MNIST costs about a second on every start (and DDP starts
several workers at once); hashing, gunzipping and unpickling the 170 MB CIFAR-10
archive several seconds; `np.load` of the cached arrays takes milliseconds. A
cache entry is keyed by the raw file's identity (real path, device, inode, size,
mtime_ns, ctime_ns) and its expected digest (the SHA-256 where the catalogue knows
it, else the MD5), so a replaced or rewritten file misses the cache and is
verified again. One raw file may decode to several named arrays (an archive:
train images, train labels, ...), each its own entry. Entries are written atomically, so
concurrent loaders at worst decode twice and never read half an entry; an
unwritable cache only costs speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
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


#: decode(bytes, source) -> {part name: array}; `source` names the file in errors.
Decoder = Callable[[bytes, str], Mapping[str, np.ndarray]]


def read_verified(path: Path, spec: FileSpec, cache_dir: Path) -> np.ndarray:
    """The decoded contents of IDX file `path`, whose bytes are known to hash to `spec.digest`."""
    return read_decoded(path, spec, cache_dir, ("",), lambda data, source: {"": idx.parse_idx(data, source)})[""]


def read_decoded(
    path: Path, spec: FileSpec, cache_dir: Path, parts: Sequence[str], decode: Decoder
) -> dict[str, np.ndarray]:
    """The arrays `parts` of `decode(bytes of path)`, from the cache when this very file was decoded before.

    On a miss, the bytes are size-checked (when the size is known) and digest-checked before
    `decode` sees them, and every array `decode` returns is cached, not only `parts`.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        before = os.fstat(f.fileno())
        if spec.size is not None and before.st_size != spec.size:
            raise DataError(
                f"{path}: size {before.st_size} bytes, expected {spec.size} (truncated or wrong file)"
            )
        cached = {part: _load(_entry(cache_dir, path, spec, before, part)) for part in parts}
        hits = {part: array for part, array in cached.items() if array is not None}
        if len(hits) == len(parts):
            return hits
        data = f.read(before.st_size + 1)
        if len(data) != before.st_size:
            raise DataError(f"{path}: changed size while being read")
        check_digest(path, spec, hashlib.new(spec.digest_name, data, usedforsecurity=False).hexdigest())
        decoded = dict(decode(data, str(path)))
        del data
        unchanged = _identity(os.fstat(f.fileno())) == _identity(before)
    if unchanged:
        for part, array in decoded.items():
            _store(_entry(cache_dir, path, spec, before, part), array)
    return {part: decoded[part] for part in parts}


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _entry(cache_dir: Path, path: Path, spec: FileSpec, st: os.stat_result, part: str = "") -> Path:
    """<stem>.<which file>.<which version of it>.npy: the middle part lets old versions be pruned.

    The stem is the file's name without .gz (and .tar), plus `-<part>` for one array of several.
    """
    stem = spec.name.removesuffix(".gz")
    if part:
        stem = f"{stem.removesuffix('.tar')}-{part}"
    where = _digest(os.path.realpath(path))
    version = _digest(CACHE_VERSION, spec.digest, *_identity(st))
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
