"""The engines this installation has: every package under `engines/` that defines `ENGINE`.

A new engine joins by adding a package (see docs/architecture.md); nothing else lists them.
Importing an engine package loads no framework, so the launcher can ask the registry freely.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from parallel_vision.config import RunConfig
from parallel_vision.engines.spec import EngineSpec
from parallel_vision.errors import ConfigError

_ENGINES_DIR = Path(__file__).parent


@cache
def engines() -> dict[str, EngineSpec]:
    """framework name -> its EngineSpec, for every engine package found."""
    found: dict[str, EngineSpec] = {}
    for info in sorted(pkgutil.iter_modules([str(_ENGINES_DIR)]), key=lambda i: i.name):
        if not info.ispkg:
            continue
        spec = getattr(importlib.import_module(f"parallel_vision.engines.{info.name}"), "ENGINE", None)
        if isinstance(spec, EngineSpec):
            found[spec.framework] = spec
    return found


def get(framework: str) -> EngineSpec:
    try:
        return engines()[framework]
    except KeyError:
        raise ConfigError(f"no engine for framework {framework!r}; installed: {', '.join(engines())}") from None


def run_engine(cfg: RunConfig) -> None:
    """Run `cfg` in this process with its framework's engine (this is where the framework is imported)."""
    get(cfg.framework).load_entry()(cfg)
