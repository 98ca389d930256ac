"""The one way this package writes a file: readers see the old file or the complete new one, never half.

Every output goes through here (result.json, checkpoints and their summaries, model.pt and
model.keras, predictions.npy, TensorFlow backups, config.json, the report and its figures,
CSV exports, downloaded datasets, cached arrays): a temp file beside the destination
(`.NAME.XXXXXXXX.tmp`, mode 0644, so a report or a shared dataset stays readable by others),
fsync, rename over the destination, fsync of the folder. Any failure deletes the temp file and
leaves the destination as it was.

A full disk or quota (ENOSPC, EDQUOT) becomes a one-line `DiskFullError` that names the file,
roughly how much space it needs and what is kept, e.g. `no space left on device writing
runs/a/checkpoint.pt (~11 MB); the last good checkpoint (after epoch 1) is kept; continue with
--resume once space is freed` (exit code 2), instead of `OSError: [Errno 28]` and a traceback.

Framework-free, imports nothing of the package but `errors`: data, results, engines and report
may all use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from parallel_vision.errors import DiskFullError

TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o644
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How libraries that report an errno only in their message text (TensorFlow, h5py) say it.
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, as an OSError or in the message of another library's error."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc)
    return any(marker in text for marker in _DISK_FULL_TEXT)


def _is_quota(exc: BaseException | None) -> bool:
    if isinstance(exc, DiskFullError):
        return exc.quota
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno == errno.EDQUOT
    return exc is not None and "Disk quota exceeded" in str(exc)


def human_size(n: int) -> str:
    """11_200_000 -> '11 MB', 9_912_422 -> '9.9 MB', 300 -> '300 B' (powers of 1000)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def disk_full(
    path: str | os.PathLike[str], size: int | None, kept: str, cause: BaseException | None = None
) -> DiskFullError:
    """The one-line error: what was being written, where, about how big, and what survived.

    `cause` (the OSError, a library's error, or a DiskFullError being re-worded) tells a quota
    from a full filesystem.
    """
    quota = _is_quota(cause)
    what = "disk quota exceeded" if quota else "no space left on device"
    need = f" (~{human_size(size)})" if size is not None else ""
    return DiskFullError(f"{what} writing {path}{need}; {kept}", path=str(path), size=size, quota=quota)


def _default_kept(dest: Path, existed: bool) -> str:
    return f"the previous {dest.name} is unchanged" if existed else "no partial file was left"


@contextlib.contextmanager
def atomic_write(
    dest: str | os.PathLike[str], *, size: int | None = None, kept: str | None = None
) -> Iterator[BinaryIO]:
    """Yield a temp file beside `dest`; on a clean exit fsync it and rename it over `dest`.

    Any exception inside the block (a failed checksum, Ctrl-C, a full disk) deletes the temp
    file and leaves `dest` untouched; a full disk is re-raised as `DiskFullError` naming `dest`,
    `size` (the bytes it needs, when the caller knows) and `kept` (default: the previous file
    is unchanged / no partial file was left).
    """
    dest = Path(dest)
    existed = dest.exists()
    tmp: str | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TEMP_SUFFIX, dir=dest.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)  # mkstemp's 0600 would hide reports and shared data from others
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        tmp = None
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise disk_full(dest, size, kept or _default_kept(dest, existed), exc) from None
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes, *, kept: str | None = None) -> None:
    """Write `payload` to `path` atomically (see `atomic_write`); creates missing parent folders."""
    with atomic_write(path, size=len(payload), kept=kept) as f:
        f.write(payload)


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable; best effort where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
