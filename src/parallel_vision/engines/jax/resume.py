"""The epoch-end backups inside a JAX run: the Keras layer's restore and back-up (engines/keras/resume.py)
with what is JAX's. Written by the writer after every epoch from the single-device `host` copy; `--resume`
loads the last one into that copy and replicates its values as the starting state, every process reading the
same backup."""

from __future__ import annotations

import numpy as np

from parallel_vision.engines.jax.data import Feeder
from parallel_vision.engines.jax.model import Model, host_state, load_into_host, state_to_host
from parallel_vision.engines.jax.setup import JaxRun
from parallel_vision.engines.keras import resume
from parallel_vision.engines.keras.backup import Backup


def restore(run: JaxRun, model: Model, feeder: Feeder) -> None:
    """Under `--resume`, load the last epoch-end backup into the state, each array in its variable's layout
    (sets `run.start_epoch`)."""
    def load(backup: Backup) -> None:
        model.host.load_weights(str(backup.weights))
        trainable, non_trainable, slots = host_state(model)
        model.state = (*feeder.place((trainable, non_trainable, slots), model.shardings), model.state[3])

    resume.restore(run, load=load, agree=lambda epoch: agree_on_start(run, feeder, epoch))


def agree_on_start(run: JaxRun, feeder: Feeder, epoch: int) -> None:
    """Every process must resume from the same epoch, or the collectives would hang: max − min over the
    processes' epochs, computed in one small SPMD program."""
    n = run.placement.processes
    epochs = np.full(n, epoch, np.int32)  # this process's row is its own epoch
    (global_epochs,) = feeder.put(epochs)
    spread = run.jax.jit(lambda e: e.max() - e.min(), out_shardings=feeder.replicated)(global_epochs)
    if int(np.asarray(spread.addressable_shards[0].data)) != 0:
        raise resume.disagreement(epoch)


def back_up(run: JaxRun, model: Model, finished: int) -> None:
    """The backup after `finished` epochs (written by the writer alone: the state is already on every host)."""
    if not run.writer:
        return

    def host_copy() -> object:
        load_into_host(model, state_to_host(model.state))
        return model.host

    resume.back_up(run, finished, host_copy)
