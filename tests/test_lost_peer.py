"""A JAX worker aborted by XLA's coordination service (a peer stopped sending heartbeats) ends in one line and
exit 75: the launcher reads the dead child's log (launch/lost_peer.py).

The logs in tests/fixtures/jax_heartbeat/ were captured from `benchmarks/partition_netns.py --framework jax
--collective-timeout 20` (two hosts in two network namespaces, host b's link cut): rank0.log from the coordinator,
rank1.log from the other host; leader_gone.log from a run whose coordinator process died (no heartbeat loss).
The end-to-end partition itself takes minutes and root: it is the documented by-hand command (docs/reliability.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from parallel_vision.config import RunConfig, heartbeat_timeout_s
from parallel_vision.errors import EngineError, PeerLostError
from parallel_vision.launch.lost_peer import heartbeat_loss, lost_peer_line
from parallel_vision.launch.processes import run_children

LOGS = Path(__file__).parent / "fixtures" / "jax_heartbeat"
ADDRESSES = ("10.201.0.1:29400", "10.201.0.2:29400")


def test_the_coordinator_names_the_silent_task_and_the_others_the_coordinator() -> None:
    assert heartbeat_loss((LOGS / "rank0.log").read_text()) == [1]
    assert heartbeat_loss((LOGS / "rank1.log").read_text()) == [0]
    assert heartbeat_loss((LOGS / "leader_gone.log").read_text()) is None  # a dead leader: not a heartbeat loss
    assert heartbeat_loss("The following tasks are unhealthy (stopped sending heartbeats):\n"
                          "/job:jax_worker/replica:0/task:2\n") == [2]


def test_the_line_names_both_ranks_the_bound_and_the_backup() -> None:
    line = lost_peer_line((LOGS / "rank0.log").read_text(), rank=0, addresses=ADDRESSES, heartbeat_s=20,
                          kept="backup after epoch 1 in /o")
    assert line == ("peer lost: rank 1 (10.201.0.2:29400) stopped answering rank 0 (10.201.0.1:29400) (JAX "
                    "coordination service: a peer stopped sending heartbeats for 20 s); the last backup kept: backup "
                    "after epoch 1 in /o; continue with --resume once every worker is back")
    assert lost_peer_line((LOGS / "leader_gone.log").read_text(), rank=1, addresses=ADDRESSES, heartbeat_s=20,
                          kept="-") is None


def test_heartbeat_timeout_follows_collective_timeout() -> None:
    assert heartbeat_timeout_s(None) == 100 and heartbeat_timeout_s(20) == 20 and heartbeat_timeout_s(0.4) == 1
    RunConfig(framework="jax", strategy="multiworker", workers=2, collective_timeout=20)  # accepted


def aborting_child(log: Path) -> list[str]:
    """A process that prints a captured XLA log on stderr and dies as XLA ends it: abort() (SIGABRT)."""
    return [sys.executable, "-c", f"import os, sys; sys.stderr.write(open({str(log)!r}).read()); "
            "sys.stderr.flush(); os.abort()"]


@pytest.mark.parametrize("index", [0, 1])
def test_the_launcher_turns_the_abort_into_one_line_and_exit_75(tmp_path: Path, index: int,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    """Worker 0's stderr reaches the user through the launcher (Tee); worker 1's goes to OUT/logs/worker-1.log.
    The other worker, silent as a frozen peer, is not waited for."""
    log = LOGS / ("rank0.log" if index == 0 else "rank1.log")
    jobs = [([sys.executable, "-c", "import time; time.sleep(60)"], {})] * 2  # the silent peer
    jobs[index] = (aborting_child(log), {})

    def line(i: int, text: str) -> str | None:
        return lost_peer_line(text, rank=i, addresses=ADDRESSES, heartbeat_s=20, kept="k")

    started = time.monotonic()
    with pytest.raises(PeerLostError) as raised:
        run_children([(cmd, {"PATH": "/usr/bin:/bin"}) for cmd, _ in jobs], tmp_path, None, lost_peer=line)
    assert time.monotonic() - started < 20  # the silent peer is killed at once, not after the 30 s grace
    assert raised.value.exit_code == 75
    lost = "rank 1 (10.201.0.2:29400)" if index == 0 else "rank 0 (10.201.0.1:29400)"
    assert str(raised.value).startswith(f"peer lost: {lost} stopped answering rank {index}")
    if index == 0:
        assert "stopped sending heartbeats" in capfd.readouterr().err  # the child's log still reached the user


def test_an_abort_without_a_heartbeat_loss_stays_a_signal(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="killed by signal 6"):
        run_children([(aborting_child(LOGS / "leader_gone.log"), {"PATH": "/usr/bin:/bin"})], tmp_path, None,
                      lost_peer=lambda i, text: lost_peer_line(text, rank=i, addresses=ADDRESSES, heartbeat_s=20,
                                                               kept="k"))
