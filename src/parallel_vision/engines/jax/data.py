"""The data of a JAX run: in-memory arrays, each global batch placed on the mesh.

Identical for every strategy: uint8 arrays → normalised once ((x/255 − mean)/std, float32, NHWC). Epoch e
visits the training images in the order `permutation(seed, e)` (the same in every process and strategy),
in full GLOBAL batches (the incomplete last one dropped, engines.common.steps_per_epoch). Each global batch
becomes one array sharded over the mesh's 'batch' axis; in `multiworker` every process hands over only its
own rows (jax.make_array_from_process_local_data), so no process ever copies another's shard.

The test set is cut into batches of `eval_batch_size` rounded up to a multiple of the devices; the last is
padded with label −1 rows, which the evaluation masks out, so every test image counts exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parallel_vision.engines.common import PAD, load_split, normalisation, steps_per_epoch, to_nhwc
from parallel_vision.engines.jax.setup import JaxRun

PAD_LABEL = -1


def normalise(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(x/255 − mean)/std per channel (the last axis of NHWC), in float32 as the other engines compute it."""
    centre, scale = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (images.astype(np.float32) / np.float32(255) - centre) / scale


def crop_and_flip(x: np.ndarray, pad: int, rng: np.random.Generator, fill: np.ndarray) -> np.ndarray:
    """Every image of the normalised (B, H, W, C) batch shifted by its own random offset within a border of
    `pad` black pixels (`fill`: black, normalised) and mirrored with probability 1/2, in one gather."""
    b, h, w, _ = x.shape
    padded = np.empty((b, h + 2 * pad, w + 2 * pad, x.shape[3]), x.dtype)
    padded[...] = fill
    padded[:, pad:pad + h, pad:pad + w] = x
    dy = rng.integers(0, 2 * pad + 1, (b, 1))
    dx = rng.integers(0, 2 * pad + 1, (b, 1))
    flip = rng.random((b, 1)) < 0.5
    rows = dy + np.arange(h)
    cols = dx + np.arange(w)
    cols = np.where(flip, cols[:, ::-1], cols)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training images' order in 0-based epoch `epoch`: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray  # int64 labels, test-set order
    input_shape: tuple[int, ...]
    steps: int  # global steps per epoch
    eval_batch: int  # global eval batch (a multiple of the devices)
    augment: bool = False
    fill: np.ndarray | None = None  # a black pixel, normalised (the crop's border)
    seed: int = 0

    def train_batch(self, rows: np.ndarray, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of one global batch; cropped and flipped under `augment`, seeded by (seed, epoch, step) so
        every process draws the same global batch."""
        x = self.x_train[rows]
        if self.augment:
            x = crop_and_flip(x, PAD, np.random.default_rng([self.seed, epoch, step]), self.fill)
        return x, self.y_train[rows]


class Feeder:
    """Turns host rows into arrays on the mesh: this process's share of each global batch."""

    def __init__(self, run: JaxRun) -> None:
        jax = run.jax
        P = jax.sharding.PartitionSpec
        self.jax = jax
        self.batch = jax.sharding.NamedSharding(run.placement.mesh, P("batch"))
        self.replicated = jax.sharding.NamedSharding(run.placement.mesh, P())
        self.processes = run.placement.processes
        self.rank = run.cluster.rank if run.cluster else 0

    def local_rows(self, n: int) -> slice:
        """This process's rows of a global batch of n (n is a multiple of the processes)."""
        share = n // self.processes
        return slice(self.rank * share, (self.rank + 1) * share)

    def put(self, *arrays: np.ndarray) -> tuple[Any, ...]:
        """Global arrays from full host batches (each process passes the whole global batch; only its rows are
        copied)."""
        out = []
        for a in arrays:
            rows = a[self.local_rows(len(a))]
            out.append(self.jax.make_array_from_process_local_data(self.batch, rows, a.shape))
        return tuple(out)

    def place(self, tree: Any, shardings: Any) -> Any:
        """Host arrays → arrays laid out as `shardings` (a matching tree): each device gets its own block."""
        def one(value: Any, sharding: Any) -> Any:
            value = np.asarray(value)
            return self.jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
        return self.jax.tree_util.tree_map(one, tree, shardings)

    def replicate(self, tree: Any) -> Any:
        """Host arrays → arrays replicated on every device of the mesh (in every process)."""
        def one(value: Any) -> Any:
            value = np.asarray(value)
            return self.jax.make_array_from_callback(value.shape, self.replicated, lambda index: value[index])
        return self.jax.tree_util.tree_map(one, tree)


def test_batches(data: Data) -> list[tuple[np.ndarray, np.ndarray]]:
    """The test set in global batches of `data.eval_batch`, the last padded with PAD_LABEL rows."""
    out = []
    n, b = len(data.y_test), data.eval_batch
    for start in range(0, n, b):
        x = data.x_test[start:start + b]
        y = data.y_test[start:start + b].astype(np.int32)
        if len(y) < b:
            pad = b - len(y)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.full(pad, PAD_LABEL, np.int32)])
        out.append((x, y))
    return out


def load_data(run: JaxRun) -> Data:
    """Read and normalise both splits; records the class names and the number of training images on `run`."""
    cfg = run.cfg
    x_train, y_train, class_names = load_split(cfg, "train")
    x_test, y_test, _ = load_split(cfg, "test")
    mean, std = normalisation(cfg)
    x_train, x_test = normalise(to_nhwc(x_train), mean, std), normalise(to_nhwc(x_test), mean, std)
    devices = run.placement.world_size
    eval_batch = min(cfg.eval_batch_size, len(y_test))
    eval_batch = -(-eval_batch // devices) * devices
    run.class_names, run.n_train, run.n_test = class_names, len(x_train), len(y_test)
    return Data(
        x_train=x_train, y_train=np.asarray(y_train, np.int32), x_test=x_test, y_test=np.asarray(y_test, np.int64),
        input_shape=tuple(int(d) for d in x_train.shape[1:]), steps=steps_per_epoch(len(x_train), cfg.batch_size),
        eval_batch=eval_batch, augment=cfg.augment, seed=cfg.seed,
        fill=normalise(np.zeros((1, 1, 1, 1), np.uint8), mean, std)[0, 0, 0],
    )
