"""Where and with what a result was measured: saved with every run, shown by `pvision info`.

Nothing here imports a framework: package versions come from installed
metadata, and the engines add their device details themselves.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.config import usable_cores

PACKAGES = (
    "parallel-vision",
    "numpy",
    "torch",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "jax",
    "jaxlib",
    "scikit-learn",
    "lightning",
)

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "LD_PRELOAD",
    "TCMALLOC_RELEASE_RATE",
    "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The SIMD and matrix-unit features that decide CPU training speed, in the order they are listed.
MATRIX_FLAGS = ("fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                "amx_bf16", "amx_int8", "amx_fp16")


def cpu_features(cpuinfo: str | None = None) -> set[str]:
    """Every CPU feature /proc/cpuinfo lists (x86's `flags` lines, ARM's `Features` lines); `cpuinfo`: its
    text, for tests. Empty when it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            found.update(line.partition(":")[2].split())
    return found


def cpu_flags() -> list[str]:
    """The SIMD features that decide CPU training speed (AVX-512, VNNI, native bf16/fp16, AMX), as the
    kernel reports them; machines differ, so they are recorded with every result, never assumed."""
    features = cpu_features()
    return [f for f in MATRIX_FLAGS if f in features]


#: CPU features that mean bfloat16 arithmetic in hardware: AVX-512 BF16 and AMX tiles on x86, and ARM's
#: BF16 extension (`bf16` on the `Features` line).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Does this CPU multiply bf16 natively (AVX512-BF16, AMX-BF16, ARM BF16)? Without it bf16 autocast is
    emulated and slower than fp32 (measured 0.36× on a machine without it; docs/performance.md).

    The one answer for both `--precision auto` (engines/levers.py) and result.json's `cpu_native_bf16`;
    `cpuinfo`: /proc/cpuinfo's text, for tests (False when it cannot be read)."""
    features = cpu_features(cpuinfo)
    return any(flag in features for flag in NATIVE_BF16_FLAGS)


def memory_gib() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def git_commit() -> dict[str, Any]:
    """The code's commit and whether the tree had uncommitted changes (None outside a checkout)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def code_version() -> str:
    """A short identity of the code for de-duplicating runs: commit (+dirty) or package version."""
    git = git_commit()
    if git["commit"]:
        return git["commit"][:12] + ("-dirty" if git["dirty"] else "")
    return "v" + (package_versions()["parallel-vision"] or "unknown")


def host_environment() -> dict[str, Any]:
    """Machine, OS, Python, packages, code version and thread settings of this process."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_native_bf16": native_bf16(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gib": memory_gib(),
        "packages": package_versions(),
        "git": git_commit(),
        "code_version": code_version(),
        "thread_env": {k: os.environ.get(k) for k in THREAD_VARIABLES if os.environ.get(k) is not None},
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
