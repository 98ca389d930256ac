"""Check dataset files against the catalogue: present, right size, right digest.

The digest is the SHA-256 where the catalogue knows it, else the MD5 (KMNIST,
CIFAR-10); a size the catalogue does not know is not checked. `verify` only
reports; it never downloads or writes, so it is safe on a read-only shared
directory. `check_digest` is the one place that words a checksum failure.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from parallel_vision.data.catalog import DatasetSpec, FileSpec, get_dataset
from parallel_vision.data.paths import raw_dir, require_readable_dir, resolve_data_dir
from parallel_vision.errors import DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileStatus:
    """The state of one dataset file; `problem` says in a few words what is wrong, if anything."""

    dataset: str
    split: str
    file: str
    path: Path
    present: bool
    size_ok: bool
    sha256_ok: bool
    """The catalogue's digest matches: the SHA-256 where known, else the MD5 (the name predates MD5-only files)."""
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.present and self.size_ok and self.sha256_ok


def sha256_file(path: Path) -> str:
    return hash_file(path, "sha256")


def hash_file(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes, read in chunks (`algorithm`: a hashlib name such as md5)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def check_digest(path: Path, spec: FileSpec, actual: str) -> None:
    """Raise if `actual` is not the catalogue's digest for `spec` (`spec.digest_name` of the bytes)."""
    if actual != spec.digest:
        raise DataError(
            f"{path}: {spec.digest_label} mismatch: expected {spec.digest[:16]}..., got {actual[:16]}..."
            " (corrupt or replaced file; delete it and run `pvision data fetch`)"
        )


def file_status(dataset: str, split: str, path: Path, spec: FileSpec) -> FileStatus:
    """Stat, then hash only if the size is right (a wrong size already settles it; an unknown one is not checked)."""

    def status(present: bool, size_ok: bool, sha_ok: bool, problem: str | None) -> FileStatus:
        return FileStatus(dataset=dataset, split=split, file=spec.name, path=path, present=present, size_ok=size_ok,
                          sha256_ok=sha_ok, problem=problem)

    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return status(False, False, False, "missing")
    if spec.size is not None and size != spec.size:
        return status(True, False, False, f"size {size} bytes, expected {spec.size}")
    try:
        actual = hash_file(path, spec.digest_name)
    except OSError as exc:
        return status(True, True, False, f"unreadable ({exc.strerror or exc})")
    if actual != spec.digest:
        return status(
            True, True, False, f"{spec.digest_label} {actual[:16]}... != expected {spec.digest[:16]}..."
        )
    return status(True, True, True, None)


def verify(dataset: str | DatasetSpec, data_dir: str | os.PathLike[str] | None = None) -> list[FileStatus]:
    """Per-file status of one dataset; raises only if the data directory itself is unusable."""
    spec = get_dataset(dataset)
    root = resolve_data_dir(data_dir)
    require_readable_dir(root)
    return check_files(spec, raw_dir(root, spec.name))


def check_files(spec: DatasetSpec, raw: Path) -> list[FileStatus]:
    """Per-file status of every file of `spec` in its raw folder `raw` (each file stat'ed and hashed once)."""
    return [file_status(spec.name, spec.splits_of(f), raw / f.name, f) for f in spec.files]
