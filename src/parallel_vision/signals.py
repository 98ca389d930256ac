"""SIGINT/SIGTERM as a request to stop cleanly, and forwarding them to child processes.

A training process records the signal and carries on to the end of the current
step; the loop then checkpoints, writes a partial result and exits 128 + the
signal number (130 for SIGINT, 143 for SIGTERM). A process that owns children
(the launcher, the DDP spawn parent) forwards the signal to them and waits.

A terminal's Ctrl-C reaches every process of the foreground group at once, and
the forwarded copy arrives again a moment later: repeats within
`FORCE_AFTER_S` are the same request. A repeat after that means "now": the
default action of the signal runs (the last good checkpoint is still on disk).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER_S = 2.0


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signum)


def name(signum: int) -> str:
    """'SIGINT', 'SIGTERM', … ('signal N' for a number the platform has no name for)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_in(message: str, default: int = 130) -> int:
    """The exit code a 'stopped by SIGxxx' message stands for (how a worker's stop reaches its parent)."""
    match = re.search(r"\bby (SIG[A-Z]+)\b", message)
    if match:
        try:
            return exit_code(signal.Signals[match.group(1)])
        except KeyError:
            pass
    return default


class StopRequest:
    """Records SIGINT/SIGTERM; `forward_to` also passes each one on to child processes."""

    def __init__(self, forward_to: Callable[[], Iterable[int]] | None = None) -> None:
        self.signum: int | None = None
        self.first_at: float | None = None
        self._forward_to = forward_to
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return name(self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        now = time.monotonic()
        if self.signum is None:
            self.signum, self.first_at = signum, now
        elif self.first_at is not None and now - self.first_at > FORCE_AFTER_S:
            self.restore()  # asked again, later: stop now, the default way
            os.kill(os.getpid(), signum)
            return
        if self._forward_to is not None:
            for pid in list(self._forward_to()):
                try:
                    os.kill(pid, signum)
                except (ProcessLookupError, PermissionError):
                    pass

    def install(self) -> StopRequest:
        """Take over SIGINT and SIGTERM (only possible in the main thread; elsewhere a no-op)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return self  # already installed, or not possible here
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            try:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, TypeError):
                pass
        self._previous.clear()

    def __enter__(self) -> StopRequest:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()
