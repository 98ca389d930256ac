"""Checkpoints of a PyTorch run: what a resume needs, written atomically, read without running code.

`OUT/checkpoint.pt` is one `torch.save` of plain containers and tensors (no
pickled objects), so it loads with `torch.load(..., weights_only=True)`; a file
carrying anything else is refused and its payload never runs. It is written by
rank 0 through a temp file, fsync and rename: a crash during the write leaves
the previous good checkpoint in place. `OUT/checkpoint.json` beside it is a
small summary (epoch, step, torchrun run id) for the launcher, which never
imports torch; the `.pt` file is the truth, the summary is only a hint.

This module imports torch lazily, inside the functions that need it, because
the launcher uses `info`, `present` and `remove` too.
"""

from __future__ import annotations

import io
import json
import os
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from parallel_vision.atomic import atomic_write_bytes, disk_full
from parallel_vision.config import differing_fields
from parallel_vision.errors import ConfigError, DiskFullError, EngineError

CHECKPOINT_FILE = "checkpoint.pt"
INFO_FILE = "checkpoint.json"
FORMAT = 1
KIND = "parallel_vision.torch.checkpoint"
#: Keys every checkpoint has (written by `resume.Resumable._save_checkpoint`).
REQUIRED = ("format", "kind", "config_identity", "code_version", "epoch", "step", "steps_per_epoch",
            "world_size", "model", "optimizer", "scheduler", "scaler", "records", "ranks")


# --------------------------------------------------------------------------- RNG states
def rng_state(cuda: bool) -> dict[str, Any]:
    """Every random generator this process draws from, as tensors, lists and numbers only."""
    import numpy as np
    import torch

    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if cuda else None,  # this rank's device only
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": [int(v) for v in internal], "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# --------------------------------------------------------------------------- identity
def identity_json(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True)


def check_compatible(ckpt: dict[str, Any], identity: dict[str, Any], world_size: int, where: Path) -> None:
    """Refuse a checkpoint written by a different configuration (one line naming what differs)."""
    try:
        old = json.loads(ckpt["config_identity"])
    except (TypeError, ValueError):
        raise EngineError(f"{where}: the checkpoint's configuration record is unreadable") from None
    if old != identity:
        fields = differing_fields(old, identity)
        shown = ", ".join(f"{k} {old.get(k)!r} -> {identity.get(k)!r}" for k in fields[:4])
        more = f" and {len(fields) - 4} more" if len(fields) > 4 else ""
        raise ConfigError(f"{where} was written by a different configuration ({shown}{more}); "
                          "use another --out, or --overwrite to start again")
    if int(ckpt["world_size"]) != world_size:
        raise ConfigError(f"{where} was written by {ckpt['world_size']} workers, this run has {world_size}")


# --------------------------------------------------------------------------- files
def present(out: str | os.PathLike[str]) -> bool:
    return (Path(out) / CHECKPOINT_FILE).exists()


