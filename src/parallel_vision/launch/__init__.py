"""The parent side: turn a RunConfig into engine processes and collect their RunResult.

Nothing in this package imports a framework (tests/test_architecture.py proves it): the
frameworks are imported only in the engine processes it starts.
"""

from __future__ import annotations

from parallel_vision.launch.run import run

__all__ = ["run"]
