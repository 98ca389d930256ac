"""The datasets we know, with the checksums that make "verified" mean something.

Checksums and sizes are those of the canonical upstream .gz files (the same MD5s
torchvision checks); the shared offline copies are byte-identical to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from parallel_vision.errors import DataError


@dataclass(frozen=True)
class FileSpec:
    """One canonical .gz file: its name and what its bytes must hash to."""

    name: str
    size: int
    md5: str
    sha256: str


@dataclass(frozen=True)
class SplitSpec:
    """The image and label files of one split, and how many examples they hold."""

    name: str
    images: FileSpec
    labels: FileSpec
    count: int


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about a dataset before reading a byte of it."""

    name: str
    splits: tuple[SplitSpec, ...]
    class_names: tuple[str, ...]
    mean: float
    """Pixel mean of the train split on the 0..1 scale, for `normalize`."""
    std: float
    mirrors: tuple[str, ...]
    """Base URLs tried in order; each file is fetched as <mirror><file name>."""
    image_shape: tuple[int, int] = (28, 28)
    channels: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def files(self) -> tuple[FileSpec, ...]:
        return tuple(f for s in self.splits for f in (s.images, s.labels))

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
    mean=0.1307,
    std=0.3081,
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
    mean=0.2860,
    std=0.3530,
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def get_dataset(dataset: str | DatasetSpec) -> DatasetSpec:
    """Look a dataset up by name; a spec passes through (tests and mirrors inject their own)."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    try:
        return DATASETS[dataset]
    except KeyError:
        raise DataError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}") from None
