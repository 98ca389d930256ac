"""Epoch-end backups of a Keras run (TensorFlow or JAX backend), and resuming from them (`--resume`).

Keras ships `keras.callbacks.BackupAndRestore`, and this keeps its contract: the
weights (with the optimiser's slots) are saved at every epoch end, and a resumed
run starts at the first unfinished epoch, which is run again from its start.
We do not use the callback itself because in Keras 3 it (a) overwrites its one
weights file in place, so a kill during the write loses the run; (b) has every
multi-worker process write the same files; (c) cannot tell a backup written by
a different configuration from its own; and (d) keeps nothing of the finished
epochs' measurements, which a resumed `result.json` needs.

Layout, under `OUT/<engine>_backup/`: `epoch-NNNN.weights.h5` (Keras `save_weights`
into memory, then written atomically like every file: temp name, fsync, rename)
and `state.json` (written atomically after the weights it names): configuration
identity, finished epochs, their records and the timing so far. A crash at any
moment leaves `state.json` naming a complete weights file; older weights are
removed only after the new state is in place.

No framework is imported here; the engine passes the model in. Each engine that
backs up this way has one `KerasBackups` (its folder name and kind); the TensorFlow
engine's is `engines/tensorflow/backup.py`, the JAX engine's `engines/jax/backup.py`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.config import differing_fields
from parallel_vision.errors import ConfigError, DiskFullError, EngineError

STATE_FILE = "state.json"
FORMAT = 1


@dataclass
class Backup:
    """What a resumed run takes over from the backup."""

    epoch: int  # epochs finished (the resumed run starts at this 0-based epoch)
    weights: Path
    records: list[dict[str, Any]]
    timing: dict[str, Any]
    reliability: dict[str, Any] = field(default_factory=dict)


class _NamedBuffer(io.BytesIO):
    """An in-memory file that Keras' savers accept: they check the name's suffix (`str(path)`) and
    write a BytesIO like a file."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def __str__(self) -> str:
        return self._name


@contextmanager
def _scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pvision-keras-backup-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def keras_bytes(save: Any, name: str) -> bytes:
    """What `save(path)` (a Keras `model.save` / `save_weights`) would write to a file called `name`.

    Saving into memory first, then writing through `parallel_vision.atomic`, keeps h5py away
    from a full disk: h5py 3.14 crashes the whole process (SIGSEGV) when a write fails with
    ENOSPC. A Keras that refuses file objects gets a scratch file in the system temp folder.
    """
    buffer = _NamedBuffer(name)
    try:
        save(buffer)
        return buffer.getvalue()
    except (TypeError, ValueError, AttributeError):
        with _scratch_dir() as scratch:
            save(str(scratch / name))
            return (scratch / name).read_bytes()


@dataclass(frozen=True)
class KerasBackups:
    """One engine's epoch-end backups: the folder they live in under OUT and the kind named in state.json."""

    folder: str
    kind: str
    label: str  # e.g. "TensorFlow", in messages

    def backup_dir(self, out: str | os.PathLike[str]) -> Path:
        return Path(out) / self.folder

    def present(self, out: str | os.PathLike[str]) -> bool:
        return (self.backup_dir(out) / STATE_FILE).exists()

    def info(self, out: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The backup's state (None when absent or unreadable); for the launcher's messages."""
        try:
            data = json.loads((self.backup_dir(out) / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def describe(self, out: str | os.PathLike[str]) -> str:
        """Where the unfinished run stands, for the launcher's messages."""
        epoch = (self.info(out) or {}).get("epoch")
        return f"backup after epoch {epoch}" if isinstance(epoch, int) else "a backup"

    def kept_note(self, out: str | os.PathLike[str]) -> str:
        """What survives a failed write in OUT, for a one-line error: the last epoch-end backup, if any."""
        state = self.info(out)
        if state is None or not isinstance(state.get("epoch"), int):
            return "no epoch-end backup had been written yet"
        return (f"the last epoch-end backup (after epoch {state['epoch']}) is kept in {self.backup_dir(out)}; "
                "continue with --resume once space is freed")

    def remove(self, out: str | os.PathLike[str]) -> None:
        shutil.rmtree(self.backup_dir(out), ignore_errors=True)

    def read(self, out: str | os.PathLike[str], identity: dict[str, Any], world_size: int) -> Backup | None:
        """The backup in OUT if there is one; a backup of another configuration is a one-line ConfigError."""

        path = self.backup_dir(out) / STATE_FILE
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text())
            if not isinstance(state, dict) or state.get("kind") != self.kind:
                raise ValueError(f"not a parallel_vision {self.label} backup")
            if state.get("format") != FORMAT:
                raise ValueError(f"format {state.get('format')!r}, this version reads {FORMAT}")
            epoch = int(state["epoch"])
            weights = self.backup_dir(out) / str(state["weights"])
            records = list(state["records"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EngineError(
                f"{path} is not a readable backup ({str(exc)[:160]}); run again with --overwrite to start from the "
                "beginning, or put back a last-good copy of the backup if you keep one") from None
        old = state.get("config_identity")
        if old != identity:
            fields = differing_fields(old if isinstance(old, dict) else {}, identity)
            shown = ", ".join(fields[:4]) + (f" and {len(fields) - 4} more" if len(fields) > 4 else "")
            raise ConfigError(f"{path} was written by a different configuration ({shown}); "
                              "use another --out, or --overwrite to start again")
        if int(state.get("world_size", world_size)) != world_size:
            raise ConfigError(
                f"{path} was written by {state.get('world_size')} replicas, this run has {world_size}")
        if not weights.exists():
            raise EngineError(
                f"{path} names {weights.name}, which is missing; delete the backup or use --overwrite")
        return Backup(epoch=epoch, weights=weights, records=records, timing=dict(state.get("timing") or {}),
                      reliability=dict(state.get("reliability") or {}))

    def write(
        self,
        model: Any,
        out: str | os.PathLike[str],
        *,
        epoch: int,
        identity: dict[str, Any],
        world_size: int,
        records: list[dict[str, Any]],
        timing: dict[str, Any],
        reliability: dict[str, Any],
        writer: bool,
    ) -> None:
        """Back up the state after `epoch` finished epochs.

        Every worker calls this: in a multi-worker run reading the variables may take part in a
        collective. Only the writer's copy is kept; the others save into memory and drop it.
        """
        name = f"epoch-{epoch:04d}.weights.h5"
        weights = keras_bytes(model.save_weights, name)  # every worker: reading the variables may be a collective
        if not writer:
            return
        folder = self.backup_dir(out)
        kept = self.kept_note(out)
        atomic_write_bytes(folder / name, weights, kept=kept)
        state = {
            "kind": self.kind,
            "format": FORMAT,
            "config_identity": identity,
            "world_size": world_size,
            "epoch": epoch,
            "weights": name,
            "records": records,
            "timing": timing,
            "reliability": reliability,
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            atomic_write_bytes(folder / STATE_FILE, (json.dumps(state, indent=2) + "\n").encode(), kept=kept)
        except DiskFullError:
            previous = self.info(out)
            if not previous or previous.get("weights") != name:
                (folder / name).unlink(missing_ok=True)  # named by no state: give its space back
            raise
        for stale in [*folder.glob("*.weights.h5"), *folder.glob(".*.tmp")]:  # older epochs, a crashed write's temp
            if stale.name != name:
                stale.unlink(missing_ok=True)
