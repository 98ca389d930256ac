"""Epoch-end backups inside a Keras run (docs/reliability.md; the file format is `backup.py`): restored under
`--resume`, written after every epoch. The same bookkeeping for both backends; the engine passes in what
differs: how a backup's weights are loaded, how the processes agree on where to start, which model is saved.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from parallel_vision.engines.keras.backup import STATE_FILE, Backup
from parallel_vision.engines.keras.run import KerasRun
from parallel_vision.errors import ConfigError


def restore(run: KerasRun, *, load: Callable[[Backup], None], agree: Callable[[int], None]) -> None:
    """Under `--resume`, load the last epoch-end backup (`load(backup)`) and take over its records and
    reliability counters; sets `run.start_epoch`. Every process reads it: in a cluster they first `agree(epoch)`
    on where to start (a ConfigError where they do not)."""
    cfg, out = run.cfg, run.out
    resumed = None
    if cfg.resume:
        resumed = run.backups.read(out, cfg.identity(), run.placement.world_size)
        if resumed is None and run.writer:
            print(f"pvision: no backup in {out}; starting from the beginning", file=sys.stderr, flush=True)
    if run.cluster is not None:
        agree(resumed.epoch if resumed else 0)
    if resumed is None:
        return
    load(resumed)
    run.reliability.update({k: resumed.reliability[k] for k in ("backups_written", "backup_time_s")
                            if k in resumed.reliability})
    run.reliability["resumed_from"] = list(resumed.reliability.get("resumed_from", [])) + [{"epoch": resumed.epoch}]
    if run.writer:
        print(f"pvision: resuming after epoch {resumed.epoch} of {cfg.epochs} "
              f"({run.backups.backup_dir(out) / STATE_FILE})", file=sys.stderr, flush=True)
    run.start_epoch = resumed.epoch
    run.records[:] = list(resumed.records)


def disagreement(epoch: int) -> ConfigError:
    """What `agree` raises where the processes of a cluster found different backups."""
    return ConfigError(f"workers disagree on where to resume (this one: after epoch {epoch}); every worker must "
                       "see the same --out, on storage they share")


def back_up(run: KerasRun, finished: int, saved: Callable[[], Any]) -> None:
    """The backup after `finished` epochs of the Keras model `saved()` returns (called inside the timer:
    backup_time_s includes any copy it makes). Every process that calls this takes part in reading the weights;
    the writer alone keeps them."""
    start = time.perf_counter()
    model = saved()
    run.reliability["backups_written"] += 1  # this one included in the state it writes
    run.backups.write(model, run.out, epoch=finished, identity=run.cfg.identity(),
                      world_size=run.placement.world_size, records=run.records, timing=run.timing,
                      reliability=run.reliability, writer=run.writer)
    run.reliability["backup_time_s"] += time.perf_counter() - start
