"""Every environment variable the launcher and the engine processes share, named once.

The launcher sets them for its children; the engines read them. Keeping the names in one
framework-free module is what lets both sides agree without importing each other.
"""

from __future__ import annotations

#: Where a child writes its error (type, one-line message, exit code) for the launcher.
ERROR_FILE = "PVISION_ERROR_FILE"
#: "1" when the engine may draw a progress bar (the launcher's stderr is a terminal).
PROGRESS = "PVISION_PROGRESS"
#: time.time() when the user's command started: total time counts from there.
LAUNCH_TIME = "PVISION_LAUNCH_TIME"
#: Any value but "" or "0" shows full tracebacks.
DEBUG = "PVISION_DEBUG"
#: Seconds a collective waits for a peer before the run fails (docs/reliability.md).
DIST_TIMEOUT_S = "PVISION_DIST_TIMEOUT_S"

#: Keep glibc from returning freed memory to the OS between steps: measured to matter for CPU
#: training (page faults on every large activation otherwise). A user's own setting always wins.
ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}
#: The tcmalloc library `allocator="auto"/"tcmalloc"` preloads (default: found in the usual library folders);
#: "" behaves as if none were installed (allocator.py).
TCMALLOC = "PVISION_TCMALLOC"
#: Default results folder of `pvision runs`.
RESULTS_DIR = "PVISION_RESULTS_DIR"
#: TEST HOOK, for tests only: "RANK:SECONDS" makes that rank of a torch DDP run sleep SECONDS in every training
#: forward, a straggler on purpose (tests/test_stragglers.py; read by engines/torch/loop.py).
TEST_SLOW_RANK = "PVISION_TEST_SLOW_RANK"
