"""`pvision train`'s options: their defaults are RunConfig's, and `--config FILE` merges with flags (flags win)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from parallel_vision.cli import app
from parallel_vision.cli.train_cmd import _FIELD_OF, _NOT_CONFIG
from parallel_vision.config import RunConfig


def test_every_option_default_is_the_run_configs() -> None:
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}
    checked = 0
    for param in command.params:
        if param.name in _NOT_CONFIG or param.name == "workers":
            continue
        field = _FIELD_OF.get(param.name, param.name)
        expected = defaults[field]
        if param.name == "no_tensorboard":
            expected = not expected
        assert param.default == expected, (param.name, param.default, expected)
        checked += 1
    assert checked >= 30


@pytest.mark.slow
def test_flags_override_a_config_file(data_dir: Path, tmp_path: Path) -> None:
    base = RunConfig(epochs=3, batch_size=256, limit_train=512, limit_test=200, seed=7, threads_per_worker=1,
                     tensorboard=False, data_dir=str(data_dir))
    (tmp_path / "run.json").write_text(base.to_json())
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "parallel_vision", "train", "--config", "run.json", "--epochs", "1",
                           "--out", "out", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "out" / "result.json").read_text())["config"]
    assert config["epochs"] == 1  # the flag
    assert (config["batch_size"], config["limit_train"], config["seed"]) == (256, 512, 7)  # the file
    assert config["out_dir"] == str(tmp_path / "out")
