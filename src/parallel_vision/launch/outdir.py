"""The run's output folder: created, checked writable, and never silently reused.

A folder that holds a different or finished run is refused; one that holds an unfinished run
(any engine's checkpoint or backup, found through the engine registry) continues only with
--resume (or when torchrun restarted this very run), and --overwrite starts it again.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path

from parallel_vision.config import RunConfig, differing_fields
from parallel_vision.data.paths import absolute
from parallel_vision.engines import registry
from parallel_vision.errors import ConfigError, PVisionError
from parallel_vision.results.schema import RESULT_FILE

CONFIG_FILE = "config.json"


def default_out_dir(cfg: RunConfig, root: str | os.PathLike[str] = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{cfg.framework}-{cfg.strategy}-w{cfg.workers}-{uuid.uuid4().hex[:6]}"


def prepare_out_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """Create the output folder; refuse one that holds a different or finished run."""
    out = absolute(cfg.out_dir) if cfg.out_dir else absolute(default_out_dir(cfg))
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable ({exc.strerror})") from None
    previous = out / CONFIG_FILE
    if previous.exists() and not overwrite:
        try:
            old = RunConfig.from_json(previous.read_text()).identity()
        except (PVisionError, OSError):
            old = None
        new = cfg.replace(out_dir=str(out)).identity()
        if old != new:
            fields = differing_fields(old, new)[:4] if old is not None else []
            detail = f" (different {', '.join(fields)})" if fields else ""
            raise ConfigError(f"output directory {out} holds a different run{detail}; choose another --out")
        if (out / RESULT_FILE).exists():
            try:
                previous_result = json.loads((out / RESULT_FILE).read_text())
                status = previous_result.get("status") if isinstance(previous_result, dict) else None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                status = None
            if status not in ("complete", "incomplete"):
                raise ConfigError(f"output directory {out} holds an unreadable result.json; "
                                  "choose another --out, or --overwrite to start again")
            if status == "complete":
                nothing = "; nothing to resume" if cfg.resume else ""
                raise ConfigError(f"output directory {out} already holds a finished run{nothing}; "
                                  "choose another --out")
    # A checkpoint means an unfinished run: continue it only when asked (or when torchrun restarted
    # this very run); --overwrite starts again, so its old checkpoint can never be resumed by mistake.
    formats = [engine.resume for engine in registry.engines().values()]
    unfinished = [f for f in formats if f.present(out)]
    if unfinished and not cfg.resume and not any(f.auto_resume(out) for f in unfinished):
        if overwrite:
            for resume_files in unfinished:
                resume_files.remove(out)
        else:
            raise ConfigError(f"output directory {out} holds an unfinished run ({unfinished[0].describe(out)}); "
                              "add --resume to continue it, or --overwrite to start again")
    return out
