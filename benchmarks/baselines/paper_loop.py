"""Baseline (b): the paper-style PyTorch training loop, as its code did it.

torchvision's MNIST dataset hands out one PIL image per sample; `ToTensor()` and
`Normalize((0.1307,), (0.3081,))` turn it into a tensor, a `DataLoader(batch_size=2048,
shuffle=True)` with the default `num_workers=0` collates the batch in the training process,
and the loop is plain `model(x)`, `CrossEntropyLoss`, `Adam`, with `loss.item()` read every
step for the running loss. torchvision cannot be installed beside this torch, so the dataset
and the two transforms are re-implemented here line for line with PIL + numpy + torch
(torchvision 0.2x's `datasets.MNIST.__getitem__`, `F.to_tensor` and `F.normalize`).

Left at the defaults a user has: contiguous memory format, glibc's allocator settings,
`zero_grad()` (set_to_none=True is torch's default since 2.0 anyway). Only the thread
count is set (`torch.set_num_threads(--threads)`), the same as every contestant's.

Prints one JSON line: epoch times, images per epoch and steady images/s (epochs 2..E).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from _cli import parse_args  # noqa: I001 - the sibling module beside this script
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from parallel_vision.data import load
from parallel_vision.models.torch_cnn import PaperCNN

MEAN, STD = (0.1307,), (0.3081,)


def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor for a PIL image (mode 'L' here)."""
    img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    if pic.mode == "1":
        img = 255 * img
    img = img.view(pic.size[1], pic.size[0], len(pic.getbands()))
    img = img.permute((2, 0, 1)).contiguous()  # HWC -> CHW
    return img.to(dtype=torch.get_default_dtype()).div(255)


def normalize(tensor: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """torchvision.transforms.functional.normalize (not in place)."""
    tensor = tensor.clone()
    dtype = tensor.dtype
    m = torch.as_tensor(mean, dtype=dtype, device=tensor.device)
    s = torch.as_tensor(std, dtype=dtype, device=tensor.device)
    if (s == 0).any():
        raise ValueError("std evaluated to zero")
    if m.ndim == 1:
        m = m.view(-1, 1, 1)
    if s.ndim == 1:
        s = s.view(-1, 1, 1)
    return tensor.sub_(m).div_(s)


class Compose:
    def __init__(self, transforms: list) -> None:
        self.transforms = transforms

    def __call__(self, img):  # type: ignore[no-untyped-def]
        for t in self.transforms:
            img = t(img)
        return img


class MNIST(Dataset):
    """torchvision.datasets.MNIST's __getitem__: uint8 tensor -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:  # type: ignore[no-untyped-def]
        self.data = torch.from_numpy(images)
        self.targets = torch.from_numpy(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train = load("mnist", "train", args.data_dir)
    x_test, y_test = load("mnist", "test", args.data_dir)
    x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    x_test, y_test = x_test[: args.limit_test], y_test[: args.limit_test]
    transform = Compose([to_tensor, lambda t: normalize(t, MEAN, STD)])
    train_loader = DataLoader(MNIST(x_train, y_train, transform), batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(MNIST(x_test, y_test, transform), batch_size=2000)

    model = PaperCNN()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, images, losses = [], [], []
    for _epoch in range(args.epochs):
        model.train()
        running, seen = 0.0, 0
        start = time.perf_counter()
        for x, y in train_loader:
            optimizer.zero_grad()
            output = model(x)
            loss = criterion(output, y)
            loss.backward()
            optimizer.step()
            running += loss.item() * x.size(0)
            seen += x.size(0)
        times.append(time.perf_counter() - start)
        images.append(seen)
        losses.append(running / seen)

    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += int((model(x).argmax(1) == y).sum())
    steady_t, steady_n = times[1:] or times, images[1:] or images
    print(json.dumps({
        "baseline": "paper_loop",
        "epoch_times_s": times,
        "epoch_images": images,
        "train_loss": losses,
        "images_per_s_excl_warmup": sum(steady_n) / sum(steady_t),
        "test_accuracy": correct / len(y_test),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
