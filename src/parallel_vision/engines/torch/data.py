"""The data a worker trains on, resident on its device, and which part of each batch is its own.

No DataLoader and no per-sample transforms in the hot path: batches are drawn by indexing a seeded
per-epoch permutation and normalised as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from parallel_vision.config import RunConfig
from parallel_vision.engines.common import PAD, load_split
from parallel_vision.engines.workload import synthetic_count, synthetic_seed, workload


@dataclass
class DeviceData:
    """A split resident on the device: uint8 pixels (N,C,H,W) and int64 labels.

    Pixels stay uint8 (a quarter of float32: 47 MB instead of 188 MB for MNIST's
    training set, per worker) and each batch is normalised as it is taken, with the
    same float operations a normalise-once copy would have applied, so the values
    are bit-identical; the cost is one elementwise pass over the batch.
    """

    pixels: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    mean: float | torch.Tensor
    """A float for grey images; a (1, C, 1, 1) tensor for colour (per-channel normalisation)."""
    std: float | torch.Tensor
    channels_last: bool
    augment: bool = False
    seed: int = 0

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.pixels.shape[1:])  # type: ignore[return-value]

    def batch(self, index: torch.Tensor | slice,
              key: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images and labels of `index` (a permutation slice or a range). With `augment`
        and a `key` (epoch, step, rank), the images are randomly cropped and flipped, reproducibly."""
        pixels = self.pixels[index]
        if self.augment and key is not None:
            generator = torch.Generator(pixels.device).manual_seed(mix_seed(self.seed, *key))
            pixels = crop_and_flip(pixels, PAD, generator)
        x = pixels.float().div_(255.0).sub_(self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[index]


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers, the same in every process and Python version."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (1 << 63)
    return seed


def crop_and_flip(pixels: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Every image of the (B, C, H, W) batch shifted by its own random offset within a zero border of `pad`
    and mirrored with probability 1/2: one gather for the whole batch, no per-image Python loop."""
    b, c, h, w = pixels.shape
    device = pixels.device
    padded = torch.nn.functional.pad(pixels, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=device)
    flip = torch.rand((b, 1), generator=generator, device=device) < 0.5
    rows = dy + torch.arange(h, device=device)
    cols = dx + torch.arange(w, device=device)
    cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(b, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def load_data(cfg: RunConfig, split: str, device: torch.device) -> DeviceData:
    """The split on `device`; `synthetic` images are drawn there directly, never copied from the host."""
    w = workload(cfg)
    if w.synthetic:
        generator = torch.Generator(device).manual_seed(synthetic_seed(cfg, split))
        n = synthetic_count(cfg, split)
        x = torch.randint(0, 256, (n, w.channels, w.image_size, w.image_size), generator=generator,
                          device=device, dtype=torch.uint8)
        y = torch.randint(0, w.classes, (n,), generator=generator, device=device)
        names = list(w.class_names)
    else:
        images, labels, names = load_split(cfg, split)
        pixels = torch.from_numpy(np.ascontiguousarray(images))
        pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2).contiguous()
        x = pixels.to(device)
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    return DeviceData(pixels=x, labels=y, class_names=names, mean=_per_channel(w.mean, device),
                      std=_per_channel(w.std, device), channels_last=cfg.memory_format == "channels_last",
                      augment=cfg.augment and split == "train", seed=cfg.seed)


def _per_channel(values: tuple[float, ...], device: torch.device) -> float | torch.Tensor:
    """A python float for one channel (the grey path stays bit-identical to before); else a broadcastable
    (1, C, 1, 1) float32 tensor."""
    if len(values) == 1:
        return float(values[0])
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The same shuffled order on every rank, new each epoch (DistributedSampler.set_epoch's job)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def shard_slice(step: int, global_batch: int, rank: int, world: int) -> slice:
    """Rank r's part of global batch `step`: the union over ranks is exactly the single-device batch."""
    per = global_batch // world
    start = step * global_batch + rank * per
    return slice(start, start + per)


def eval_shard(n: int, rank: int, world: int) -> slice:
    """Rank r's contiguous part of the n test images: every image exactly once, no padding, in order."""
    bounds = np.linspace(0, n, world + 1).round().astype(int)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))
