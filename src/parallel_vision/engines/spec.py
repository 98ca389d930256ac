"""What the launcher may know about an engine, without importing its framework.

Each engine package (`engines/<framework>/__init__.py`) defines one `ENGINE = EngineSpec(...)`;
the registry finds them. Everything here is plain data and framework-free callables: the
training code itself (`entry`) is imported only inside the engine process.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parallel_vision.config import RunConfig

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ResumeFiles:
    """How an engine leaves an unfinished run in its output folder (checkpoint, backup)."""

    present: Callable[[PathLike], bool]
    """Does `out` hold an unfinished run of this engine?"""
    describe: Callable[[Path], str]
    """A few words on where it stands, e.g. 'checkpoint after epoch 2'."""
    remove: Callable[[PathLike], None]
    """Delete it (a run started again with --overwrite must never resume it)."""
    auto_resume: Callable[[PathLike], bool] = lambda out: False
    """True when an external launcher restarted this very run (torchrun), so it resumes unasked."""


@dataclass(frozen=True)
class EngineSpec:
    """One framework's engine, as the launcher sees it."""

    framework: str
    strategies: tuple[str, ...]
    entry: str
    """`module:function` that runs a RunConfig in the current process (imports the framework)."""
    resume: ResumeFiles

    def load_entry(self) -> Callable[[RunConfig], None]:
        """Import the training code (and so the framework): only ever inside an engine process."""
        module, _, function = self.entry.partition(":")
        return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]
