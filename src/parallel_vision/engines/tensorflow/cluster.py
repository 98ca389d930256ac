"""TF_CONFIG for `multiworker`: read and check it before TensorFlow is imported.

Framework-free on purpose: a malformed cluster description becomes a one-line
ConfigError in milliseconds instead of a TensorFlow stack trace (or a hang)
seconds later, and the checks can be tested without importing TensorFlow. The
launcher reads it through `EngineSpec.cluster` (this package's `__init__.py`):
`present`, `layout`, `describe_worker` and `worker_environment` below.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parallel_vision.errors import ConfigError

#: The variable a TensorFlow cluster describes itself in (one JSON object per process).
TF_CONFIG = "TF_CONFIG"
VARIABLES = TF_CONFIG

#: Job types MultiWorkerMirroredStrategy trains with. `ps` and `evaluator` belong to
#: other strategies / side-car evaluation and are refused rather than ignored.
TRAINING_JOBS = ("chief", "worker")


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster."""

    cluster: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def world_size(self) -> int:
        return sum(len(self.cluster.get(job, [])) for job in TRAINING_JOBS)

    @property
    def rank(self) -> int:
        """Global rank: the chief first (if any), then the workers in order."""
        if self.task_type == "chief":
            return self.task_index
        return len(self.cluster.get("chief", [])) + self.task_index

    @property
    def addresses(self) -> list[str]:
        """Every training task's host:port in global rank order."""
        return [a for job in TRAINING_JOBS for a in self.cluster.get(job, [])]

    @property
    def local_rank(self) -> int:
        """This task's index among the cluster's tasks on its own host (the host part of host:port, as
        written), in global rank order: which slice of the host's cores `pin_threads` gives it."""
        host = _host(self.addresses[self.rank])
        return sum(1 for a in self.addresses[: self.rank] if _host(a) == host)

    @property
    def is_writer(self) -> bool:
        """The one process that writes the output: the chief, or worker 0 when there is no chief."""
        return self.rank == 0


def _host(address: str) -> str:
    return address.rpartition(":")[0]


def _check_address(job: str, i: int, address: Any) -> None:
    if not isinstance(address, str) or ":" not in address:
        raise ConfigError(f"TF_CONFIG cluster.{job}[{i}] must be a 'host:port' string; got {address!r}")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"TF_CONFIG cluster.{job}[{i}] has no valid host:port; got {address!r}")


def parse_tf_config(text: str | None, workers: int | None) -> ClusterTask:
    """Validate a TF_CONFIG string for a `workers`-process MultiWorkerMirroredStrategy run
    (`workers=None`: any size, for reading the size the cluster defines)."""
    if text is None or not text.strip():
        raise ConfigError(
            "strategy 'multiworker' needs TF_CONFIG; run it through `pvision train`, which sets it,"
            " or export a TF_CONFIG describing the cluster"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"TF_CONFIG must be a JSON object; got {type(data).__name__}")
    cluster = data.get("cluster")
    if not isinstance(cluster, Mapping) or not cluster:
        raise ConfigError("TF_CONFIG has no 'cluster' object (e.g. {\"worker\": [\"host:port\", ...]})")
    other = sorted(set(cluster) - set(TRAINING_JOBS))
    if other:
        raise ConfigError(
            f"TF_CONFIG cluster has job(s) {', '.join(map(repr, other))}; "
            "MultiWorkerMirroredStrategy uses only 'chief' and 'worker'"
        )
    jobs: dict[str, list[str]] = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ConfigError(f"TF_CONFIG cluster.{job} must be a non-empty list of 'host:port' strings")
        for i, address in enumerate(addresses):
            _check_address(job, i, address)
        jobs[job] = list(addresses)
    if len(jobs.get("chief", [])) > 1:
        raise ConfigError(f"TF_CONFIG cluster may have at most one chief; got {len(jobs['chief'])}")
    everyone = [a for job in TRAINING_JOBS for a in jobs.get(job, [])]
    if len(set(everyone)) != len(everyone):
        raise ConfigError("TF_CONFIG cluster lists the same host:port twice")

    task = data.get("task")
    if not isinstance(task, Mapping):
        raise ConfigError("TF_CONFIG has no 'task' object (e.g. {\"type\": \"worker\", \"index\": 0})")
    task_type = task.get("type")
    if task_type not in jobs:
        raise ConfigError(
            f"TF_CONFIG task.type {task_type!r} is not a job of the cluster ({', '.join(sorted(jobs))})"
        )
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ConfigError(f"TF_CONFIG task.index must be an integer; got {index!r}")
    if not 0 <= index < len(jobs[task_type]):
        raise ConfigError(
            f"TF_CONFIG task.index {index} is out of range for the {len(jobs[task_type])} {task_type}(s)"
        )
    result = ClusterTask(cluster=jobs, task_type=str(task_type), task_index=index)
    if workers is not None and result.world_size != workers:
        raise ConfigError(
            f"--workers {workers} but TF_CONFIG describes {result.world_size} training process(es)"
        )
    return result


def cluster_from_env(workers: int | None) -> ClusterTask:
    return parse_tf_config(os.environ.get(TF_CONFIG), workers)


def world_size() -> int:
    return cluster_from_env(None).world_size


def is_writer(workers: int | None) -> bool:
    """The chief, or worker 0 without one (ClusterTask's rule, which also refuses a malformed TF_CONFIG in one
    line, before any folder is made)."""
    return cluster_from_env(workers).is_writer


def describe_world(size: int) -> str:
    return f"{TF_CONFIG} describes {size} training process(es)"


def present() -> bool:
    """Did a user's cluster describe a TensorFlow job in this process's environment? (Set at all: an empty
    TF_CONFIG is then refused by `parse_tf_config` in one line, not ignored.)"""
    return TF_CONFIG in os.environ


def layout() -> dict[str, int]:
    """{'nodes': hosts, 'processes_per_node': …} of the chief and workers, for the record ({} if unreadable)."""
    try:
        addresses = cluster_from_env(None).addresses
        hosts = {_host(a) for a in addresses}
        return {"nodes": len(hosts), "processes_per_node": -(-len(addresses) // len(hosts))}
    except ConfigError:
        return {}


def describe_worker() -> str:
    """'TF_CONFIG task worker 1', for a one-line error ('this worker' if TF_CONFIG cannot be read)."""
    try:
        task = json.loads(os.environ.get(TF_CONFIG, "")).get("task", {})
        return f"TF_CONFIG task {task.get('type')} {task.get('index')}"
    except (json.JSONDecodeError, AttributeError):
        return "this worker"


def worker_environment(addresses: list[str], index: int) -> dict[str, str]:
    """What our launcher sets for worker `index` of a local multi-process run (loopback addresses)."""
    return {TF_CONFIG: json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})}