def info(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The summary written beside the checkpoint (None when absent or unreadable). No torch needed."""
    try:
        data = json.loads((Path(out) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(out: str | os.PathLike[str]) -> str:
    """Where the unfinished run stands, for the launcher's messages."""
    summary = info(out) or {}
    try:
        epoch, step = int(summary["epoch"]), int(summary["step"])
    except (KeyError, TypeError, ValueError):
        return "a checkpoint"
    return f"checkpoint after epoch {epoch}" if step == 0 else f"checkpoint at epoch {epoch + 1} step {step}"


def remove_stale_temp_files(out: str | os.PathLike[str]) -> None:
    """Temp files of a write that a crash interrupted (the checkpoint itself was never touched)."""
    for name in (CHECKPOINT_FILE, INFO_FILE):
        for tmp in Path(out).glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def kept_note(out: str | os.PathLike[str]) -> str:
    """What survives a failed write in OUT, for a one-line error: the last checkpoint, if any."""
    summary = info(out) if present(out) else None
    if summary is None:
        return "no checkpoint had been written yet"
    try:
        epoch, step = int(summary["epoch"]), int(summary["step"])
    except (KeyError, TypeError, ValueError):
        return "the last good checkpoint is kept; continue with --resume once space is freed"
    where = f"after epoch {epoch}" if step == 0 else f"epoch {epoch + 1} step {step}"
    return f"the last good checkpoint ({where}) is kept; continue with --resume once space is freed"


def remove(out: str | os.PathLike[str]) -> None:
    for name in (CHECKPOINT_FILE, INFO_FILE):
        try:
            (Path(out) / name).unlink()
        except FileNotFoundError:
            pass


def save(out: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write `state` as OUT/checkpoint.pt (temp file, fsync, rename), after its summary."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    summary = {
        "epoch": int(state["epoch"]),
        "step": int(state["step"]),
        "steps_per_epoch": int(state["steps_per_epoch"]),
        "world_size": int(state["world_size"]),
        "elastic_run_id": state.get("elastic_run_id"),
        "code_version": state.get("code_version"),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    payload, summary_bytes = buffer.getvalue(), (json.dumps(summary, indent=2) + "\n").encode()
    out = Path(out)
    kept = kept_note(out)
    try:
        previous_summary: bytes | None = (out / INFO_FILE).read_bytes()
    except OSError:
        previous_summary = None
    # The summary first: it names this torchrun run before a checkpoint of it can exist (see
    # elastic_auto_resume); for a moment it may be one checkpoint ahead of the .pt file, never behind.
    try:
        atomic_write_bytes(out / INFO_FILE, summary_bytes)
        atomic_write_bytes(out / CHECKPOINT_FILE, payload)
    except DiskFullError as exc:
        # The previous checkpoint is intact; put its summary back (best effort: it is a few hundred
        # bytes) and name the checkpoint, with what it needs, whichever of the two files failed.
        try:
            if previous_summary is not None:
                atomic_write_bytes(out / INFO_FILE, previous_summary)
            elif not present(out):
                (out / INFO_FILE).unlink(missing_ok=True)
        except (OSError, DiskFullError):
            pass
        raise disk_full(out / CHECKPOINT_FILE, len(payload) + len(summary_bytes), kept, exc) from None


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; anything else is a one-line EngineError.

    A pickle that would build arbitrary objects (and so could run code) is refused
    by torch's restricted unpickler before any of it runs.
    """
    import pickle

    import torch

    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EngineError(f"{path}: no checkpoint to resume from") from None
    except pickle.UnpicklingError as exc:
        if _asks_for_objects(exc):
            raise EngineError(
                f"{path} is not a plain-tensor checkpoint: it asks to unpickle arbitrary objects, which could "
                "run code; refused (delete it, or use another --out)"
            ) from None
        damaged = _first_words(exc)
        raise EngineError(f"{path} is not a readable checkpoint (damaged: {damaged}); {DAMAGED_FIX}") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad magic, wrong format: one line either way
        raise EngineError(f"{path} is not a readable checkpoint ({_first_words(exc)}); {DAMAGED_FIX}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise EngineError(f"{path} is not a parallel_vision checkpoint")
    if data.get("format") != FORMAT:
        raise EngineError(f"{path} has checkpoint format {data.get('format')!r}; this version reads {FORMAT}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise EngineError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    return data


#: What to do about a damaged checkpoint file (truncated, overwritten), for the one-line error.
DAMAGED_FIX = ("run again with --overwrite to start from the beginning, or put back a last-good copy of "
               "checkpoint.pt if you keep one")


def _asks_for_objects(exc: BaseException) -> bool:
    """Whether torch's restricted unpickler refused a class or function (a payload), not damaged bytes."""
    text = " ".join(str(e) for e in (exc, exc.__context__) if e is not None)
    return "Unsupported global" in text or "not an allowed global" in text


def _first_words(exc: BaseException) -> str:
    """The cause in a few words: torch's last specific line (after 'WeightsUnpickler error:') or its first."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
    return first[:160]


# --------------------------------------------------------------------------- elastic restarts
def elastic_restart_count() -> int:
    """How many times torchrun has restarted this worker group (0 outside torchrun or on the first try)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def elastic_auto_resume(out: str | os.PathLike[str]) -> bool:
    """True when torchrun restarted the group and OUT holds a checkpoint that this torchrun run wrote.

    A checkpoint of another run (an older command in the same folder) is never
    picked up silently: it still needs --resume.
    """
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if elastic_restart_count() <= 0 or not run_id or not present(out):
        return False
    summary = info(out)
    return summary is not None and summary.get("elastic_run_id") == run_id
