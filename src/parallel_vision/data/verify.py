"""Check dataset files against the catalogue: present, right size, right SHA-256.

`verify` only reports; it never downloads or writes, so it is safe on a
read-only shared directory. `check_digest` is the one place that words a
checksum failure.
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
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.present and self.size_ok and self.sha256_ok


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def check_digest(path: Path, spec: FileSpec, actual: str) -> None:
    """Raise if `actual` is not the catalogue's SHA-256 for `spec`."""
    if actual != spec.sha256:
        raise DataError(
            f"{path}: SHA-256 mismatch: expected {spec.sha256[:16]}..., got {actual[:16]}..."
            " (corrupt or replaced file; delete it and run `pvision data fetch`)"
        )


def file_status(dataset: str, split: str, path: Path, spec: FileSpec) -> FileStatus:
    """Stat, then hash only if the size is right (a wrong size already settles it)."""

    def status(present: bool, size_ok: bool, sha_ok: bool, problem: str | None) -> FileStatus:
        return FileStatus(dataset, split, spec.name, path, present, size_ok, sha_ok, problem)

    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return status(False, False, False, "missing")
    if size != spec.size:
        return status(True, False, False, f"size {size} bytes, expected {spec.size}")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        return status(True, True, False, f"unreadable ({exc.strerror or exc})")
    if actual != spec.sha256:
        return status(True, True, False, f"SHA-256 {actual[:16]}... != expected {spec.sha256[:16]}...")
    return status(True, True, True, None)


def verify(dataset: str | DatasetSpec, data_dir: str | os.PathLike[str] | None = None) -> list[FileStatus]:
    """Per-file status of one dataset; raises only if the data directory itself is unusable."""
    spec = get_dataset(dataset)
    root = resolve_data_dir(data_dir)
    require_readable_dir(root)
    raw = raw_dir(root, spec.name)
    return [
        file_status(spec.name, split.name, raw / f.name, f)
        for split in spec.splits
        for f in (split.images, split.labels)
    ]
