"""Where datasets and decoded-array caches live, in one documented order.

Data: explicit argument > $PVISION_DATA_DIR > user cache. Arrays: $PVISION_CACHE_DIR >
user cache/arrays. The data directory may be read-only (a shared CI copy), so the
array cache is always separate from it.
"""

from __future__ import annotations

import os
from pathlib import Path

from parallel_vision.errors import DataError

DATA_DIR_ENV = "PVISION_DATA_DIR"
CACHE_DIR_ENV = "PVISION_CACHE_DIR"


def user_cache_root() -> Path:
    """$XDG_CACHE_HOME/parallel-vision, else ~/.cache/parallel-vision (XDG ignores relative paths)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "parallel-vision"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The root holding <dataset>/raw/*.gz."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    return Path(env).expanduser() if env else user_cache_root()


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The writable directory for decoded .npy arrays."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV, "")
    return Path(env).expanduser() if env else user_cache_root() / "arrays"


def absolute(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute against this process's working directory (`~` expanded, symlinks kept).

    Relative paths are resolved once, at the entry point, because engine processes and
    tests may run in another working directory than the user's shell.
    """
    return Path(os.path.abspath(Path(path).expanduser()))


def absolutize_environment(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Rewrite relative $PVISION_DATA_DIR / $PVISION_CACHE_DIR as absolute paths, in place.

    Called once by the command line's entry point, so every child process (which may
    start elsewhere, e.g. under torchrun) reads the folder the user meant.
    """
    env = os.environ if environ is None else environ
    for name in (DATA_DIR_ENV, CACHE_DIR_ENV):
        value = env.get(name, "")
        if value:
            env[name] = str(absolute(value))


def raw_dir(root: Path, dataset: str) -> Path:
    return root / dataset / "raw"


def require_readable_dir(path: Path) -> None:
    """Fail with the directory's name, rather than as a confusing 'file missing' later."""
    if not path.exists():
        raise DataError(f"data directory {path} does not exist")
    if not path.is_dir():
        raise DataError(f"data directory {path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"data directory {path} is not readable")
