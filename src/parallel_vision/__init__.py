"""Parallel Vision: data-parallel training of the paper's CNN, measured honestly.

The package never imports torch or TensorFlow at import time: engines run in
their own processes, and the parent only sees configs and results.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "run"]


def run(config):  # type: ignore[no-untyped-def]
    """Run one training configuration in a child process and return its RunResult."""
    from parallel_vision.engines.launch import run as _run

    return _run(config)
