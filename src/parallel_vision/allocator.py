"""Which C allocator a torch CPU worker runs on, chosen before the process starts (framework-free).

Why it matters: a CPU training step allocates and frees the same few very large activation buffers every step.
glibc's heap, tuned to keep freed memory (`malloc_tuning`), is fast but lets small long-lived allocations split
the large holes, so a worker's peak creeps up over the first dozen steps (2.4–2.6 GiB per DDP worker at batch
2048 × 2); glibc's defaults return the memory but pay ~1 s a step zeroing fresh pages. gperftools' tcmalloc
reuses large spans without that creep at the tuned heap's speed (docs/performance.md, "Issue #31"), so `auto`
takes it where the machine has it and records which one ran. The allocator is preloaded (`LD_PRELOAD`) into the
engine process, whose workers inherit it; a user's own `LD_PRELOAD` always wins.
"""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

from parallel_vision import envvars
from parallel_vision.errors import ConfigError

CHOICES = ("auto", "glibc", "tcmalloc")
#: Where Debian/Ubuntu (`libtcmalloc-minimal4`, `libgoogle-perftools4`), Fedora and conda put gperftools.
_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_tcmalloc() -> str | None:
    """The path of an installed tcmalloc shared library, or None. `PVISION_TCMALLOC` names one explicitly
    ("" means: behave as if none were installed)."""
    explicit = os.environ.get(envvars.TCMALLOC)
    if explicit is not None:
        return explicit if explicit and Path(explicit).is_file() else None
    roots = [Path(os.environ["CONDA_PREFIX"]) / "lib"] if os.environ.get("CONDA_PREFIX") else []
    for root in [*roots, *map(Path, _DIRS)]:
        for name in _NAMES:
            if (root / name).is_file():
                return str(root / name)
    for stem in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(stem)
        if found:
            return found
    return None


def resolve(choice: str) -> str:
    """`auto` → `tcmalloc` where installed, else `glibc`; anything else as given."""
    if choice == "auto":
        return "tcmalloc" if find_tcmalloc() else "glibc"
    return choice


def check(choice: str) -> None:
    """One line where `choice` cannot be honoured on this machine (called before anything is written)."""
    if choice == "tcmalloc" and not find_tcmalloc():
        raise ConfigError("allocator tcmalloc: no libtcmalloc on this machine (install gperftools' "
                          "libtcmalloc-minimal4, or name the library in PVISION_TCMALLOC); or use --allocator auto")


def environment(choice: str, keep_freed: bool, current: dict[str, str]) -> dict[str, str]:
    """The variables a torch CPU engine process starts with for allocator `choice`; `current` is the
    environment they are added to (a user's own settings there are kept)."""
    check(choice)
    env: dict[str, str] = {}
    if resolve(choice) == "tcmalloc" and "LD_PRELOAD" not in current:
        env["LD_PRELOAD"] = str(find_tcmalloc())
        env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] = str(2**62)  # no "tcmalloc: large alloc" lines on stderr
        if keep_freed:
            env["TCMALLOC_RELEASE_RATE"] = "0"  # never hand freed spans back: no page zeroing in the step
    elif keep_freed:
        env.update(envvars.ALLOCATOR)
    return {k: v for k, v in env.items() if k not in current}


def running() -> str:
    """The allocator this process actually runs on, from its memory map (recorded in each result)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if f"lib{name}" in maps:
            return name
    return "glibc"


def release_free_memory() -> None:
    """Hand the memory training freed back to the OS (tcmalloc's free spans, glibc's trimmed heap).

    Why: a worker's peak is set by its training steps, but writing the outputs afterwards (metrics, the model)
    allocates again; from a heap still holding the steps' freed buffers that growth lands on top of the peak.
    Called once training is over, never between steps (where keeping the memory is the point)."""
    import ctypes

    process = ctypes.CDLL(None)
    name = {"tcmalloc": "MallocExtension_ReleaseFreeMemory", "glibc": "malloc_trim"}.get(running())
    release = getattr(process, name, None) if name else None
    if release is not None:
        release(*([0] if name == "malloc_trim" else []))
