"""Epoch-end backups of a JAX run under `OUT/jax_backup/`: the Keras layer's format (engines/keras/backup.py),
bound to this engine's folder and kind, for the engine (through `JaxRun.BACKUPS`) and the launcher.

Weights and the optimiser's slots are saved from a plain single-device copy of the trained state at every
epoch end; `--resume` reloads them and continues at the first unfinished epoch. Not bit-exact: the data order
of epoch e is drawn from (seed, e), so a resumed epoch sees the same order as an uninterrupted run, but the
dropout generator restarts from its saved state.
"""

from __future__ import annotations

from parallel_vision.engines.keras.backup import FORMAT, STATE_FILE, KerasBackups

BACKUPS = KerasBackups(folder="jax_backup", kind="parallel_vision.jax.backup", label="JAX")
BACKUP_DIR, KIND = BACKUPS.folder, BACKUPS.kind
present, describe, remove, info, read = BACKUPS.present, BACKUPS.describe, BACKUPS.remove, BACKUPS.info, BACKUPS.read

__all__ = ["BACKUPS", "BACKUP_DIR", "FORMAT", "KIND", "STATE_FILE", "describe", "info", "present", "read", "remove"]
