"""The epoch-end backups inside a TensorFlow run (docs/reliability.md; the file format is `backup.py`).

A backup is written at every epoch end (Keras' BackupAndRestore contract, written atomically);
`--resume` continues from the first unfinished epoch, every worker reading the same backup.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from parallel_vision.engines.tensorflow import backup as tf_backup
from parallel_vision.engines.tensorflow.setup import TFRun
from parallel_vision.errors import ConfigError


def restore(run: TFRun, model: Any) -> None:
    """Under `--resume`, load the last epoch-end backup into `model` and take over its records and
    reliability counters; sets `run.start_epoch`. Every worker reads it: they must start alike."""
    cfg, out = run.cfg, run.out
    resumed = None
    if cfg.resume:
        resumed = tf_backup.read(out, cfg.identity(), run.placement.world_size)
        if resumed is None and run.writer:
            print(f"pvision: no backup in {out}; starting from the beginning", file=sys.stderr, flush=True)
    if run.cluster is not None:
        agree_on_start(run.tf, run.placement.strategy, resumed.epoch if resumed else 0)
    if resumed is None:
        return
    with run.placement.strategy.scope():
        model.optimizer.build(model.trainable_variables)  # so its slots load too
        model.load_weights(str(resumed.weights))
    run.reliability.update({k: resumed.reliability[k] for k in ("backups_written", "backup_time_s")
                            if k in resumed.reliability})
    run.reliability["resumed_from"] = list(resumed.reliability.get("resumed_from", [])) + [{"epoch": resumed.epoch}]
    if run.writer:
        print(f"pvision: resuming after epoch {resumed.epoch} of {cfg.epochs} "
              f"({tf_backup.backup_dir(out) / tf_backup.STATE_FILE})", file=sys.stderr, flush=True)
    run.start_epoch = resumed.epoch
    run.records[:] = list(resumed.records)


def agree_on_start(tf: Any, strategy: Any, epoch: int) -> None:
    """Every multiworker worker must resume from the same epoch, or the collectives would hang.

    With n replicas, all values are equal iff n·Σe² = (Σe)²; every worker sees the same sums.
    """
    @tf.function
    def sums() -> Any:
        def local() -> Any:
            e = tf.constant(float(epoch), tf.float64)
            return tf.stack([e, e * e, tf.constant(1.0, tf.float64)])
        per_replica = strategy.run(local)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    total, squares, n = (float(v) for v in sums().numpy())
    if abs(n * squares - total * total) > 0.5:
        raise ConfigError(f"workers disagree on where to resume (this one: after epoch {epoch}); every worker must "
                          "see the same --out, on storage they share")


def back_up(run: TFRun, model: Any, finished: int) -> None:
    """The backup after `finished` epochs (every worker takes part; the writer alone keeps it)."""
    start = time.perf_counter()
    run.reliability["backups_written"] += 1  # this one included in the state it writes
    tf_backup.write(model, run.out, epoch=finished, identity=run.cfg.identity(), world_size=run.placement.world_size,
                    records=run.records, timing=run.timing, reliability=run.reliability, writer=run.writer)
    run.reliability["backup_time_s"] += time.perf_counter() - start
