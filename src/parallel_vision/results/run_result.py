"""A thin typed view over one result.json, returned by `parallel_vision.run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parallel_vision.config import RunConfig
from parallel_vision.results.schema import read_result


@dataclass(frozen=True)
class RunResult:
    """The validated content of a result.json and where it lives."""

    data: dict[str, Any]
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        path = Path(path)
        file = path / "result.json" if path.is_dir() else path
        return cls(read_result(file), file)

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_dict(self.data["config"])

    @property
    def summary(self) -> dict[str, Any]:
        return self.data["summary"]

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return self.data["epochs"]

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    @property
    def out_dir(self) -> Path | None:
        return self.path.parent if self.path else None
