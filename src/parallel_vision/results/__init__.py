"""Run results: the versioned RunResult schema, its files, and the SQLite store."""

from parallel_vision.results.run_result import RunResult
from parallel_vision.results.schema import (
    SCHEMA_VERSION,
    atomic_write_bytes,
    read_result,
    summarise_epochs,
    validate_result,
    write_result,
)

__all__ = [
    "SCHEMA_VERSION",
    "RunResult",
    "atomic_write_bytes",
    "read_result",
    "summarise_epochs",
    "validate_result",
    "write_result",
]
