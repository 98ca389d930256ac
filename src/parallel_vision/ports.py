"""Loopback ports for a spawned run's rendezvous: a free one, or a check that the user's is free.

Framework-free and beside `errors.py` because both sides use it: the launcher (a multiworker run's
addresses, a user's --master-port) and an engine process (the DDP spawn rendezvous).
"""

from __future__ import annotations

import socket
from contextlib import closing

from parallel_vision.errors import ConfigError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's choice, so concurrent runs differ)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A bound, never-listening socket on a free port, shareable with SO_REUSEPORT: while it is open no other
    process can bind the port or get it as an ephemeral port, yet the rendezvous (which binds with SO_REUSEPORT
    too) can listen on it. Closes the race between choosing a port and a spawned worker binding it, which
    concurrent runs on a loaded machine lose ("port … was taken before the DDP rendezvous could use it")."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} is not a valid TCP port (1..65535)")
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise ConfigError(f"port {port} on {host} is busy; choose another or leave it unset") from None
