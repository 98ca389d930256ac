"""The lost-peer watchdog's parts, without a process group (docs/reliability.md, "A lost peer").

The end-to-end case (a SIGSTOPped DDP worker on loopback, exit 75, resume) is
tests/test_elastic.py::test_a_partitioned_peer_ends_the_run_within_the_collective_timeout.
"""

from __future__ import annotations

import threading
import time

import pytest

from parallel_vision.engines.torch import watchdog
from parallel_vision.errors import ConfigError, PeerLostError, error_type

DOGS: list[watchdog.Watchdog] = []
PEERS = [{"host": "a", "address": "10.0.0.1"}, {"host": "b", "address": "10.0.0.2"}]


class Store:
    """A rendezvous store's `add`, in memory; `hang` makes it stop answering (its host is the lost peer)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.hang = False

    def add(self, key: str, n: int) -> int:
        while self.hang:
            time.sleep(1)
        self.counts[key] = self.counts.get(key, 0) + n
        return self.counts[key]


def _fired(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[str]]:
    fired, messages = threading.Event(), []

    def exit_with(message: str, rank: int) -> None:  # instead of ending the test process: stop every watchdog
        messages.append(message)
        fired.set()
        for dog in list(DOGS):
            dog.stop()

    monkeypatch.setattr(watchdog, "exit_with", exit_with)
    monkeypatch.setattr(watchdog, "BEAT_S", 0.05)
    return fired, messages


def test_option_wins_over_the_environment_which_wins_over_300(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PVISION_DIST_TIMEOUT_S", raising=False)
    assert watchdog.timeout_s(None) == 300.0
    monkeypatch.setenv("PVISION_DIST_TIMEOUT_S", "60")
    assert watchdog.timeout_s(None) == 60.0 and watchdog.timeout_s(5) == 5.0
    monkeypatch.setenv("PVISION_DIST_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="PVISION_DIST_TIMEOUT_S must be a number"):
        watchdog.timeout_s(None)
    assert PeerLostError.exit_code == 75 and error_type("PeerLostError") is PeerLostError


def test_no_progress_names_the_silent_rank_what_waited_and_the_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    fired, messages = _fired(monkeypatch)
    dog = watchdog.Watchdog(0, 2, 0.3, Store(), PEERS, lambda: "runs/a/checkpoint.pt (epoch 2 step 3)")
    DOGS.append(dog)
    dog.start()
    try:
        for step in (1, 2):  # quick steps: the bound is the timeout, not 20 x their median
            dog.begin(f"the all-reduce of step {step} of epoch 2", "step")
            dog.done("step")
        assert dog.bound() == 0.3
        dog.begin("the all-reduce of step 3 of epoch 2", "step")  # ... and rank 1 never answers
        assert fired.wait(10), "the watchdog did not fire"
    finally:
        dog.stop()
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith("peer lost: rank 1 (host b, 10.0.0.2) stopped answering while rank 0 (host a, "
                                  "10.0.0.1) waited in the all-reduce of step 3 of epoch 2 (nothing completed for ")
    assert messages[0].endswith("; the last checkpoint kept: runs/a/checkpoint.pt (epoch 2 step 3); continue with "
                                "--resume once every worker is reachable")


def test_a_silent_store_names_its_host_rank_0(monkeypatch: pytest.MonkeyPatch) -> None:
    fired, messages = _fired(monkeypatch)
    store = Store()
    store.hang = True
    dog = watchdog.Watchdog(1, 2, 0.2, store, PEERS, lambda: "none had been written yet")
    DOGS.append(dog)
    dog.start()
    try:
        dog.begin("the evaluation after epoch 1", "evaluation")
        assert fired.wait(10)
    finally:
        dog.stop()
        store.hang = False
    assert messages[0].startswith("peer lost: the rendezvous store's host, rank 0 (host a, 10.0.0.1), stopped "
                                  "answering while rank 1 (host b, 10.0.0.2) waited in the evaluation after epoch 1")


def test_the_bound_follows_slow_phases_and_a_slow_first_epoch_warns() -> None:
    dog = watchdog.Watchdog(0, 2, 300.0, Store(), PEERS, lambda: "")
    assert watchdog.timeout_warning(dog) is None
    dog.durations["step"] = [20.0, 20.0, 20.0]
    dog.kind = "step"
    assert dog.bound() == watchdog.K * 20.0  # 400 s: steps this slow stretch the bound past the timeout
    dog.slowest.update(step=20.0, evaluation=130.0)
    assert watchdog.timeout_warning(dog) == (
        "pvision: warning: the slowest evaluation took 130 s, more than a third of the collective timeout (300 s): "
        "a slow phase may be taken for a lost peer; set --collective-timeout 420 (or PVISION_DIST_TIMEOUT_S=420)")
    dog.slowest["evaluation"] = 90.0
    assert watchdog.timeout_warning(dog) is None


def test_stop_waits_for_a_heartbeat_inside_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process group is destroyed right after stop(): a heartbeat still inside a store call then would
    abort the worker in C++ (seen as a DDP worker dying with SIGABRT at the end of a run)."""
    monkeypatch.setattr(watchdog, "BEAT_S", 0.01)
    entered = threading.Event()

    class SlowStore(Store):
        def add(self, key: str, n: int) -> int:
            entered.set()
            time.sleep(0.3)
            return super().add(key, n)

    dog = watchdog.Watchdog(rank=0, world=2, timeout=300.0, store=SlowStore(), peers=PEERS,
                            last_checkpoint=lambda: "").start()
    assert entered.wait(5)
    dog.stop()
    assert not any(t.is_alive() for t in dog._threads)


