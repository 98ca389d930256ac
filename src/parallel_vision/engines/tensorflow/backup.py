"""Epoch-end backups of a TensorFlow run under `OUT/tf_backup/`, and resuming from them (`--resume`).

The format and its code are the Keras layer's (`engines/keras/backup.py`, where the layout and why Keras'
own BackupAndRestore is not used are described); this module only names the folder and the kind, for the
engine (`engines/keras/resume.py` writes and reads through `TFRun.BACKUPS`) and for the launcher's
`ResumeFiles` (present, describe, remove).

Not bit-exact (unlike the PyTorch engine's resume): tf.data's reshuffle and the dropout seed generator
restart from the run's seed, so the resumed epochs see a different (equally random) data order than an
uninterrupted run would. TensorFlow is never imported here.
"""

from __future__ import annotations

from parallel_vision.engines.keras.backup import FORMAT, STATE_FILE, Backup, KerasBackups, keras_bytes

BACKUPS = KerasBackups(folder="tf_backup", kind="parallel_vision.tensorflow.backup", label="TensorFlow")
BACKUP_DIR, KIND = BACKUPS.folder, BACKUPS.kind
backup_dir, present, info, describe = BACKUPS.backup_dir, BACKUPS.present, BACKUPS.info, BACKUPS.describe
kept_note, remove, read, write = BACKUPS.kept_note, BACKUPS.remove, BACKUPS.read, BACKUPS.write

__all__ = ["BACKUP_DIR", "BACKUPS", "FORMAT", "KIND", "STATE_FILE", "Backup", "backup_dir", "describe", "info",
           "keras_bytes", "kept_note", "present", "read", "remove", "write"]
