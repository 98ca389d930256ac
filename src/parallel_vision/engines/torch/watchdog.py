"""A lost DDP peer ends the run in bounded time, with one line naming it and exit code 75.

A peer that vanishes without resetting its connections (a partition, a frozen host) leaves the others
blocked in a collective. Two things bound that wait (docs/reliability.md, "A lost peer"):

- the collective timeout (`--collective-timeout`, else `$PVISION_DIST_TIMEOUT_S`, else 300 s) given to
  the process group and its store: gloo raises in the blocked collective;
- the step-progress watchdog, a daemon thread in each worker: when no step, evaluation or checkpoint has
  completed for max(timeout, K x the median duration of that kind of phase), it ends the worker.

Either way the worker finds out who stopped answering: every rank's hostname and address are gathered
once at start-up, and a heartbeat thread per rank bumps a counter in the rendezvous store; the ranks whose
counter no longer moves (or rank 0, when the store it hosts does not answer) are the lost ones. The worker
then ends at once (`os._exit`: its main thread is stuck in C++), with `PeerLostError`'s message handed to
the spawn parent (a file) or, under torchrun, printed as the one `pvision: error:` line.
"""

from __future__ import annotations

import math
import os
import re
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parallel_vision import envvars
from parallel_vision.errors import ConfigError, PeerLostError

#: The watchdog's bound is max(timeout, K x the median duration of the phase kind it waits on).
K = 20
#: Seconds between two heartbeats of a rank (and between two checks of the watchdog).
BEAT_S = 0.5
#: Default seconds of the collective timeout when neither the option nor the environment sets it.
DEFAULT_TIMEOUT_S = 300.0
#: Where a spawned worker leaves its one-line message for the spawn parent (set by dist.spawn).
MESSAGE_DIR_ENV = "PVISION_PEER_LOST_DIR"

#: What gloo and the store say when a peer does not answer within the collective timeout.
_TIMEOUT_TEXT = ("timed out", "timeout")
#: What the kernel says when a peer's host cannot be reached: the link is down or the host is gone (EHOSTUNREACH,
#: ENETUNREACH, and ETIMEDOUT once TCP gives up retransmitting, `net.ipv4.tcp_retries2`). A lost peer as much as
#: a collective timeout; a peer whose process died resets its connections instead ("Connection reset by peer",
#: "closed by peer", "refused"), which is not one of these.
_UNREACHABLE_TEXT = ("no route to host", "network is unreachable", "host is unreachable", "connection timed out")
_UNREACHABLE = re.compile(r"(?:(?:\w+ )*error )?(?:\[[0-9a-fA-F.:]+\]:\d+: )?(?:" + "|".join(_UNREACHABLE_TEXT) + ")",
                          re.IGNORECASE)


def timeout_s(option: float | None) -> float:
    """The collective timeout: `--collective-timeout` when given, else $PVISION_DIST_TIMEOUT_S, else 300 s."""
    if option is not None:
        return max(1.0, float(option))
    raw = os.environ.get(envvars.DIST_TIMEOUT_S)
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(f"{envvars.DIST_TIMEOUT_S} must be a number of seconds; got {raw!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{envvars.DIST_TIMEOUT_S} must be a positive number of seconds; got {raw!r}")
    return max(1.0, seconds)


def my_address() -> dict[str, str]:
    """This worker's host name and the address its peers see (MASTER_ADDR's route; loopback for spawn)."""
    host = socket.gethostname()
    address = "?"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "1"))))
            address = probe.getsockname()[0]
    except (OSError, ValueError):
        pass
    return {"host": host, "address": address}


def is_peer_timeout(exc: BaseException) -> bool:
    """Whether a collective's (or the store's) exception says it waited the timeout for a peer, or that the
    peer's host cannot be reached ("No route to host", "Connection timed out": a cut link). A peer whose
    connections were reset (its process died) is not this: that error is reported as before."""
    text = str(exc).lower()
    return any(t in text for t in _TIMEOUT_TEXT) or _UNREACHABLE.search(text) is not None


def lost_detail(exc: BaseException, timeout: float) -> str:
    """What ended the wait, for the lost-peer line: the kernel's unreachable-host error with the peer's address
    ("Read error [10.0.0.2]:5000: No route to host"), else the collective timeout and its words."""
    found = _UNREACHABLE.search(str(exc))
    if found:
        return f"the connection to a peer failed: {found.group(0).strip()}"
    return f"a collective waited the {timeout:.0f} s timeout: {timeout_text(exc)}"


