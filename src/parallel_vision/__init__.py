"""Parallel Vision: data-parallel training of the paper's CNN, measured honestly.

The package never imports torch or TensorFlow at import time: engines run in
their own processes, and the parent only sees configs and results.
"""

from __future__ import annotations

from parallel_vision.version import __version__

__all__ = ["__version__", "run"]


def run(config):  # type: ignore[no-untyped-def]
    """Run one training configuration in a child process and return its RunResult."""
    from parallel_vision.launch import run as _run

    return _run(config)
