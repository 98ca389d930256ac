"""Entry point of an engine process: `python -m parallel_vision.launch.child CONFIG.json`.

It looks the framework up in the engine registry, imports exactly that engine, runs it,
and reports an expected failure to the launcher as a small JSON file (type and one-line
message), so the user sees the same one-line error whatever process it happened in.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.engines.registry import run_engine
from parallel_vision.errors import EngineError, PVisionError, RunInterrupted


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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m parallel_vision.launch.child CONFIG.json", file=sys.stderr)
        return 2
    cfg: RunConfig | None = None
    try:
        cfg = RunConfig.from_json(Path(argv[1]).read_text())
        run_engine(cfg)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the launcher
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        if isinstance(exc, KeyboardInterrupt):
            exc = RunInterrupted("interrupted", exit_code=130)
        exc = out_of_memory(exc, cfg) or exc
        code = report_error(exc)
        if not isinstance(exc, PVisionError) or os.environ.get(envvars.DEBUG):
            traceback.print_exc()
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