def timeout_text(exc: BaseException) -> str:
    """The words of a timeout error that matter ("Timed out waiting 5000ms for recv operation to complete")."""
    text = str(exc)
    found = re.search(r"(timed out[^\n;\]\[]*)", text, re.IGNORECASE)
    words = found.group(1) if found else (text.strip().splitlines() or [type(exc).__name__])[0]
    return words.strip().rstrip(".")[:120]


#: The watchdog of this worker's process group (set by dist.run_in_group; None outside a DDP group).
_CURRENT: Watchdog | None = None


def current() -> Watchdog | None:
    return _CURRENT


def start_for(rank: int, world: int, timeout: float) -> Watchdog:
    """Gather every rank's host and address (a collective), start this worker's watchdog and heartbeat."""
    global _CURRENT
    import torch.distributed as dist

    peers: list[Any] = [None] * world
    dist.all_gather_object(peers, my_address())
    store = dist.distributed_c10d._get_default_store()
    _CURRENT = Watchdog(rank=rank, world=world, timeout=timeout, store=store, peers=peers,
                        last_checkpoint=lambda: "none had been written yet").start()
    return _CURRENT


class Watchdog:
    """Step progress of one worker, its heartbeat, and the one way out when a peer is lost.

    The training loop calls `begin(what, kind)` when a phase starts and `done(kind)` when it completes;
    `what` says what would be waiting ("the all-reduce of step 3 of epoch 2").
    """

    def __init__(self, rank: int, world: int, timeout: float, store: Any, peers: list[dict[str, str]],
                 last_checkpoint: Callable[[], str]) -> None:
        self.rank, self.world, self.timeout = rank, world, timeout
        self.store, self.peers, self.last_checkpoint = store, peers, last_checkpoint
        self.durations: dict[str, list[float]] = {}
        self.slowest: dict[str, float] = {}
        self.what: str = "the start of training"
        self.kind: str | None = None  # not watched before the first phase begins (loading, building, restoring)
        self.started = self.last_done = time.monotonic()
        self.beats = 0
        self._lock = threading.Lock()
        self._ending = False
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- the loop's side ---------------------------------------------------------------
    def begin(self, what: str, kind: str) -> None:
        now = time.monotonic()
        if self.kind is None:
            self.last_done = now  # the clock starts with the first phase
        self.what, self.kind, self.started = what, kind, now

    def done(self, kind: str | None = None) -> None:
        now = time.monotonic()
        kind = kind or self.kind or "step"
        seconds = now - self.started
        history = self.durations.setdefault(kind, [])
        history.append(seconds)
        if len(history) > 256:
            del history[:128]
        if kind != "step" or len(history) > 1:  # the run's first step carries one-off set-up
            self.slowest[kind] = max(self.slowest.get(kind, 0.0), seconds)
        self.last_done = now

    def bound(self) -> float:
        """Seconds without progress after which the current phase counts as stuck."""
        # A kind not seen yet (the first evaluation, the first checkpoint) is measured against the steps.
        history = self.durations.get(self.kind) or self.durations.get("step")
        typical = statistics.median(history) if history else 0.0
        return max(self.timeout, K * typical)

    # -- threads -----------------------------------------------------------------------
    def start(self) -> Watchdog:
        if self.world > 1:
            for target, name in ((self._beat, "pvision-heartbeat"), (self._watch, "pvision-watchdog")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self, wait_s: float = 10.0) -> None:
        """Stop both threads and wait for them (at most `wait_s`): a heartbeat may be inside a store call, and
        tearing the process group and its store down under it (or exiting the interpreter) aborts the process
        in C++ ("terminate called without an active exception")."""
        global _CURRENT
        self._stopped.set()
        if _CURRENT is self:
            _CURRENT = None
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _beat(self) -> None:
        while not self._stopped.wait(BEAT_S):
            try:
                self.store.add(f"pvision/beat/{self.rank}", 1)
            except Exception:  # noqa: BLE001 - the store's host may be the lost peer; the watchdog tells
                pass

    def _watch(self) -> None:
        while not self._stopped.wait(BEAT_S):
            idle = time.monotonic() - self.last_done
            if self.kind is not None and idle > self.bound():
                self.peer_lost(f"nothing completed for {idle:.1f} s, the watchdog's bound being {self.bound():.0f} s")

    # -- who is missing ----------------------------------------------------------------
    def _read_beats(self) -> list[int] | None:
        """Every rank's heartbeat counter, or None when the store does not answer within a few beats."""
        box: list[list[int]] = []

        def read() -> None:
            try:
                box.append([int(self.store.add(f"pvision/beat/{r}", 0)) for r in range(self.world)])
            except Exception:  # noqa: BLE001 - the store's host is gone (reset): it does not answer
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(4 * BEAT_S)
        return box[0] if box else None

    def lost_ranks(self) -> list[int] | None:
        """Ranks whose heartbeat stopped; None when the store itself (rank 0's under spawn) does not answer."""
        first = self._read_beats()
        if first is None:
            return None
        time.sleep(4 * BEAT_S)
        second = self._read_beats()
        if second is None:
            return None
        return [r for r in range(self.world) if r != self.rank and second[r] == first[r]]

    def name(self, rank: int) -> str:
        peer = self.peers[rank] if rank < len(self.peers) else {}
        return f"rank {rank} (host {peer.get('host', '?')}, {peer.get('address', '?')})"

    def describe(self, detail: str, error: BaseException | None = None) -> str:
        lost = self.lost_ranks()
        if lost is None:
            who = f"the rendezvous store's host, {self.name(0)}, stopped answering"
        elif lost:
            who = ", ".join(self.name(r) for r in lost) + " stopped answering"
        else:
            named = _ranks_in(str(error), self.peers) if error is not None else []
            who = (", ".join(self.name(r) for r in named) + " went away" if named else
                   "a peer did not join the collective (every heartbeat still moves: a hang, or a step slower "
                   "than the bound)")
        return (f"peer lost: {who} while {self.name(self.rank)} waited in {self.what} ({detail}); "
                f"the last checkpoint kept: {self.last_checkpoint()}; continue with --resume once every worker "
                "is reachable")

    def peer_lost(self, detail: str, error: BaseException | None = None) -> None:
        """Report the lost peer once, then end this worker with PeerLostError's exit code."""
        with self._lock:
            ending, self._ending = self._ending, True
        while ending:  # the other thread is naming the peer and will end the process: nothing may unwind first
            time.sleep(1.0)
        try:
            message = self.describe(detail, error)
        except Exception as exc:  # noqa: BLE001 - the exit must happen whatever the diagnosis hits
            message = f"peer lost while waiting in {self.what} ({detail}; {type(exc).__name__} naming it)"
        exit_with(message, self.rank)


