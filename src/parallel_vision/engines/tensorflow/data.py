"""The input pipelines of a TensorFlow run.

Identical for every strategy: in-memory uint8 arrays → normalise once ((x/255 − mean)/std,
float32, NHWC) → cache → seeded shuffle reshuffled every epoch → batch(GLOBAL batch,
drop_remainder=True) → prefetch. The strategy splits each global batch over its replicas;
`multiworker` shards by DATA (every worker reads the same shuffled order and keeps its share),
so all strategies take the same `steps_per_epoch` global steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from parallel_vision.engines.common import load_split, normalisation, steps_per_epoch
from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.errors import EngineError


def to_nhwc(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, C, H, W) uint8 → (N, H, W, C), contiguous."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    elif x.ndim != 4:
        raise EngineError(f"expected images of shape (N, H, W[, C]); got {x.shape}")
    return np.ascontiguousarray(x)


def make_dataset(
    tf: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    mean: float,
    std: float,
    batch: int,
    train: bool,
    seed: int,
    shard_policy: Any,
) -> Any:
    """The input pipeline (see the module docstring). `images` are NHWC uint8."""
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))

    def normalise(x: Any, y: Any) -> tuple[Any, Any]:
        return (tf.cast(x, tf.float32) / 255.0 - mean) / std, y

    ds = ds.map(normalise, num_parallel_calls=autotune, deterministic=True).cache()
    if train:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch, drop_remainder=True)
    else:
        ds = ds.batch(batch, drop_remainder=False)
    ds = ds.prefetch(autotune)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy
    options.deterministic = True
    return ds.with_options(options)


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
    mean: float
    std: float

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

    def train_data() -> Any:
        return make_dataset(tf, x_train, y_train, mean=mean, std=std, batch=cfg.batch_size, train=True,
                            seed=cfg.seed, shard_policy=policy)

    data_times = probe_pipeline(train_data())  # a separate pipeline: training's cache starts cold too
    train = train_data()
    test = make_dataset(tf, x_test, y_test, mean=mean, std=std, batch=cfg.eval_batch_size, train=False,
                        seed=cfg.seed, shard_policy=policy)
    run.class_names, run.n_train = class_names, len(x_train)
    return Data(
        train=train, test=test, x_test=x_test, y_test=y_test,
        input_shape=tuple(int(d) for d in x_train.shape[1:]), steps=steps_per_epoch(len(x_train), cfg.batch_size),
        data_times=data_times, mean=mean, std=std,
    )
