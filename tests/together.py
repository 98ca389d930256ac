"""Test scenarios played at once, each in its own thread (a helper module, not a conftest).

Most of an end-to-end scenario here is starting Python and a framework, single-threaded, then waiting for a
subprocess: two or three of them played at once overlap on the cores instead of leaving one idle. Only for
scenarios that check no time beyond a generous deadline, and that share nothing (own folders, processes, mounts,
namespaces). A module fixture plays them; each test then re-raises its scenario's outcome, so a failure (an
assertion, pytest.fail, pytest.skip) is reported by the test it belongs to, as if it had run alone.
"""

from __future__ import annotations

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
