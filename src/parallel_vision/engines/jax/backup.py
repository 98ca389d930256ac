"""Epoch-end backups of a JAX run under `OUT/jax_backup/`: the shared Keras format (engines/keras_backup.py).

Weights and the optimiser's slots are saved from a plain single-device copy of the trained state at every
epoch end; `--resume` reloads them and continues at the first unfinished epoch. Not bit-exact: the data order
of epoch e is drawn from (seed, e), so a resumed epoch sees the same order as an uninterrupted run, but the
dropout generator restarts from its saved state.
"""

from __future__ import annotations

from parallel_vision.engines.keras_backup import STATE_FILE, KerasBackups

BACKUP_DIR = "jax_backup"
KIND = "parallel_vision.jax.backup"

BACKUPS = KerasBackups(folder=BACKUP_DIR, kind=KIND, label="JAX")
backup_dir = BACKUPS.backup_dir
present = BACKUPS.present
info = BACKUPS.info
describe = BACKUPS.describe
kept_note = BACKUPS.kept_note
remove = BACKUPS.remove
read = BACKUPS.read
write = BACKUPS.write

__all__ = ["BACKUPS", "BACKUP_DIR", "KIND", "STATE_FILE", "backup_dir", "describe", "info", "kept_note", "present",
           "read", "remove", "write"]
