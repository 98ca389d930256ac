"""TensorBoard scalars without a framework: event files written with the `tensorboard` package's protobufs and
record framing (neither imports TensorFlow), for an engine process that must not load TensorFlow (JAX).

Same layout as the other engines' logs: `OUT/tb/events.out.tfevents.<time>.<host>.<pid>`, one scalar per
key per epoch (step = epoch number). A full disk is a one-line DiskFullError (engines.outputs).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any


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
        self._records.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        self.flush()

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
