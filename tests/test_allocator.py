"""The torch CPU workers' C allocator (allocator.py): what the launcher preloads, and what a run records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from parallel_vision import allocator, envvars
from parallel_vision.config import RunConfig
from parallel_vision.errors import ConfigError
from parallel_vision.launch.environment import child_environment

INSTALLED = allocator.find_tcmalloc()


def test_glibc_keeps_freed_memory_with_the_tuned_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(envvars.TCMALLOC, "")  # as if none were installed
    assert allocator.resolve("auto") == "glibc"
    assert allocator.environment("auto", True, {}) == envvars.ALLOCATOR
    assert allocator.environment("glibc", False, {}) == {}
    assert allocator.environment("glibc", True, {"MALLOC_MMAP_MAX_": "65536"}) == {
        k: v for k, v in envvars.ALLOCATOR.items() if k != "MALLOC_MMAP_MAX_"}  # the user's own setting wins
    with pytest.raises(ConfigError, match="allocator tcmalloc: no libtcmalloc on this machine"):
        allocator.environment("tcmalloc", True, {})


@pytest.mark.skipif(INSTALLED is None, reason="no libtcmalloc on this machine (.ci/run installs one)")
def test_auto_preloads_an_installed_tcmalloc_and_a_users_preload_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = {"LD_PRELOAD": INSTALLED, "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(2**62)}
    assert allocator.environment("auto", True, {}) == {**quiet, "TCMALLOC_RELEASE_RATE": "0"}
    assert allocator.environment("tcmalloc", False, {}) == quiet
    # A user's own preload wins (glibc's speed variables are still set, for the heap glibc may still run).
    assert allocator.environment("auto", True, {"LD_PRELOAD": "/opt/mine.so"}) == envvars.ALLOCATOR
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    launched = child_environment(RunConfig(), progress=False)
    assert launched["LD_PRELOAD"] == INSTALLED and "MALLOC_MMAP_MAX_" not in launched
    assert "LD_PRELOAD" not in child_environment(RunConfig(framework="tensorflow"), progress=False)


def _recorded(result: Any) -> dict[str, Any]:
    return json.loads((Path(result.out_dir) / "result.json").read_text())


def test_each_run_records_the_allocator_its_workers_ran_on(trained: Any) -> None:
    """The default run (shared with other tests) and glibc's defaults, through the real launcher: the record is
    read from the worker's own memory map, so it shows what ran, not what was asked for; the allocator changes
    where memory comes from, never a number the run computes."""
    from shared_runs import TORCH_SMALL

    default, glibc = trained.together(TORCH_SMALL, dict(TORCH_SMALL, allocator="glibc", malloc_tuning=False))
    a, b = _recorded(default), _recorded(glibc)
    assert a["environment"]["allocator"] == ("tcmalloc" if INSTALLED else "glibc")
    assert b["environment"]["allocator"] == "glibc"
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert a["summary"]["test_accuracy"] == b["summary"]["test_accuracy"]


_RELEASE = """
import json, sys
import numpy as np
from parallel_vision import allocator

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

blocks = [np.ones(2**25) for _ in range(4)]  # 4 x 256 MiB, touched
del blocks
held = rss_mib()
allocator.release_free_memory()
print(json.dumps({"allocator": allocator.running(), "held": held, "released": rss_mib()}))
"""


@pytest.mark.parametrize("choice", ["glibc", "tcmalloc"])
def test_the_heap_training_freed_goes_back_to_the_os(choice: str) -> None:
    """Under either allocator's speed setting a freed GiB stays in the process (that is the setting's point);
    release_free_memory, called once training is over, hands it back."""
    import os
    import subprocess
    import sys

    if choice == "tcmalloc" and INSTALLED is None:
        pytest.skip("no libtcmalloc on this machine (.ci/run installs one)")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(allocator.environment(choice, True, env))
    proc = subprocess.run([sys.executable, "-c", _RELEASE], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["allocator"] == choice
    assert seen["held"] > 900 and seen["released"] < seen["held"] - 800, seen
