"""When an external launcher (torchrun, a user's TF_CONFIG, Keras' KERAS_DISTRIBUTION_*) made this process:
who we are in its job.

Under such a launcher the launcher's process *is* one worker of a job that something else started. Each
engine declares how its job is described (`EngineSpec.cluster`, a `ClusterEnv`); these helpers only ask
that declaration, so they know no engine and no variable by name (framework-free).
"""

from __future__ import annotations

import re

from parallel_vision.config import RunConfig
from parallel_vision.engines import registry
from parallel_vision.engines.spec import ClusterEnv
from parallel_vision.errors import ConfigError


def cluster_env(framework: str, strategy: str) -> ClusterEnv | None:
    """The engine's own cluster variables (EngineSpec.cluster) when its job is described in this environment."""
    spec = registry.engines().get(framework)
    hook = spec.cluster if spec is not None else None
    if hook is not None and strategy in hook.strategies and hook.present():
        return hook
    return None


def workers_under_launcher(framework: str, strategy: str, requested: int | None) -> int:
    """`--workers` as given, else the external launcher's world size, else 1; an explicit value
    that contradicts torchrun or TF_CONFIG is refused before anything else is checked.

    The external launcher is the authority on the world size (as in nanoGPT and the DDP tutorial):
    `--workers` left unset takes this value; only an explicit, different one is an error.
    """
    hook = cluster_env(framework, strategy)
    if hook is None:
        return 1 if requested is None else requested
    external = hook.world_size()
    if requested is None:
        return external or 1
    if requested != external:
        raise ConfigError(f"--workers {requested} but {hook.world_phrase(external)} (leave --workers out to use it)")
    return requested


def external_cluster(cfg: RunConfig) -> bool:
    return cluster_env(cfg.framework, cfg.strategy) is not None


def is_writer(cfg: RunConfig) -> bool:
    """In an externally launched job only one process writes the output folder (the engine's rule: global
    rank 0 under torchrun; under TF_CONFIG the chief, or worker 0 without one); True outside such a job."""
    hook = cluster_env(cfg.framework, cfg.strategy)
    return hook.is_writer(cfg.workers) if hook is not None else True


def node_layout(cfg: RunConfig | None = None) -> dict[str, int]:
    """nodes × processes per node of an external cluster (`workers` is their product), for the record."""
    hook = cluster_env(cfg.framework, cfg.strategy) if cfg is not None else None
    return hook.layout() if hook is not None else {}


def worker_name(cfg: RunConfig | None = None) -> str:
    hook = cluster_env(cfg.framework, cfg.strategy) if cfg is not None else None
    return hook.describe_worker() if hook is not None else "this worker"


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
