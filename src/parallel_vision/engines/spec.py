"""What the launcher may know about an engine, without importing its framework.

Each engine package (`engines/<framework>/__init__.py`) defines one `ENGINE = EngineSpec(...)`;
the registry finds them. Everything here is plain data and framework-free callables: the
training code itself (`entry`) is imported only inside the engine process.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parallel_vision.strategies import strategies_of

if TYPE_CHECKING:
    from parallel_vision.config import RunConfig

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ResumeFiles:
    """How an engine leaves an unfinished run in its output folder (checkpoint, backup)."""

    present: Callable[[PathLike], bool]
    """Does `out` hold an unfinished run of this engine?"""
    describe: Callable[[Path], str]
    """A few words on where it stands, e.g. 'checkpoint after epoch 2'."""
    remove: Callable[[PathLike], None]
    """Delete it (a run started again with --overwrite must never resume it)."""
    auto_resume: Callable[[PathLike], bool] = lambda out: False
    """True when an external launcher restarted this very run (torchrun), so it resumes unasked."""


@dataclass(frozen=True)
class ClusterEnv:
    """How an engine's multi-process strategy reads its job from environment variables (framework-free).

    A user's cluster (torchrun, a TF_CONFIG on every host, Keras' KERAS_DISTRIBUTION_* variables) sets them
    in each process, and the launcher then runs the engine in its own process as one worker of that job.
    Where our launcher starts the workers itself (`multiworker`), it sets the same variables for each local
    worker (`worker_environment`). An engine that defines `cluster` needs no launcher change: the launcher
    asks only these fields (`launch/cluster.py`).
    """

    strategies: tuple[str, ...]
    """The strategies these variables describe (e.g. ('multiworker',); torchrun: ddp, zero1 and fsdp)."""
    present: Callable[[], bool]
    """Does this process's environment describe a job?"""
    world_size: Callable[[], int]
    """How many processes the job has (a malformed description: a one-line ConfigError)."""
    is_writer: Callable[[int | None], bool]
    """Is this process the one that writes OUT? (argument: --workers, checked against the job)"""
    layout: Callable[[], dict[str, int]]
    """{'nodes': …, 'processes_per_node': …} for the record, or {}."""
    describe_worker: Callable[[], str]
    """'process 1 of 2', for a one-line error."""
    variables: str
    """The variables' names, for messages."""
    worker_environment: Callable[[list[str], int], dict[str, str]] | None = None
    """The variables for worker `index` of a local run whose workers listen on `addresses`; None when the
    launcher never starts this strategy's workers itself (torch's `ddp` spawns them inside its engine process)."""
    job: Callable[[], tuple[tuple[str, ...], int]] | None = None
    """(every process's address, this process's rank), where native code may end the engine (XLA's coordination
    service aborts on a silent peer): the launcher then runs the engine in a child whose death it can read
    (launch/lost_peer.py). None: under an external launcher the engine runs in the launcher's own process."""
    describe_world: Callable[[int], str] | None = None
    """What a job of N processes is called in the --workers mismatch error ('torchrun started WORLD_SIZE=2
    processes'); None: '{variables} describes N process(es)'."""

    @classmethod
    def of(cls, strategies: tuple[str, ...], module: Any) -> ClusterEnv:
        """The hook an engine's framework-free `cluster` module describes: it defines `present`, `world_size`,
        `is_writer`, `layout`, `describe_worker` and `VARIABLES`, and may define `worker_environment`,
        `describe_world` and `job` (every engine's cluster.py follows this one shape)."""
        return cls(strategies=strategies, present=module.present, world_size=module.world_size,
                   is_writer=module.is_writer, layout=module.layout, describe_worker=module.describe_worker,
                   variables=module.VARIABLES, worker_environment=getattr(module, "worker_environment", None),
                   describe_world=getattr(module, "describe_world", None), job=getattr(module, "job", None))

    def world_phrase(self, size: int) -> str:
        return self.describe_world(size) if self.describe_world else f"{self.variables} describes {size} process(es)"


@dataclass(frozen=True)
class EngineSpec:
    """One framework's engine, as the launcher sees it."""

    framework: str
    entry: str
    """`module:function` that runs a RunConfig in the current process (imports the framework)."""
    resume: ResumeFiles
    cluster: ClusterEnv | None = None
    """How its multi-process strategy is described by environment variables (None: no such hook)."""
    model_file: str = ""
    """The saved model a complete run leaves in OUT (`model.pt`, `model.keras`)."""
    predict: str = ""
    """Module run as `python -m MODULE RUN INPUTS.npy LOGITS.npy`: the saved model's logits for normalised NHWC
    float32 inputs, in a process of its own (`pvision predict`; it imports the framework)."""
    explain: str = ""
    """Module run as `python -m MODULE RUN FOLDER`: attribution maps and their faithfulness curves for the
    images in FOLDER (`pvision explain`, explain/run.py; "" where the engine has none yet)."""

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategies this engine serves: its framework's rows of the strategy table."""
        return strategies_of(self.framework)

    def load_entry(self) -> Callable[[RunConfig], None]:
        """Import the training code (and so the framework): only ever inside an engine process."""
        module, _, function = self.entry.partition(":")
        return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]
