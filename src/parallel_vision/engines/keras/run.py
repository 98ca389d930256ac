"""The state one Keras run shares between its steps (`KerasRun`), the precision policy and the device refusals,
the same for the TensorFlow and the JAX engine.

Each engine subclasses `KerasRun` with its backups (`BACKUPS`) and a name for its backend module (`run.tf`,
`run.jax`); its placement (strategy or mesh, devices, writer, cluster) is its own and only read here through
`is_writer`, `cluster` and `world_size`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from parallel_vision.config import RunConfig
from parallel_vision.engines.common import launch_time
from parallel_vision.engines.keras.backup import KerasBackups
from parallel_vision.errors import ConfigError


def new_reliability() -> dict[str, Any]:
    return {"backups_written": 0, "backup_time_s": 0.0, "resumed_from": []}


@dataclass
class KerasRun:
    """What every step of one run shares: the configuration, the backend and Keras, the placement, and what the
    result will hold (records, timing, reliability). Filled in as the run goes."""

    BACKUPS: ClassVar[KerasBackups]  # the engine's epoch-end backups (its folder under OUT)

    cfg: RunConfig
    backend: Any  # the framework module: tensorflow or jax
    keras: Any
    placement: Any  # the engine's own: is_writer, world_size, cluster
    out: Path
    timing: dict[str, float | None]
    class_names: list[str] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    reliability: dict[str, Any] = field(default_factory=new_reliability)
    start_epoch: int = 0  # 0-based epoch training starts at: the epochs a backup already holds
    summary_extra: dict[str, Any] = field(default_factory=dict)  # what only the engine measured (result summary)

    @classmethod
    def started(cls, cfg: RunConfig, backend: Any, keras: Any, placement: Any) -> Any:
        """The run once devices are ready: the precision policy set, startup_s recorded (launch → now)."""
        set_precision_policy(keras, cfg)
        timing: dict[str, float | None] = {"startup_s": time.time() - launch_time(), "compile_s": None}
        return cls(cfg=cfg, backend=backend, keras=keras, placement=placement, out=Path(cfg.out_dir or "."),
                   timing=timing)

    @property
    def writer(self) -> bool:
        """This process writes the outputs (always, except on a non-writing multiworker process)."""
        return bool(self.placement.is_writer)

    @property
    def cluster(self) -> Any:
        return self.placement.cluster

    @property
    def backups(self) -> KerasBackups:
        return self.BACKUPS

    def kept_note(self) -> str:
        """What survives a failed write in OUT: the last epoch-end backup."""
        return self.BACKUPS.kept_note(self.out)

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Record the seconds the block takes as timing[key]."""
        start = time.perf_counter()
        yield
        self.timing[key] = time.perf_counter() - start


def set_precision_policy(keras: Any, cfg: RunConfig) -> None:
    """Keras' global dtype policy for `precision` (fp32: Keras' default, left alone)."""
    if cfg.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    elif cfg.precision == "fp16":
        keras.mixed_precision.set_global_policy("mixed_float16")


def refuse_devices(cfg: RunConfig, framework: str, *, gpu_seen: bool, use_gpu: bool) -> None:
    """The one-line refusals of a device request the backend cannot serve."""
    if cfg.device == "cuda" and not gpu_seen:
        raise ConfigError(f"--device cuda was given but {framework} sees no GPU")
    if cfg.precision == "fp16" and not use_gpu:
        raise ConfigError("precision fp16 needs a GPU; use bf16 or fp32 on CPU")
