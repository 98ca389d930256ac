"""The input pipelines of a TensorFlow run.

Identical for every strategy: in-memory uint8 arrays → normalise once ((x/255 − mean)/std,
float32, NHWC) → cache → seeded shuffle reshuffled every epoch → batch(GLOBAL batch,
drop_remainder=True) → repeat (one iterator for the whole fit) → prefetch. The strategy splits each
global batch over its replicas; `multiworker` shards by DATA (every worker reads the same shuffled
order and keeps its share), so all strategies take the same `steps_per_epoch` global steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from parallel_vision.engines.common import PAD, load_split, normalisation, steps_per_epoch, to_nhwc
from parallel_vision.engines.tensorflow.setup import TFRun


def make_dataset(
    tf: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch: int,
    train: bool,
    seed: int,
    shard_policy: Any,
    augment: bool = False,
    take: int | None = None,
    repeat: bool = False,
) -> Any:
    """The input pipeline (see the module docstring). `images` are NHWC uint8; `mean`/`std` per channel.

    With `augment` the cache holds the uint8 pixels and every batch is cropped, flipped and normalised as it
    is drawn (the crops must differ per epoch); otherwise the normalised pixels are cached once."""
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    centre = float(mean[0]) if len(mean) == 1 else tf.constant(mean, tf.float32)
    scale = float(std[0]) if len(std) == 1 else tf.constant(std, tf.float32)

    def normalise(x: Any, y: Any) -> tuple[Any, Any]:
        return (tf.cast(x, tf.float32) / 255.0 - centre) / scale, y

    augment = augment and train
    if not augment:
        ds = ds.map(normalise, num_parallel_calls=autotune, deterministic=True)
    ds = ds.cache()
    if train:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch, drop_remainder=True)
        if take is not None:  # micro-batches: only whole optimiser steps (steps × grad_accum of them)
            ds = ds.take(take)
        if repeat:  # one iterator for every epoch (fit's steps_per_epoch cuts the epochs): a fresh iterator at
            ds = ds.repeat()  # each epoch start sometimes waited ~2 steps idle (docs/performance.md, round 2)
    else:
        ds = ds.batch(batch, drop_remainder=False)
    if augment:
        ds = ds.map(lambda x, y: normalise(crop_and_flip(tf, x, PAD, seed), y), num_parallel_calls=autotune,
                    deterministic=True)
    ds = ds.prefetch(autotune)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy
    options.deterministic = True
    return ds.with_options(options)


def crop_and_flip(tf: Any, x: Any, pad: int, seed: int) -> Any:
    """Every image of the (B, H, W, C) batch shifted by its own random offset within a zero border of `pad`
    and mirrored with probability 1/2: two batched gathers, no per-image Python loop."""
    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    dy = tf.random.uniform([b, 1], 0, 2 * pad + 1, dtype=tf.int32, seed=seed)
    dx = tf.random.uniform([b, 1], 0, 2 * pad + 1, dtype=tf.int32, seed=seed + 1)
    flip = tf.random.uniform([b, 1], seed=seed + 2) < 0.5
    rows = dy + tf.range(h)[None, :]
    cols = dx + tf.range(w)[None, :]
    cols = tf.where(flip, tf.reverse(cols, [1]), cols)
    rows_taken = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2·pad, C)
    return tf.gather(rows_taken, cols, axis=2, batch_dims=1)  # (B, H, W, C)


def probe_pipeline(dataset: Any) -> tuple[float, float]:
    """Seconds to iterate `dataset` alone: a cold epoch (fills its cache), then a warm one."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for _batch in dataset:
            pass
        times.append(time.perf_counter() - start)
    return times[0], times[1]


@dataclass
class Data:
    """The run's pipelines and what the evaluation and the outputs need of the arrays."""

    train: Any
    test: Any
    x_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple[int, ...]
    steps: int  # global steps per epoch
    data_times: tuple[float, float]  # probe_pipeline's (cold, warm) seconds: data_time_s of epoch 1, later ones
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def predict_dataset(self, tf: Any, batch: int, seed: int) -> Any:
        """The whole test set for one device (no sharding), in order: for the final prediction pass."""
        return make_dataset(tf, self.x_test, self.y_test, mean=self.mean, std=self.std, batch=batch, train=False,
                            seed=seed, shard_policy=tf.data.experimental.AutoShardPolicy.OFF)


def load_data(run: TFRun) -> Data:
    """Read both splits, build the pipelines and time the probe passes (outside every clock); records
    the class names and the number of training images on `run`."""
    cfg, tf = run.cfg, run.tf
    x_train, y_train, class_names = load_split(cfg, "train")
    x_test, y_test, _ = load_split(cfg, "test")
    x_train, x_test = to_nhwc(x_train), to_nhwc(x_test)
    y_train, y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
    mean, std = normalisation(cfg)
    shard = tf.data.experimental.AutoShardPolicy
    policy = shard.DATA if cfg.strategy == "multiworker" else shard.OFF

    def train_data(repeat: bool = False) -> Any:
        # With grad_accum K each fit step is one micro-batch of batch_size ÷ K (global over the replicas); Keras
        # updates the weights every K of them, so batch_size stays the global batch per optimiser step.
        micro = cfg.batch_size // cfg.grad_accum
        take = steps_per_epoch(len(x_train), cfg.batch_size) * cfg.grad_accum if cfg.grad_accum > 1 else None
        return make_dataset(tf, x_train, y_train, mean=mean, std=std, batch=micro, train=True,
                            seed=cfg.seed, shard_policy=policy, augment=cfg.augment, take=take, repeat=repeat)

    data_times = probe_pipeline(train_data())  # a separate, finite pipeline: training's cache starts cold too
    train = train_data(repeat=True)
    test = make_dataset(tf, x_test, y_test, mean=mean, std=std, batch=cfg.eval_batch_size, train=False,
                        seed=cfg.seed, shard_policy=policy)
    run.class_names, run.n_train, run.n_test = class_names, len(x_train), len(y_test)
    return Data(
        train=train, test=test, x_test=x_test, y_test=y_test,
        input_shape=tuple(int(d) for d in x_train.shape[1:]), steps=steps_per_epoch(len(x_train), cfg.batch_size),
        data_times=data_times, mean=mean, std=std,
    )
