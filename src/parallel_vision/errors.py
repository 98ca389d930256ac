"""Expected failures and their exit codes.

Anything raised as a `PVisionError` is a user-facing problem (bad data, an
impossible configuration, a busy port): the CLI prints its message on one line
and exits with `exit_code`, without a traceback unless `--debug` is given.
"""

from __future__ import annotations


class PVisionError(Exception):
    """Base class of every expected, user-facing failure."""

    exit_code: int = 2


class DataError(PVisionError, ValueError):
    """A dataset file is missing, corrupt, truncated or fails its checksum."""


class ConfigError(PVisionError, ValueError):
    """A run configuration is invalid or impossible on this machine."""


class ResultsError(PVisionError):
    """A results database or result file is missing, empty or corrupt."""


class EngineError(PVisionError):
    """A training engine process failed; the message carries its last error line."""


class DiskFullError(PVisionError):
    """A write ran out of disk space (or quota); the message names the file, its size and what is kept.

    Raised by `parallel_vision.atomic` (and the SQLite store, TensorBoard logs) instead of a bare
    `OSError: [Errno 28]`; a failed atomic write leaves no partial file and the previous file intact.
    """

    def __init__(self, message: str, path: str | None = None, size: int | None = None, quota: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.size = size
        self.quota = quota  # EDQUOT (the user's quota), not ENOSPC (the filesystem)


class PeerLostError(PVisionError):
    """A DDP peer stopped answering (a partitioned or frozen host): a collective or the step-progress watchdog
    waited the collective timeout. Its own exit code, EX_TEMPFAIL, so `torchrun --max-restarts` and schedulers
    can tell it from a configuration or data error and retry (docs/reliability.md)."""

    exit_code = 75


class RunInterrupted(PVisionError):
    """A run was stopped by a signal after saving what it had."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def known_error(name: str) -> type[PVisionError] | None:
    """The error class named `name` (`ConfigError`, or qualified: `parallel_vision.errors.ConfigError`),
    None if it is none of ours: the one lookup every process boundary uses (the launcher reading a
    child's error file, the DDP spawn parent reading a worker's traceback, ranks sharing a resume error)."""
    known = {cls.__name__: cls for cls in PVisionError.__subclasses__()}
    return known.get(name.rsplit(".", 1)[-1])


def error_type(name: str) -> type[PVisionError]:
    """The error class a child process named in its error report (EngineError if unknown), so an
    expected failure keeps its type and exit code across the process boundary."""
    return known_error(name) or EngineError
