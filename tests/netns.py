"""Two "hosts" on one machine: a pair of network namespaces joined by a veth pair.

Each namespace has its own loopback and one interface, `pv0`, with its own address
(10.201.0.1/24 and 10.201.0.2/24 by default), so processes started in them see two
machines on a private link, as two cluster nodes would. The veth pair is created
directly inside the namespaces: nothing is ever added to the host's own network.

Used by tests/test_multinode.py (a helper module, not a conftest). Everything created
here is removed by `HostPair.close()`, which first kills every process still running
inside the two namespaces (only processes in namespaces this object created).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

IFNAME = "pv0"
SUBNET = "10.201.0"


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=timeout)


def unavailable_reason() -> str | None:
    """Why namespaces certainly cannot be made here (None: try): no `ip`, or not root."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    return None


def refused(exc: BaseException) -> str | None:
    """The reason when `exc` (from `HostPair.open`) means the kernel refused us namespaces."""
    if isinstance(exc, subprocess.CalledProcessError):
        err = (exc.stderr or "").strip()
        if any(s in err for s in ("Operation not permitted", "Permission denied", "EPERM")):
            return f"`{' '.join(exc.cmd)}` was refused: {err}"
    if isinstance(exc, PermissionError):
        return f"network namespaces refused: {exc}"
    return None


@dataclass
class Host:
    """One namespace: its name and its address on the shared link."""

    netns: str
    addr: str
    ifname: str = IFNAME

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host's network namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in out.stdout.split() if p.strip().isdigit()]

    def training_pids(self) -> list[int]:
        """The `pvision` training processes in this namespace (not a torchrun agent that started them)."""
        pids = []
        for pid in self.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"parallel_vision" in cmd and b"torch.distributed.run" not in cmd:
                pids.append(pid)
        return pids

    def cut(self) -> None:
        """Take this host's link down: its peers' packets vanish, no connection is reset (a silent loss)."""
        _ip("-n", self.netns, "link", "set", self.ifname, "down")

    def restore(self) -> None:
        """Bring this host's link back up after `cut` (its address stays assigned while it is down)."""
        _ip("-n", self.netns, "link", "set", self.ifname, "up")

    def kill_all(self, sig: int = signal.SIGKILL) -> list[int]:
        """Signal every process in this namespace (the whole "host" dies); returns their pids."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids


@dataclass
class HostPair:
    """Two namespaces `a` and `b` joined by a veth pair; a context manager that always cleans up."""

    subnet: str = SUBNET
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    a: Host = field(init=False)
    b: Host = field(init=False)
    _made: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.a = Host(f"pv-a-{self.tag}", f"{self.subnet}.1")
        self.b = Host(f"pv-b-{self.tag}", f"{self.subnet}.2")

    @property
    def hosts(self) -> tuple[Host, Host]:
        return self.a, self.b

    def open(self) -> HostPair:
        try:
            for host in self.hosts:
                _ip("netns", "add", host.netns)
                self._made.append(host.netns)
            # Both ends are born inside their namespaces (and may share a name there).
            _ip("link", "add", "name", IFNAME, "netns", self.a.netns, "type", "veth",
                "peer", "name", IFNAME, "netns", self.b.netns)
            for host in self.hosts:
                _ip("-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", host.ifname)
                _ip("-n", host.netns, "link", "set", "lo", "up")
                _ip("-n", host.netns, "link", "set", host.ifname, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill whatever still runs in the namespaces, then delete them (and so the veth pair)."""
        for name in self._made:
            host = self.a if name == self.a.netns else self.b
            host.kill_all()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            (self.a if n == self.a.netns else self.b).pids() for n in self._made
        ):
            time.sleep(0.1)
        for name in reversed(self._made):
            _ip("netns", "del", name, check=False)
        self._made.clear()

    def __enter__(self) -> HostPair:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGKILL a process started with `start_new_session=True` and its whole group, then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
