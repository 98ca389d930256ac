"""Small CIFAR-10 archives in the exact canonical format, for tests (the real one is not reachable here).

A `.tar.gz` with the real folder and member names holding Python-2-style protocol-2 pickles of
{b"data", b"labels", ...}, and the catalogue entry that pins the fixture's own checksums.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from parallel_vision.data import DATASETS, DatasetSpec, FileSpec, MemberSpec

CIFAR_DIR = "cifar-10-batches-py/"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
PER_BATCH = 2  # train: 5 x 2 = 10 images; test: 3
TEST_COUNT = 3


# ------------------------------------------------------------------ fixture formats
class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Protocol 2 with every string written as a Python 2 `str` (SHORT_BINSTRING/BINSTRING), as cPickle
    wrote CIFAR: dict keys, numpy's dtype arguments ('u1', '|') and the pixel buffer alike.

    Python 3 would pickle bytes at protocol 2 through `_codecs.encode`, a global the real files
    never name (and the restricted unpickler refuses), and text as BINUNICODE.
    """

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_py2_text(self, obj: str) -> None:
        self.save_py2_str(obj.encode("latin-1"))

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_text


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # The real batches were written by numpy 1.x: its module path, not numpy 2's numpy._core.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def batch_pickle(images: np.ndarray, labels: np.ndarray, name: str) -> bytes:
    """A CIFAR batch from NHWC images: rows are 1024 R, then 1024 G, then 1024 B values."""
    rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32))
    return py2_pickle(
        {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels],
            b"data": rows,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
        }
    )


def meta_pickle(names: tuple[str, ...] = DATASETS["cifar10"].class_names) -> bytes:
    return py2_pickle(
        {b"num_cases_per_batch": PER_BATCH, b"label_names": [n.encode() for n in names], b"num_vis": 3072}
    )


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        dir_info = tarfile.TarInfo(CIFAR_DIR.rstrip("/"))
        dir_info.type = tarfile.DIRTYPE
        tar.addfile(dir_info)
        for name, content in members.items():
            info = tarfile.TarInfo(CIFAR_DIR + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclasses.dataclass
class CifarFixture:
    images: dict[str, np.ndarray]  # split -> NHWC uint8
    labels: dict[str, np.ndarray]
    members: dict[str, bytes]  # member name (without folder) -> pickle bytes

    def spec(self, archive: bytes, *, mirrors: tuple[str, ...] = (), known_size: bool = True,
             pinned: dict[str, bytes] | None = None) -> DatasetSpec:
        """The cifar10 catalogue entry with this archive's checksum and the members' pinned MD5s."""
        pins = {name: md5(content) for name, content in (pinned or self.members).items()}
        file = FileSpec(CIFAR_ARCHIVE, len(archive) if known_size else None, md5(archive))
        real = DATASETS["cifar10"]
        train, test = real.splits
        return dataclasses.replace(
            real,
            splits=(
                dataclasses.replace(train, images=file, count=len(self.labels["train"]),
                                    members=tuple(MemberSpec(CIFAR_DIR + b, pins[b]) for b in TRAIN_BATCHES)),
                dataclasses.replace(test, images=file, count=len(self.labels["test"]),
                                    members=(MemberSpec(CIFAR_DIR + "test_batch", pins["test_batch"]),)),
            ),
            meta=MemberSpec(CIFAR_DIR + "batches.meta", pins["batches.meta"]),
            mirrors=mirrors,
        )


def make_cifar(per_batch: int = PER_BATCH, test_count: int = TEST_COUNT, seed: int = 7) -> CifarFixture:
    """Random images in five train batches of `per_batch` and a test batch of `test_count`; the first
    training image has a known pixel (row 1, column 2: R G B = 10 20 30) that proves the CHW→HWC order."""
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (len(TRAIN_BATCHES) * per_batch, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (test_count, 32, 32, 3), dtype=np.uint8)
    train[0, 1, 2] = (10, 20, 30)
    train_labels = np.arange(len(train)) % 10
    test_labels = np.array([3, 9, 0]) if test_count == 3 else np.arange(test_count) % 10
    members = {
        b: batch_pickle(train[i * per_batch : (i + 1) * per_batch], train_labels[i * per_batch : (i + 1) * per_batch],
                        b)
        for i, b in enumerate(TRAIN_BATCHES)
    }
    members["test_batch"] = batch_pickle(test, test_labels, "test_batch")
    members["batches.meta"] = meta_pickle()
    return CifarFixture({"train": train, "test": test}, {"train": train_labels, "test": test_labels}, members)


#: Run in every interpreter that starts with the folder `install_for_subprocesses` returns on PYTHONPATH
#: (engine processes, spawned DDP workers): the cifar10 catalogue entry becomes the fixture's.
_SITECUSTOMIZE = """
import dataclasses, json, os
from parallel_vision.data import catalog
_pins = json.loads(open(os.environ["PVISION_TEST_CIFAR_SPEC"]).read())
_file = catalog.FileSpec(_pins["archive"], _pins["size"], _pins["md5"])
_real = catalog.DATASETS["cifar10"]
_train, _test = _real.splits
_dir = "cifar-10-batches-py/"
catalog.DATASETS["cifar10"] = dataclasses.replace(
    _real,
    splits=(dataclasses.replace(_train, images=_file, count=_pins["train"],
                                members=tuple(catalog.MemberSpec(_dir + b, _pins["members"][b])
                                              for b in _pins["train_batches"])),
            dataclasses.replace(_test, images=_file, count=_pins["test"],
                                members=(catalog.MemberSpec(_dir + "test_batch", _pins["members"]["test_batch"]),))),
    meta=catalog.MemberSpec(_dir + "batches.meta", _pins["members"]["batches.meta"]),
    mirrors=(),
)
"""


def install_for_subprocesses(fx: CifarFixture, folder: Path) -> dict[str, str]:
    """Write the fixture's archive under folder/data/cifar10/raw and a sitecustomize.py that pins its
    checksums in every new interpreter; return the environment variables that make a subprocess use them."""
    archive = tar_gz(fx.members)
    raw = folder / "data" / "cifar10" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / CIFAR_ARCHIVE).write_bytes(archive)
    pins = {"archive": CIFAR_ARCHIVE, "size": len(archive), "md5": md5(archive), "train": len(fx.labels["train"]),
            "test": len(fx.labels["test"]), "train_batches": TRAIN_BATCHES,
            "members": {name: md5(content) for name, content in fx.members.items()}}
    (folder / "cifar_pins.json").write_text(json.dumps(pins))
    site = folder / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return {"PVISION_TEST_CIFAR_SPEC": str(folder / "cifar_pins.json"), "PYTHONPATH": str(site),
            "PVISION_DATA_DIR": str(folder / "data")}