def exit_with(message: str, rank: int) -> None:
    """End this worker now with PeerLostError: hand `message` to the spawn parent, or print it (torchrun)."""
    folder = os.environ.get(MESSAGE_DIR_ENV)
    written = False
    if folder:
        try:
            (Path(folder) / f"rank-{rank}.txt").write_text(message)
            written = True
        except OSError:
            pass
    if not written:
        print(f"pvision: error: {message}", file=sys.stderr, flush=True)
    sys.stderr.flush()
    os._exit(PeerLostError.exit_code)


def message_from(folder: str | os.PathLike[str]) -> str | None:
    """The first message a spawned worker left in `folder` (lowest rank first), if any."""
    for path in sorted(Path(folder).glob("rank-*.txt")):
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return None


def _ranks_in(text: str, peers: list[dict[str, str]]) -> list[int]:
    """Ranks whose address appears in an error message (gloo writes `[ADDRESS]:PORT`), when unambiguous."""
    found = set(re.findall(r"\[([0-9a-fA-F.:]+)\]:\d+", text))
    ranks = [r for r, p in enumerate(peers) if p.get("address") in found]
    addresses = [peers[r].get("address") for r in ranks]
    return ranks if len(set(addresses)) == len(addresses) else []


def timeout_warning(watchdog: Watchdog, option_name: str = "--collective-timeout") -> str | None:
    """One line when the slowest step, evaluation or checkpoint seen so far exceeds a third of the timeout."""
    names = {"step": "step", "evaluation": "evaluation", "checkpoint": "checkpoint"}
    slow = {names[k]: v for k, v in watchdog.slowest.items() if k in names}
    if not slow:
        return None
    kind, seconds = max(slow.items(), key=lambda kv: kv[1])
    if seconds <= watchdog.timeout / 3:
        return None
    suggested = int(math.ceil(3 * seconds / 60.0) * 60)
    return (f"pvision: warning: the slowest {kind} took {seconds:.0f} s, more than a third of the collective "
            f"timeout ({watchdog.timeout:.0f} s): a slow phase may be taken for a lost peer; set "
            f"{option_name} {suggested} (or {envvars.DIST_TIMEOUT_S}={suggested})")
