"""Epoch-end backups of a TensorFlow run, and resuming from them (`--resume`).

Keras ships `keras.callbacks.BackupAndRestore`, and this keeps its contract: the
weights (with the optimiser's slots) are saved at every epoch end, and a resumed
`fit` starts at the first unfinished epoch, which is run again from its start.
We do not use the callback itself because in Keras 3 it (a) overwrites its one
weights file in place, so a kill during the write loses the run; (b) has every
`MultiWorkerMirroredStrategy` worker write the same files; (c) cannot tell a
backup written by a different configuration from its own; and (d) keeps nothing
of the finished epochs' measurements, which a resumed `result.json` needs.

Layout, under `OUT/tf_backup/`: `epoch-NNNN.weights.h5` (Keras `save_weights`
into memory, then written atomically like every file: temp name, fsync, rename)
and `state.json` (written atomically after the weights it names): configuration
identity, finished epochs, their records and the timing so far. A crash at any
moment leaves `state.json` naming a complete weights file; older weights are
removed only after the new state is in place.

Not bit-exact (unlike the PyTorch engine's resume): tf.data's reshuffle and the
dropout seed generator restart from the run's seed, so the resumed epochs see a
different (equally random) data order than an uninterrupted run would.

TensorFlow is never imported here; the engine passes the model in. The format and its code are
shared with the JAX engine (`engines/keras_backup.py`); this module binds them to `OUT/tf_backup/`.
"""

from __future__ import annotations

from parallel_vision.engines.keras_backup import FORMAT, STATE_FILE, Backup, KerasBackups, keras_bytes

BACKUP_DIR = "tf_backup"
KIND = "parallel_vision.tensorflow.backup"

BACKUPS = KerasBackups(folder=BACKUP_DIR, kind=KIND, label="TensorFlow")
backup_dir = BACKUPS.backup_dir
present = BACKUPS.present
info = BACKUPS.info
describe = BACKUPS.describe
kept_note = BACKUPS.kept_note
remove = BACKUPS.remove
read = BACKUPS.read
write = BACKUPS.write

__all__ = ["BACKUP_DIR", "BACKUPS", "FORMAT", "KIND", "STATE_FILE", "Backup", "backup_dir", "describe", "info",
           "keras_bytes", "kept_note", "present", "read", "remove", "write"]
