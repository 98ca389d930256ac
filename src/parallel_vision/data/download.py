"""Download missing or damaged dataset files from mirrors, verified before they land.

Each file is streamed into a temp file beside its destination while being hashed;
only a file with the catalogue's exact size and digest (SHA-256 where known, else
MD5; a size the catalogue does not know is only capped) is renamed into place.
A mirror that fails (unreachable, HTTP error, wrong bytes) just hands over to the
next one; if all fail, one line says which dataset is missing where, what was tried,
and the ways to provide it offline.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from parallel_vision.atomic import atomic_write
from parallel_vision.data.catalog import DatasetSpec, FileSpec, get_dataset
from parallel_vision.data.paths import raw_dir, resolve_data_dir
from parallel_vision.data.verify import file_status
from parallel_vision.errors import DataError
from parallel_vision.version import __version__

#: Seconds without a byte (or to connect) before a mirror counts as down: three dead
#: mirrors then cost at most half a minute, not minutes, on an offline machine.
TIMEOUT_S = 10.0
MIRRORS_ENV = "PVISION_MIRRORS"
_CHUNK = 1 << 16
#: A download whose size the catalogue does not know is refused past this (a mirror streaming forever).
MAX_UNSIZED_BYTES = 1 << 30
# Some mirrors refuse urllib's default agent.
_HEADERS = {"User-Agent": f"parallel-vision/{__version__}"}


class _BadMirror(Exception):
    """This mirror did not deliver the right bytes; try the next one."""


# ValueError: a malformed mirror URL. Local write errors (other OSErrors) are deliberately absent.
_MIRROR_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    ValueError,
    _BadMirror,
)


def fetch(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Make every file of `dataset` present and verified; return the paths it downloaded.

    Files that already verify are left alone, so this never writes to a complete
    (possibly read-only) directory. `mirrors` overrides the catalogue's list.
    """
    spec = get_dataset(dataset)
    raw = raw_dir(resolve_data_dir(data_dir), spec.name)
    todo = [f for f in spec.files if not file_status(spec.name, spec.splits_of(f), raw / f.name, f).ok]
    return download(spec, raw, todo, mirrors=mirrors, progress=progress)


def download(
    spec: DatasetSpec,
    raw: Path,
    files: Sequence[FileSpec],
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download `files` of `spec` (already known to be missing or damaged) into the raw folder `raw`,
    each verified before it lands; return their paths. The caller has looked the catalogue up and checked
    what is there, so nothing is resolved or hashed twice."""
    if not files:
        return []
    urls = tuple(mirrors) if mirrors else (mirrors_from_environment(spec.name) or spec.mirrors)
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create data directory {raw}: {exc.strerror or exc}") from None
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (progress and console.is_terminal),  # no bar debris in logs or captured stderr
    ) as bar:
        for f in files:
            tried = _download(f, raw / f.name, urls, bar, bar.add_task(f"{spec.name}/{f.name}", total=f.size))
            if tried:
                raise DataError(unavailable_message(spec.name, raw, f.name, tried))
    return [raw / f.name for f in files]


def mirrors_from_environment(dataset: str) -> tuple[str, ...]:
    """$PVISION_MIRRORS: comma-separated base URLs used instead of the catalogue's (an internal
    artifact store, a proxy); `{dataset}` in a URL is replaced by the dataset's name."""
    value = os.environ.get(MIRRORS_ENV, "")
    return tuple(u.strip().replace("{dataset}", dataset) for u in value.split(",") if u.strip())


def unavailable_message(dataset: str, raw: Path, missing: str, tried: Sequence[str]) -> str:
    """One line: what is missing where, why no mirror helped, and every way to fix it offline."""
    root = raw.parent.parent
    return (
        f"{dataset} is not available: {missing} is missing from {raw} and no mirror delivered it"
        f" (tried: {'; '.join(tried)}). Fix: run `pvision data fetch {dataset}` where the internet is reachable;"
        f" or pass --data-dir DIR (or set PVISION_DATA_DIR=DIR) for a folder holding {dataset}/raw/*.gz;"
        f" or copy the dataset's .gz files into {raw}/ — then check with `pvision data verify --data-dir {root}`"
    )


def _download(spec: FileSpec, dest: Path, urls: Sequence[str], bar: Progress, task: TaskID) -> list[str]:
    """Try each mirror in turn; return [] on success, else each URL tried and why it failed."""
    tried: list[str] = []
    for base in urls:
        url = base if base.endswith("/") else base + "/"
        url += spec.name
        bar.reset(task)
        try:
            with atomic_write(dest, size=spec.size) as out:
                _stream(url, out, spec, bar, task)
            return []
        except _MIRROR_ERRORS as exc:
            tried.append(f"{url} ({_reason(exc)})")
        except OSError as exc:  # not the mirror's fault: we cannot write here
            raise DataError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return tried


def _stream(url: str, out: BinaryIO, spec: FileSpec, bar: Progress, task: TaskID) -> None:
    """Copy `url` into `out`, refusing anything but exactly the catalogue's bytes."""
    digest = hashlib.new(spec.digest_name, usedforsecurity=False)
    limit = spec.size if spec.size is not None else MAX_UNSIZED_BYTES
    size = 0
    with urllib.request.urlopen(urllib.request.Request(url, headers=_HEADERS), timeout=TIMEOUT_S) as resp:
        while chunk := resp.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _BadMirror(f"more than the {'expected' if spec.size is not None else 'maximum'} {limit} bytes")
            digest.update(chunk)
            out.write(chunk)
            bar.advance(task, len(chunk))
    if spec.size is not None and size != spec.size:
        raise _BadMirror(f"got {size} bytes, expected {spec.size}")
    if (actual := digest.hexdigest()) != spec.digest:
        raise _BadMirror(f"{spec.digest_label} {actual[:16]}... != expected {spec.digest[:16]}...")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
