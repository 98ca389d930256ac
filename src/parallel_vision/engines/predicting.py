"""The framework-free half of an engine's predict module (`EngineSpec.predict`): the child process's
arguments, files and error protocol. The module itself only says how its framework turns inputs into logits.

    python -m parallel_vision.engines.<x>.predict RUN INPUTS.npy LOGITS.npy

INPUTS.npy: normalised NHWC float32 images; LOGITS.npy: float32 (N, classes). An expected failure is reported
to the parent through `failure.report_error` (the launcher's protocol: one line, the same error type).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from parallel_vision import envvars
from parallel_vision.config import RunConfig
from parallel_vision.errors import EngineError, PVisionError, RunInterrupted
from parallel_vision.failure import report_error

#: (run folder, its config, inputs) -> logits: what each framework's predict module provides.
Logits = Callable[[Path, RunConfig, np.ndarray], np.ndarray]


def could_not_load(path: Path, exc: BaseException) -> EngineError:
    """One line for a saved model its framework refuses (damaged, or saved by another version)."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return EngineError(f"{path} could not be loaded ({type(exc).__name__}: {first})")


def child_main(argv: list[str], logits: Logits) -> int:
    """Run `logits` on INPUTS.npy for RUN's model and save LOGITS.npy; the exit code."""
    if len(argv) != 4:
        print(f"usage: python -m {argv[0]} RUN INPUTS.npy LOGITS.npy", file=sys.stderr)
        return 2

    def body() -> None:
        run = Path(argv[1])
        cfg = RunConfig.from_json((run / "config.json").read_text())
        result = logits(run, cfg, np.load(argv[2]))
        np.save(argv[3], np.asarray(result, dtype=np.float32))

    return guarded(body)


def explain_main(argv: list[str], explain: Callable[[Path, Path], None]) -> int:
    """`pvision explain`'s child (`python -m … RUN FOLDER`): `explain(run, folder)` guarded; the exit code."""
    if len(argv) != 3:
        print(f"usage: python -m {argv[0]} RUN FOLDER", file=sys.stderr)
        return 2
    return guarded(lambda: explain(Path(argv[1]), Path(argv[2])))


def guarded(body: Callable[[], None]) -> int:
    """Run a child's `body`; the exit code, every failure reported to the parent as one line (also used by
    `pvision explain`'s children)."""
    try:
        body()
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent as one line
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        if isinstance(exc, KeyboardInterrupt):
            exc = RunInterrupted("interrupted", exit_code=130)
        code = report_error(exc)
        if not isinstance(exc, PVisionError) or os.environ.get(envvars.DEBUG):
            traceback.print_exc()
        return code
    return 0
