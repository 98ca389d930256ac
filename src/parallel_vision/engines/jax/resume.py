"""The epoch-end backups inside a JAX run (docs/reliability.md; the file format is engines/keras_backup.py).

Written by the writer after every epoch from the single-device `host` copy; `--resume` loads the last one
into that copy and replicates its values as the starting state, every process reading the same backup."""

from __future__ import annotations

import sys
import time

from parallel_vision.engines.jax import backup as jax_backup
from parallel_vision.engines.jax.data import Feeder
from parallel_vision.engines.jax.model import Model, host_state, load_into_host, state_to_host
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.errors import ConfigError


def restore(run: JaxRun, model: Model, feeder: Feeder) -> None:
    cfg, out = run.cfg, run.out
    resumed = None
    if cfg.resume:
        resumed = jax_backup.read(out, cfg.identity(), run.placement.world_size)
        if resumed is None and run.writer:
            print(f"pvision: no backup in {out}; starting from the beginning", file=sys.stderr, flush=True)
    if run.cluster is not None:
        agree_on_start(run, feeder, resumed.epoch if resumed else 0)
    if resumed is None:
        return
    model.host.load_weights(str(resumed.weights))
    trainable, non_trainable, slots = host_state(model)
    model.state = (*feeder.replicate((trainable, non_trainable, slots)), model.state[3])
    run.reliability.update({k: resumed.reliability[k] for k in ("backups_written", "backup_time_s")
                            if k in resumed.reliability})
    run.reliability["resumed_from"] = list(resumed.reliability.get("resumed_from", [])) + [{"epoch": resumed.epoch}]
    if run.writer:
        print(f"pvision: resuming after epoch {resumed.epoch} of {cfg.epochs} "
              f"({jax_backup.backup_dir(out) / jax_backup.STATE_FILE})", file=sys.stderr, flush=True)
    run.start_epoch = resumed.epoch
    run.records[:] = list(resumed.records)


def agree_on_start(run: JaxRun, feeder: Feeder, epoch: int) -> None:
    """Every process must resume from the same epoch, or the collectives would hang: max − min over the
    processes' epochs, computed in one small SPMD program."""
    import numpy as np

    jax = run.jax
    n = run.placement.processes
    epochs = np.full(n, epoch, np.int32)  # this process's row is its own epoch
    (global_epochs,) = feeder.put(epochs)
    spread = jax.jit(lambda e: e.max() - e.min(), out_shardings=feeder.replicated)(global_epochs)
    if int(np.asarray(spread.addressable_shards[0].data)) != 0:
        raise ConfigError(f"workers disagree on where to resume (this one: after epoch {epoch}); every worker must "
                          "see the same --out, on storage they share")


def back_up(run: JaxRun, model: Model, finished: int) -> None:
    """The backup after `finished` epochs (written by the writer alone: the state is already on every host)."""
    if not run.writer:
        return
    start = time.perf_counter()
    load_into_host(model, state_to_host(model.state))
    run.reliability["backups_written"] += 1
    jax_backup.write(model.host, run.out, epoch=finished, identity=run.cfg.identity(),
                     world_size=run.placement.world_size, records=run.records, timing=run.timing,
                     reliability=run.reliability, writer=True)
    run.reliability["backup_time_s"] += time.perf_counter() - start
