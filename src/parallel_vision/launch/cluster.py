"""When an external launcher (torchrun, a user's TF_CONFIG) made this process: who we are in its job.

Under torchrun or a user-provided TF_CONFIG the launcher's process *is* one worker of a job that
something else started; these helpers read that job from the environment (framework-free).
"""

from __future__ import annotations

import json
import os
import re

from parallel_vision.config import RunConfig
from parallel_vision.engines import registry
from parallel_vision.engines.spec import ClusterEnv
from parallel_vision.engines.tensorflow.cluster import cluster_from_env
from parallel_vision.errors import ConfigError


def cluster_env(framework: str, strategy: str) -> ClusterEnv | None:
    """The engine's own cluster variables (EngineSpec.cluster) when its job is described in this environment."""
    spec = registry.engines().get(framework)
    hook = spec.cluster if spec is not None else None
    if hook is not None and hook.strategy == strategy and hook.present():
        return hook
    return None


def under_torchrun() -> bool:
    """True in a process that torchrun (torch.distributed.elastic) started."""
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ
    )


def external_world_size(framework: str, strategy: str) -> int | None:
    """How many processes torchrun or a user's TF_CONFIG started, when this process is one of them.

    The external launcher is the authority on the world size (as in nanoGPT and the DDP tutorial):
    `--workers` left unset takes this value; only an explicit, different one is an error.
    """
    if framework == "torch" and strategy == "ddp" and under_torchrun():
        try:
            return int(os.environ["WORLD_SIZE"])
        except (KeyError, ValueError):
            raise ConfigError(f"torchrun's WORLD_SIZE is not a number: {os.environ.get('WORLD_SIZE')!r}") from None
    if framework == "tensorflow" and strategy == "multiworker" and "TF_CONFIG" in os.environ:
        return cluster_from_env(None).world_size
    hook = cluster_env(framework, strategy)
    return hook.world_size() if hook is not None else None


def workers_under_launcher(framework: str, strategy: str, requested: int | None) -> int:
    """`--workers` as given, else the external launcher's world size, else 1; an explicit value
    that contradicts torchrun or TF_CONFIG is refused before anything else is checked."""
    external = external_world_size(framework, strategy)
    if requested is None:
        return external or 1
    if external is not None and requested != external:
        hook = cluster_env(framework, strategy)
        what = (f"torchrun started WORLD_SIZE={external} processes" if framework == "torch"
                else f"{hook.variables} describes {external} process(es)" if hook is not None
                else f"TF_CONFIG describes {external} training process(es)")
        raise ConfigError(f"--workers {requested} but {what} (leave --workers out to use it)")
    return requested


def external_cluster(cfg: RunConfig) -> bool:
    if cfg.framework == "torch" and cfg.strategy == "ddp":
        return under_torchrun()
    if cfg.framework == "tensorflow" and cfg.strategy == "multiworker":
        return "TF_CONFIG" in os.environ
    return cluster_env(cfg.framework, cfg.strategy) is not None


def is_writer(cfg: RunConfig) -> bool:
    """In an externally launched job only one process writes the output folder: global rank 0 under
    torchrun; under TF_CONFIG the chief, or worker 0 without one (ClusterTask's rule, which also
    refuses a malformed TF_CONFIG in one line, before any folder is made)."""
    if cfg.framework == "tensorflow" and "TF_CONFIG" in os.environ:
        return cluster_from_env(cfg.workers).is_writer
    hook = cluster_env(cfg.framework, cfg.strategy)
    if hook is not None:
        return hook.is_writer(cfg.workers)
    if under_torchrun():
        return os.environ.get("RANK", "0") == "0"
    return True


def node_layout(cfg: RunConfig | None = None) -> dict[str, int]:
    """nodes × processes per node of an external cluster (`workers` is their product), for the record."""
    hook = cluster_env(cfg.framework, cfg.strategy) if cfg is not None else None
    if hook is not None:
        return hook.layout()
    try:
        if under_torchrun():
            return {"nodes": int(os.environ["GROUP_WORLD_SIZE"]),
                    "processes_per_node": int(os.environ["LOCAL_WORLD_SIZE"])}
        cluster = json.loads(os.environ.get("TF_CONFIG", "")).get("cluster", {})
        addresses = [a for job in ("chief", "worker") for a in cluster.get(job, [])]
        hosts = {str(a).rpartition(":")[0] for a in addresses}
        return {"nodes": len(hosts), "processes_per_node": -(-len(addresses) // len(hosts))}
    except (KeyError, ValueError, AttributeError, TypeError, ZeroDivisionError):
        return {}


def worker_name(cfg: RunConfig | None = None) -> str:
    hook = cluster_env(cfg.framework, cfg.strategy) if cfg is not None else None
    if hook is not None:
        return hook.describe_worker()
    if under_torchrun():
        return f"torchrun rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')}"
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "")).get("task", {})
        return f"TF_CONFIG task {task.get('type')} {task.get('index')}"
    except (json.JSONDecodeError, AttributeError):
        return "this worker"



#: Lines of a framework error message that say where, not what (TensorFlow's graph-op traces).
_WHERE_LINE = re.compile(r'^(File "|Graph execution error:$|Detected at node |At:$|Traceback \(most recent)')


def first_lines(exc: BaseException) -> str:
    """What happened, in one line: the message's first line that is not a location (gloo appends
    the C++ call site after it; TensorFlow puts the op's trace first, prefixes `{{function_node …}}`
    and continues a list on the next line)."""
    lines = [re.sub(r"^\{\{[^}]*\}\}\s*", "", ln.strip()) for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not _WHERE_LINE.match(ln)]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return f"{type(exc).__name__}: {text[:400]}"