#: gloo's and the store's words, as seen (docs/multinode.md, benchmarks/results/*partition_netns.log).
NO_ROUTE = ("Got the following error when running the callback: RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/"
            "gloo/transport/tcp/pair.cc:537] Read error [10.201.0.2]:64675: No route to host. This is typically caused "
            "by a remote worker hanging or bugs in the application.")


@pytest.mark.parametrize(("text", "lost", "detail"), [
    ("[pair.cc:534] Timed out waiting 5000ms for recv operation to complete", True,
     "a collective waited the 300 s timeout: Timed out waiting 5000ms for recv operation to complete"),
    (NO_ROUTE, True, "the connection to a peer failed: Read error [10.201.0.2]:64675: No route to host"),
    ("RendezvousConnectionError: DistNetworkError: Connection timed out", True,
     "the connection to a peer failed: Connection timed out"),
    ("[pair.cc:152] Write error [10.0.0.2]:5000: Network is unreachable", True,
     "the connection to a peer failed: Write error [10.0.0.2]:5000: Network is unreachable"),
    # a peer whose process died resets its connections: reported as before, not as a lost peer
    ("[pair.cc:534] Connection closed by peer [10.0.0.2]:5000", False, None),
    ("Read error [10.0.0.2]:5000: Connection reset by peer", False, None),
    ("connect [10.0.0.2]:5000: Connection refused", False, None),
])
def test_unreachable_host_errors_are_a_lost_peer_like_a_timeout(text: str, lost: bool, detail: str | None) -> None:
    """A cut link may surface as the kernel's error before the collective timeout ("No route to host" once ARP
    gives up, "Connection timed out" once TCP does): exit 75 with the lost-peer line, not exit 2."""
    exc = RuntimeError(text)
    assert watchdog.is_peer_timeout(exc) is lost
    if detail is not None:
        assert watchdog.lost_detail(exc, 300.0) == detail


def test_the_lost_peer_line_carries_the_unreachable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _, messages = _fired(monkeypatch)
    dog = watchdog.Watchdog(0, 2, 300.0, Store(), PEERS, lambda: "runs/a/checkpoint.pt (after epoch 1)")
    dog.begin("the all-reduce of step 5 of epoch 2", "step")
    dog.peer_lost(watchdog.lost_detail(RuntimeError(NO_ROUTE), 300.0), RuntimeError(NO_ROUTE))
    # no heartbeat thread runs here: rank 1's counter stands still, so rank 1 is the one named
    assert messages == ["peer lost: rank 1 (host b, 10.0.0.2) stopped answering while rank 0 (host a, 10.0.0.1) "
                        "waited in the all-reduce of step 5 of epoch 2 (the connection to a peer failed: Read error "
                        "[10.201.0.2]:64675: No route to host); the last checkpoint kept: runs/a/checkpoint.pt "
                        "(after epoch 1); continue with --resume once every worker is reachable"]
