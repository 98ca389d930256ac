"""The multi-process layout of a JAX `multiworker` run, read from the environment before JAX is imported.

The variables are Keras' own (`keras.distribution.initialize` reads them), so a user's cluster sets the
same three on every host, as torchrun sets RANK/WORLD_SIZE and a TF cluster sets TF_CONFIG:

    KERAS_DISTRIBUTION_JOB_ADDRESSES   host:port of every process, comma-separated, rank order;
                                       the first is JAX's coordinator (jax.distributed)
    KERAS_DISTRIBUTION_NUM_PROCESSES   how many processes (must equal the addresses' count)
    KERAS_DISTRIBUTION_PROCESS_ID      this process's rank, 0 … N−1 (rank 0 writes the outputs)

Framework-free on purpose: a malformed description is a one-line ConfigError before JAX starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from parallel_vision.errors import ConfigError

ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
VARIABLES = ADDRESSES  # the name messages give the job's description
NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"


@dataclass(frozen=True)
class JaxCluster:
    """This process's place in a multi-process JAX job."""

    addresses: tuple[str, ...]
    process_id: int

    @property
    def world_size(self) -> int:
        return len(self.addresses)

    @property
    def rank(self) -> int:
        return self.process_id

    @property
    def coordinator(self) -> str:
        return self.addresses[0]

    @property
    def is_writer(self) -> bool:
        return self.process_id == 0

    @property
    def local_rank(self) -> int:
        """Index among the processes on this process's host (for `pin_threads`)."""
        host = self.addresses[self.rank].rpartition(":")[0]
        return sum(1 for a in self.addresses[: self.rank] if a.rpartition(":")[0] == host)

    @property
    def hosts(self) -> int:
        return len({a.rpartition(":")[0] for a in self.addresses})


def present() -> bool:
    """Did a cluster (or our launcher) describe a JAX job in this process's environment?"""
    return bool(os.environ.get(ADDRESSES, "").strip())


def parse(addresses: str | None, num_processes: str | None, process_id: str | None,
          workers: int | None) -> JaxCluster:
    """Validate the three variables for a `workers`-process run (`workers=None`: any size)."""
    if not addresses or not addresses.strip():
        raise ConfigError(f"strategy 'multiworker' needs {ADDRESSES}; run it through `pvision train`, which sets "
                          f"it, or export {ADDRESSES}, {NUM_PROCESSES} and {PROCESS_ID} on every host")
    listed = tuple(a.strip() for a in addresses.split(","))
    for address in listed:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"{ADDRESSES} must list host:port entries; got {address!r}")
    if len(set(listed)) != len(listed):
        raise ConfigError(f"{ADDRESSES} lists the same host:port twice")
    try:
        count = int(num_processes) if num_processes not in (None, "") else len(listed)
        rank = int(process_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{PROCESS_ID} (and {NUM_PROCESSES}, if set) must be integers; "
                          f"got {process_id!r}, {num_processes!r}") from None
    if count != len(listed):
        raise ConfigError(f"{NUM_PROCESSES}={count} but {ADDRESSES} lists {len(listed)} process(es)")
    if not 0 <= rank < count:
        raise ConfigError(f"{PROCESS_ID}={rank} is out of range for {count} process(es)")
    if workers is not None and count != workers:
        raise ConfigError(f"--workers {workers} but {ADDRESSES} describes {count} process(es)")
    return JaxCluster(listed, rank)


def cluster_from_env(workers: int | None) -> JaxCluster:
    return parse(os.environ.get(ADDRESSES), os.environ.get(NUM_PROCESSES), os.environ.get(PROCESS_ID), workers)


def world_size() -> int:
    return cluster_from_env(None).world_size


def is_writer(workers: int | None) -> bool:
    """Process 0 writes OUT (a malformed job, or one of another size than --workers: a one-line ConfigError)."""
    return cluster_from_env(workers).is_writer


def layout() -> dict[str, int]:
    """{'nodes': hosts, 'processes_per_node': …}, for the record ({} if unreadable)."""
    try:
        job = cluster_from_env(None)
    except Exception:  # noqa: BLE001 - a label only
        return {}
    return {"nodes": job.hosts, "processes_per_node": -(-job.world_size // job.hosts)}


def worker_environment(addresses: list[str], index: int) -> dict[str, str]:
    """What our launcher sets for worker `index` of a local multi-process run (loopback addresses)."""
    return {ADDRESSES: ",".join(addresses), NUM_PROCESSES: str(len(addresses)), PROCESS_ID: str(index)}


def job() -> tuple[tuple[str, ...], int]:
    """(addresses, this process's rank): XLA aborts a process whose peer goes silent, so the launcher runs the
    engine in a child and names the lost peer from its log (launch/lost_peer.py)."""
    described = cluster_from_env(None)
    return described.addresses, described.rank


def describe_worker() -> str:
    return f"JAX process {os.environ.get(PROCESS_ID, '?')} of {os.environ.get(NUM_PROCESSES, '?')}"
