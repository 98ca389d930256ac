"""The images `pvision explain` explains: a seeded, class-stratified sample of a run's test set.

The indices depend only on the labels, `n` and the seed, so every run of one dataset (and one test limit)
explains the same images, whatever its framework or strategy.
"""

from __future__ import annotations

import numpy as np

from parallel_vision.errors import ConfigError


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` test-set indices, sorted: each class gets n // classes images (the first n % classes classes in
    a seeded order one more), drawn without replacement by `numpy.random.default_rng(seed)`; a class with
    too few images gives its share to the others."""
    labels = np.asarray(labels)
    if not 1 <= n <= len(labels):
        raise ConfigError(f"--images must be between 1 and {len(labels)} (the run's test images); got {n}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = dict.fromkeys(classes, 0)
    left = n
    while left:  # round-robin in a seeded class order, skipping classes that ran out
        open_classes = [c for c in rng.permutation(classes) if quota[c] < len(pools[c])]
        for c in open_classes[:left]:
            quota[c] += 1
        left -= min(left, len(open_classes))
    return np.sort(np.concatenate([pools[c][:quota[c]] for c in classes])).astype(np.int64)
