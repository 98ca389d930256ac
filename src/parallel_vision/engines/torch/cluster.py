"""The job torchrun (torch.distributed.elastic) describes in this process's environment, read without torch.

torchrun sets, in every worker it starts: RANK and WORLD_SIZE (global), LOCAL_RANK and LOCAL_WORLD_SIZE
(on this node), GROUP_WORLD_SIZE (nodes) and TORCHELASTIC_RUN_ID. Under torchrun the launcher's process
*is* one `ddp` worker of that job, so the engine runs right there (this package's `EngineSpec.cluster`).
Framework-free on purpose: the launcher asks it before anything imports torch.
"""

from __future__ import annotations

import os

from parallel_vision.errors import ConfigError

#: The variables, for messages.
VARIABLES = "RANK/WORLD_SIZE (torchrun)"


def present() -> bool:
    """Did torchrun start this process (ClusterEnv's name for under_torchrun)?"""
    return under_torchrun()


def under_torchrun() -> bool:
    """True in a process that torchrun (torch.distributed.elastic) started."""
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ
    )


def world_size() -> int:
    """How many processes torchrun started (it is the authority: `--workers` left unset takes this value)."""
    try:
        return int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        raise ConfigError(f"torchrun's WORLD_SIZE is not a number: {os.environ.get('WORLD_SIZE')!r}") from None


def is_writer(workers: int | None = None) -> bool:  # noqa: ARG001 - torchrun's world size was checked already
    """Global rank 0 alone writes the output folder."""
    return os.environ.get("RANK", "0") == "0"


def layout() -> dict[str, int]:
    """nodes × processes per node, for the record ({} when torchrun did not say)."""
    try:
        return {"nodes": int(os.environ["GROUP_WORLD_SIZE"]),
                "processes_per_node": int(os.environ["LOCAL_WORLD_SIZE"])}
    except (KeyError, ValueError):
        return {}


def describe_worker() -> str:
    return f"torchrun rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')}"


def describe_world(size: int) -> str:
    return f"torchrun started WORLD_SIZE={size} processes"
