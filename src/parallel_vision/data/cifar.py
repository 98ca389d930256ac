"""Decode the CIFAR-10 python archive without trusting it: pinned member MD5s, a restricted unpickler.

The archive (`cifar-10-python.tar.gz`, already size- and MD5-checked by the caller) holds
`cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`: Python 2 pickles of dicts.
A batch's b"data" is a uint8 array of shape (n, 3072), each row 1024 red, then 1024 green,
then 1024 blue values (CHW); b"labels" a list of ints.

Unpickling runs whatever the bytes ask for, so a plain `pickle.load` of a replaced member
would be code execution. Defences, in order: the archive's digest (caller), each member's
pinned MD5 (here, before unpickling), and an unpickler whose `find_class` resolves only
numpy's array reconstruction (`_reconstruct`, `ndarray`, `dtype`) and refuses every other
global, e.g. os.system, with a one-line DataError. The tar is only streamed, never
extracted, so member paths cannot escape anywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zlib
from collections.abc import Mapping

import numpy as np

from parallel_vision.data.catalog import DatasetSpec, MemberSpec
from parallel_vision.errors import DataError

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

#: The only globals a CIFAR batch pickle needs (the real files name numpy.core.multiarray;
#: numpy >= 2 writes numpy._core.multiarray). No builtins are needed: dicts, lists, ints and
#: byte strings are pickle opcodes, not globals.
ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
#: Real members are 31 MB (a batch) or 158 bytes (the meta); a bigger claim is corruption.
MAX_MEMBER_BYTES = 1 << 26


class _Refused(Exception):
    """A pickle asked for a global outside ALLOWED_GLOBALS."""


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only ALLOWED_GLOBALS (bytes stay bytes: encoding="bytes")."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")

    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(_clip(f"{module}.{name}")) from None


def unpickle(data: bytes, source: str) -> object:
    """Restricted-unpickle `data`; any failure is a one-line DataError naming `source`."""
    try:
        return RestrictedUnpickler(data).load()
    except _Refused as exc:
        raise DataError(
            f"{source}: refused to unpickle: it asks for the Python global {exc}, which CIFAR batches"
            " never need (a tampered or foreign file; only numpy array reconstruction is allowed)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - malformed pickles raise anything; all mean "not a batch"
        raise DataError(f"{source}: not a readable pickle ({type(exc).__name__}: {_clip(str(exc))})") from None


def decode_archive(data: bytes, source: str, spec: DatasetSpec) -> dict[str, np.ndarray]:
    """{"<split>-images": uint8 (N, H, W, C) C-contiguous, "<split>-labels": int64 (N,)} for every split.

    `data` are the bytes of the archive (digest already checked); `source` names it in errors.
    """
    wanted = {m.name: m for s in spec.splits for m in s.members}
    if spec.meta is not None:
        wanted[spec.meta.name] = spec.meta
    members = _read_members(data, source, wanted)
    if spec.meta is not None:
        _check_meta(members[spec.meta.name], f"{source}:{spec.meta.name}", spec)
    out: dict[str, np.ndarray] = {}
    for split in spec.splits:
        images, labels = [], []
        for m in split.members:
            x, y = _decode_batch(members[m.name], f"{source}:{m.name}", spec)
            images.append(x)
            labels.append(y)
        h, w = spec.image_shape
        flat = np.concatenate(images) if images else np.empty((0, spec.channels * h * w), np.uint8)
        # Rows are CHW; the package's images are NHWC.
        out[f"{split.name}-images"] = np.ascontiguousarray(
            flat.reshape(-1, spec.channels, h, w).transpose(0, 2, 3, 1)
        )
        out[f"{split.name}-labels"] = np.concatenate(labels) if labels else np.empty(0, np.int64)
    return out


def _read_members(data: bytes, source: str, wanted: Mapping[str, MemberSpec]) -> dict[str, bytes]:
    """Stream the tar.gz once, keeping the wanted regular-file members, each MD5-checked."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if name not in wanted:
                    continue
                where = f"{source}:{name}"
                if not info.isfile():
                    raise DataError(f"{where}: not a regular file in the archive")
                if name in found:
                    raise DataError(f"{where}: appears twice in the archive")
                if info.size > MAX_MEMBER_BYTES:
                    raise DataError(f"{where}: claims {info.size} bytes, over the {MAX_MEMBER_BYTES}-byte limit")
                f = tar.extractfile(info)
                if f is None:  # pragma: no cover - isfile() members always have contents
                    raise DataError(f"{where}: no contents")
                content = f.read()
                if len(content) != info.size:
                    raise DataError(f"{where}: truncated ({len(content)} of {info.size} bytes)")
                actual = hashlib.md5(content, usedforsecurity=False).hexdigest()
                if actual != wanted[name].md5:
                    raise DataError(
                        f"{where}: MD5 mismatch: expected {wanted[name].md5[:16]}..., got {actual[:16]}..."
                        " (an archive that is not the canonical one)"
                    )
                found[name] = content
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DataError(f"{source}: corrupt archive ({type(exc).__name__}: {_clip(str(exc))})") from None
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataError(
            f"{source}: {len(missing)} member(s) missing from the archive (first: {missing[0]})"
        )
    return found


def _decode_batch(content: bytes, source: str, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (n, C*H*W) rows, int64 (n,) labels) of one batch pickle, shapes and types checked."""
    batch = _as_dict(unpickle(content, source), source)
    data, labels = batch.get("data"), batch.get("labels")
    h, w = spec.image_shape
    row = spec.channels * h * w
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{source}: b'data' must be a uint8 array of shape (n, {row}), got {what}")
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError):  # pragma: no cover - ragged nonsense
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(data):
        raise DataError(
            f"{source}: b'labels' must be {len(data)} integers (one per row of b'data'),"
            f" got {type(labels).__name__} of {len(y) if y.ndim == 1 else 'shape ' + str(y.shape)}"
        )
    return data, y.astype(np.int64)


def _check_meta(content: bytes, source: str, spec: DatasetSpec) -> None:
    """batches.meta's label names must be the catalogue's class names, in order."""
    names = _as_dict(unpickle(content, source), source).get("label_names")
    if not isinstance(names, list | tuple):
        raise DataError(f"{source}: b'label_names' must be a list, got {type(names).__name__}")
    decoded = tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names)
    if decoded != spec.class_names:
        raise DataError(
            f"{source}: label names {_clip(repr(decoded))} are not the catalogue's {spec.class_names}"
        )


def _as_dict(obj: object, source: str) -> dict[str, object]:
    """A batch dict with its byte-string keys (Python 2 str) as text."""
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _clip(text: str, limit: int = 120) -> str:
    """One line, bounded: names and messages from a hostile file can hold anything."""
    flat = " ".join(ascii(text)[1:-1].split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
