"""The engine process's half of the error protocol: report a failure to the launcher in one line.

An engine process (`launch/child.py`'s entry, a `pvision linktest` rank) writes its expected failure
as a small JSON file (type, one-line message, exit code) at the path the launcher named in its
environment; the launcher re-raises it as the same error type (`errors.error_type`), so the user sees
one line whatever process it happened in. Framework-free; kept out of `errors.py` because it needs
`RunConfig`, and `config.py` imports `errors.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.errors import EngineError, PVisionError


def report_error(exc: BaseException) -> int:
    """Write the error file for the launcher; return the exit code to use."""
    if isinstance(exc, PVisionError):
        payload = {"type": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}
        code = exc.exit_code
    else:
        message = str(exc).strip().splitlines()
        payload = {
            "type": "EngineError",
            "message": f"{type(exc).__name__}: {message[-1] if message else ''}".rstrip(": "),
            "exit_code": 1,
        }
        code = 1
    path = os.environ.get(envvars.ERROR_FILE)
    if path:
        try:
            Path(path).write_text(json.dumps(payload))
        except OSError:
            pass
    return code


#: How the frameworks say a tensor did not fit (matched by name: this process never imports them itself).
_MEMORY_ERRORS = ("OutOfMemoryError", "ResourceExhaustedError", "MemoryError")
_MEMORY_TEXT = ("out of memory", "can't allocate memory", "failed to allocate", "oom when allocating")


def out_of_memory(exc: BaseException, cfg: RunConfig | None) -> EngineError | None:
    """A run that does not fit is the user's configuration to change, so it gets one line, not a traceback."""
    text = str(exc).strip().splitlines()
    first = text[0][:160] if text else ""
    if type(exc).__name__ not in _MEMORY_ERRORS and not any(t in first.lower() for t in _MEMORY_TEXT):
        return None
    what = (f"{cfg.model} at a per-worker batch of {cfg.per_worker_batch} ({cfg.framework} {cfg.strategy})"
            if cfg else "the run")
    return EngineError(f"out of memory: {what} does not fit ({type(exc).__name__}: {first}); "
                       "use a smaller --batch-size, more workers or a smaller model")
