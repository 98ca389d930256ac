"""Test scenarios played at once, each in its own thread (a helper module, not a conftest).

Most of an end-to-end scenario here is starting Python and a framework, single-threaded, then waiting for a
subprocess: two or three of them played at once overlap on the cores instead of leaving one idle. Only for
scenarios that check no time beyond a generous deadline, and that share nothing (own folders, processes, mounts,
namespaces). A module fixture plays them; each test then re-raises its scenario's outcome, so a failure (an
assertion, pytest.fail, pytest.skip) is reported by the test it belongs to, as if it had run alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def play_together(scenarios: dict[str, Callable[[], None]]) -> dict[str, BaseException | None]:
    """Run every scenario at once; name -> what it raised (None: it passed)."""
    if not scenarios:
        return {}
    with ThreadPoolExecutor(len(scenarios)) as pool:
        futures = {name: pool.submit(scenario) for name, scenario in scenarios.items()}
        return {name: future.exception() for name, future in futures.items()}


def outcome(played: dict[str, BaseException | None], name: str) -> None:
    """Re-raise what scenario `name` raised, in the test that reports it."""
    error = played[name]
    if error is not None:
        raise error


def pvision_at_once(jobs: list[list[str]], timeout: float = 300) -> None:
    """Run `pvision JOB` for every job at once (fresh interpreters) and require each to succeed: most of a small
    run is starting Python and torch, so a few together take about the time of one."""
    env = {**os.environ, "COLUMNS": "160"}
    procs = [subprocess.Popen([sys.executable, "-m", "parallel_vision", *job], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for job in jobs]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for job, p, (_, err) in zip(jobs, procs, outs, strict=True):
        assert p.returncode == 0, f"{job[0]} {job[-1]}: {err[-2000:]}"
