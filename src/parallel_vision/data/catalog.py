"""The datasets we know, with the checksums that make "verified" mean something.

Checksums and sizes are those of the canonical upstream files (the same MD5s
torchvision checks); the shared offline copies of MNIST and Fashion-MNIST are
byte-identical to them. Where the size or SHA-256 of an upstream file has never
been observed from this project (KMNIST, CIFAR-10: no route to their servers
from the build machine), the field is None and the MD5 is the checked digest;
the SHA-256 of the first verified download is to be recorded in docs/datasets.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from parallel_vision.errors import DataError

Format = Literal["idx", "cifar-python"]


@dataclass(frozen=True)
class FileSpec:
    """One canonical upstream file: its name and what its bytes must hash to.

    `size` and `sha256` may be unknown (None); then the size is not checked and the
    MD5 is the digest that decides. When the SHA-256 is known it is the one checked.
    """

    name: str
    size: int | None
    md5: str
    sha256: str | None = None

    @property
    def digest_name(self) -> str:
        """The hashlib name of the digest that is checked: sha256 when known, else md5."""
        return "sha256" if self.sha256 else "md5"

    @property
    def digest(self) -> str:
        """The expected hex digest (see `digest_name`)."""
        return self.sha256 or self.md5

    @property
    def digest_label(self) -> str:
        """How messages name the checked digest: SHA-256 or MD5."""
        return "SHA-256" if self.sha256 else "MD5"


@dataclass(frozen=True)
class MemberSpec:
    """One file inside an archive (its path in the archive) and its pinned MD5."""

    name: str
    md5: str


@dataclass(frozen=True)
class SplitSpec:
    """The files of one split, and how many examples they hold.

    IDX datasets have an image file and a label file. Archive datasets (CIFAR-10)
    have `labels=None`: `images` is the archive, and `members` the batches inside it
    that hold this split, in order.
    """

    name: str
    images: FileSpec
    labels: FileSpec | None
    count: int
    members: tuple[MemberSpec, ...] = ()

    @property
    def files(self) -> tuple[FileSpec, ...]:
        return (self.images,) if self.labels is None else (self.images, self.labels)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about a dataset before reading a byte of it."""

    name: str
    splits: tuple[SplitSpec, ...]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    """Per-channel pixel mean of the train split on the 0..1 scale, for `normalize`."""
    std: tuple[float, ...]
    """Per-channel pixel standard deviation, same scale and order as `mean`."""
    mirrors: tuple[str, ...]
    """Base URLs tried in order; each file is fetched as <mirror><file name>."""
    image_shape: tuple[int, int] = (28, 28)
    """(H, W)."""
    channels: int = 1
    format: Format = "idx"
    """idx: gzip'd IDX image and label files; cifar-python: one .tar.gz of pickled batches."""
    meta: MemberSpec | None = None
    """Archive datasets: the member naming the classes (checked against `class_names`)."""

    def __post_init__(self) -> None:
        if not (len(self.mean) == len(self.std) == self.channels):
            raise ValueError(
                f"{self.name}: mean {self.mean} and std {self.std} need one entry per channel ({self.channels})"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def files(self) -> tuple[FileSpec, ...]:
        """Every distinct file of the dataset, in split order (an archive shared by splits once)."""
        seen: dict[str, FileSpec] = {}
        for s in self.splits:
            for f in s.files:
                seen.setdefault(f.name, f)
        return tuple(seen.values())

    def splits_of(self, file: FileSpec) -> str:
        """The splits a file holds, e.g. "train" or "train+test" (an archive of both)."""
        return "+".join(s.name for s in self.splits if any(f.name == file.name for f in s.files))

    def split(self, name: str) -> SplitSpec:
        for s in self.splits:
            if s.name == name:
                return s
        choices = ", ".join(s.name for s in self.splits)
        raise DataError(f"unknown split {name!r} for {self.name}; choose from {choices}")


def _splits(train: tuple[FileSpec, FileSpec], test: tuple[FileSpec, FileSpec]) -> tuple[SplitSpec, ...]:
    return (SplitSpec("train", *train, count=60000), SplitSpec("test", *test, count=10000))


MNIST = DatasetSpec(
    name="mnist",
    splits=_splits(
        train=(
            FileSpec(
                "train-images-idx3-ubyte.gz",
                9912422,
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            FileSpec(
                "train-labels-idx1-ubyte.gz",
                28881,
                "d53e105ee54ea40749a09fcbcd1e9432",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
        ),
        test=(
            FileSpec(
                "t10k-images-idx3-ubyte.gz",
                1648877,
                "9fb629c4189551a2d022fa330f9573f3",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            FileSpec(
                "t10k-labels-idx1-ubyte.gz",
                4542,
                "ec29112dd5afa0611ce80d1b7f02629c",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
    ),
    class_names=tuple(str(d) for d in range(10)),
    mean=(0.1307,),
    std=(0.3081,),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    splits=_splits(
        train=(
            FileSpec(
                "train-images-idx3-ubyte.gz",
                26421880,
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            FileSpec(
                "train-labels-idx1-ubyte.gz",
                29515,
                "25c81989df183df01b3e8a0aad5dffbe",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
        ),
        test=(
            FileSpec(
                "t10k-images-idx3-ubyte.gz",
                4422102,
                "bef4ecab320f06d8554ea6380940ec79",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            FileSpec(
                "t10k-labels-idx1-ubyte.gz",
                5148,
                "bb300cfdad3c16e7a12a480ee83cd310",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ),
    ),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mean=(0.2860,),
    std=(0.3530,),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
)

KMNIST = DatasetSpec(
    name="kmnist",
    # Sizes and SHA-256s unknown here (no route to the mirror): verified by MD5, as torchvision does.
    splits=_splits(
        train=(
            FileSpec("train-images-idx3-ubyte.gz", None, "bdb82020997e1d708af4cf47b453dcf7"),
            FileSpec("train-labels-idx1-ubyte.gz", None, "e144d726b3acfaa3e44228e80efcd344"),
        ),
        test=(
            FileSpec("t10k-images-idx3-ubyte.gz", None, "5c965bf0a639b31b8f53240b1b52f4d7"),
            FileSpec("t10k-labels-idx1-ubyte.gz", None, "7320c461ea6c1c855c0b718fb2a4b134"),
        ),
    ),
    # The romanised Kuzushiji characters of the KMNIST repository's classmap.csv, in label order.
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    # Widely used values from the literature, not measured here (no copy of the files to measure).
    mean=(0.1918,),
    std=(0.3483,),
    mirrors=(
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
)

_CIFAR10_ARCHIVE = FileSpec("cifar-10-python.tar.gz", 170498071, "c58f30108f718f92721af3b95e74349a")
_CIFAR10_DIR = "cifar-10-batches-py/"

CIFAR10 = DatasetSpec(
    name="cifar10",
    splits=(
        SplitSpec(
            "train",
            _CIFAR10_ARCHIVE,
            None,
            count=50000,
            members=tuple(
                MemberSpec(_CIFAR10_DIR + name, md5)
                for name, md5 in (
                    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
                )
            ),
        ),
        SplitSpec(
            "test",
            _CIFAR10_ARCHIVE,
            None,
            count=10000,
            members=(MemberSpec(_CIFAR10_DIR + "test_batch", "40351d587109b95175f43aff81a1287e"),),
        ),
    ),
    class_names=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    image_shape=(32, 32),
    channels=3,
    format="cifar-python",
    meta=MemberSpec(_CIFAR10_DIR + "batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST, KMNIST, CIFAR10)}


def get_dataset(dataset: str | DatasetSpec) -> DatasetSpec:
    """Look a dataset up by name; a spec passes through (tests and mirrors inject their own)."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    try:
        return DATASETS[dataset]
    except KeyError:
        raise DataError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}") from None
