"""A worker that native code ended because a peer went silent: the one line the launcher prints for it.

JAX's coordination service (XLA, C++) aborts a process whose peer stops sending heartbeats: SIGABRT, after a
fatal log line, so the engine process can neither print our `pvision: error:` line nor exit 75. The launcher
sees the child killed by signal 6 and reads its log: when the log shows the heartbeat failure, it reports the
lost peer as the torch watchdog does (PeerLostError, exit 75). Text only: no framework is imported here.

The two messages, as captured (docs/reliability.md "A lost peer"):

- the coordinator (rank 0) when another process goes silent:
  `… UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):` and `1` on the next line
- any other process when the coordinator does:
  `… DEADLINE_EXCEEDED: Deadline Exceeded`, then `RPC: /xla.coordination.CoordinationService/Heartbeat`

(tests/fixtures/jax_heartbeat/ holds both logs as captured by `benchmarks/partition_netns.py --framework jax`.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_UNHEALTHY = re.compile(r"unhealthy \(stopped sending heartbeats\):?\s*(?P<tasks>[^\n]*)")  # list: next line
_TASK = re.compile(r"task:(\d+)")
_HEARTBEAT_RPC = re.compile(r"DEADLINE_EXCEEDED[^\n]*(?:\n[^\n]*){0,3}?CoordinationService/Heartbeat")


def heartbeat_loss(log: str) -> list[int] | None:
    """The ranks a JAX coordination service reported silent in `log`: the listed tasks on the coordinator,
    [0] (the coordinator) when this process's own heartbeat RPC ran out; None if the log shows neither."""
    found = _UNHEALTHY.search(log)
    if found:
        tasks = found["tasks"]  # `/job:jax_worker/replica:0/task:1`, or bare ids
        ranks = _TASK.findall(tasks) if "task:" in tasks else re.findall(r"\b\d+\b", tasks)
        return sorted({int(r) for r in ranks})
    if _HEARTBEAT_RPC.search(log):
        return [0]
    return None


def name_rank(rank: int, addresses: Sequence[str]) -> str:
    """`rank 1 (10.201.0.2:29400)`, or `rank 1` when the job's addresses are unknown."""
    return f"rank {rank} ({addresses[rank]})" if 0 <= rank < len(addresses) else f"rank {rank}"


def lost_peer_line(log: str, *, rank: int, addresses: Sequence[str], heartbeat_s: int, kept: str) -> str | None:
    """The one-line PeerLostError message for worker `rank` whose log is `log`, or None when its log does not
    show a heartbeat loss (then the death is reported as it is: killed by signal N)."""
    lost = heartbeat_loss(log)
    if lost is None:
        return None
    peers = ", ".join(name_rank(r, addresses) for r in lost) or "a peer"
    return (f"peer lost: {peers} stopped answering {name_rank(rank, addresses)} (JAX coordination service: a peer "
            f"stopped sending heartbeats for {heartbeat_s} s); the last backup kept: {kept}; continue with --resume "
            "once every worker is back")
