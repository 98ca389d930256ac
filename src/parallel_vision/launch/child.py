"""Entry point of an engine process: `python -m parallel_vision.launch.child CONFIG.json`.

It looks the framework up in the engine registry, imports exactly that engine, runs it,
and reports an expected failure to the launcher as a small JSON file (type and one-line
message; `failure.report_error`), so the user sees the same one-line error whatever process
it happened in.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.engines.registry import run_engine
from parallel_vision.errors import PVisionError, RunInterrupted
from parallel_vision.failure import out_of_memory, report_error


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
