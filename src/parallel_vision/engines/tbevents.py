"""TensorBoard scalars without a framework, the one writer of every engine: event files written with the
`tensorboard` package's protobufs and record framing (neither imports TensorFlow), so no engine process loads
another framework for its logs (the JAX and torch processes must not load TensorFlow).

Layout: `OUT/tb/events.out.tfevents.<time>.<host>.<pid>`, one scalar per key of `TB_SCALARS` per epoch
(step = epoch number). Written synchronously and fsynced every epoch, so a full disk surfaces at once, in the
training thread, as a one-line DiskFullError naming the event file (engines.outputs.tensorboard_disk_full).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parallel_vision.engines.outputs import TB_DIR, tensorboard_disk_full

#: The scalars of each epoch, under their record keys (the same tags in every engine).
TB_SCALARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_time_s", "images_per_s")


class ScalarWriter:
    """Appends scalar summaries to one event file; flushed after every `write`."""

    def __init__(self, folder: Path) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = event_pb2, summary_pb2
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = folder / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._records = RecordWriter(self._file)
        try:
            self._records.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
            self.flush()
        except OSError:  # a full disk at the first event: nothing is left open
            with contextlib.suppress(OSError):
                self._file.close()
            raise

    def write(self, step: int, scalars: dict[str, Any]) -> None:
        values = [self._summary.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()
                  if v is not None]
        event = self._event.Event(wall_time=time.time(), step=int(step), summary=self._summary.Summary(value=values))
        self._records.write(event.SerializeToString())
        self.flush()

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class TensorBoard:
    """The epoch scalars in OUT/tb when `enabled` (the writing process, with --tensorboard); a no-op otherwise.

    `kept_note(out)` says what survives a full disk (the engine's last checkpoint or epoch-end backup)."""

    def __init__(self, out: Path, enabled: bool, kept_note: Callable[[Path], str]) -> None:
        self.out, self.kept_note = Path(out), kept_note
        self.writer: ScalarWriter | None = None
        if enabled:
            try:
                self.writer = ScalarWriter(self.out / TB_DIR)
            except OSError as exc:
                self._raise(exc, 1)

    def log(self, record: dict[str, Any]) -> None:
        """One epoch's scalars, flushed at once."""
        if self.writer is None:
            return
        try:
            self.writer.write(record["epoch"], {k: record[k] for k in TB_SCALARS})
        except OSError as exc:
            self._raise(exc, len(TB_SCALARS))

    def close(self, quiet: bool = False) -> None:
        """Close (once; later calls do nothing); `quiet` after another error, which is the one to report."""
        writer, self.writer = self.writer, None
        if writer is None:
            return
        try:
            writer.close()
        except OSError as exc:
            if not quiet:
                self._raise(exc, len(TB_SCALARS))

    def _raise(self, exc: OSError, scalars: int) -> None:
        error = tensorboard_disk_full(exc, self.out / TB_DIR, scalars, self.kept_note(self.out))
        if error is exc:
            raise exc
        raise error from None
