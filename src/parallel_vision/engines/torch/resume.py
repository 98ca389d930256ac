"""The Trainer's state, and checkpoints built on it: one `state_dict()` / `load_state_dict()` pair.

`state_dict()` is everything the next training step depends on in this process: weights (with
BatchNorm statistics), optimiser, schedule, scaler, RNG and the compression hook's state (PowerSGD).
The warm-up restores it after its compile/autotune steps; a checkpoint is every rank's state (rank 0's
weights, every rank's RNG and hook state) plus where the run stands (epoch, step, partial-epoch sums,
the epoch records); a resume loads it back.

Reliability (docs/reliability.md): a checkpoint at every epoch end and every `checkpoint_every`
steps makes a resumed run continue bit for bit; nothing non-finite is ever written, so a divergence
leaves the last good checkpoint in place. The file format is `checkpoint.py`'s.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from parallel_vision.engines.common import steps_per_epoch
from parallel_vision.engines.torch import checkpoint, sharding
from parallel_vision.engines.torch.devices import synchronize
from parallel_vision.errors import EngineError, PVisionError, error_type
from parallel_vision.provenance import code_version
from parallel_vision.signals import StopRequest

if TYPE_CHECKING:
    from parallel_vision.config import RunConfig
    from parallel_vision.engines.torch.comm import CommTimer
    from parallel_vision.engines.torch.data import DeviceData
    from parallel_vision.engines.torch.dist import Dist


class Resumable:
    """The state and checkpoint half of `loop.Trainer` (which provides the attributes annotated here)."""

    cfg: RunConfig
    dist: Dist
    device: torch.device
    model: torch.nn.Module
    train: DeviceData
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    comm: CommTimer
    records: list[dict[str, Any]]
    start_epoch: int
    last_predictions: np.ndarray | None
    final_eval_needed: bool
    _partial: dict[str, Any] | None
    _paused: float
    warmed_up: bool

    def _warm_up(self) -> None:
        """loop.Trainer's: a few real steps outside the clock, then the state from before them restored."""
        raise NotImplementedError

    def _init_checkpoints(self) -> None:
        """Off until `enable_checkpoints` (a bare Trainer, as in the tests, writes nothing)."""
        self.out: Path | None = None
        self.stop: StopRequest | None = None
        self.reliability: dict[str, Any] = {"checkpoints_written": 0, "checkpoint_time_s": 0.0, "resumed_from": []}
        self._code_version: str | None = None
        self._last_good: str | None = None

    @property
    def bare_model(self) -> torch.nn.Module:
        """The model without DDP/DataParallel wrapping, for state_dicts with no `module.` prefix."""
        return self.model.module if hasattr(self.model, "module") else self.model  # type: ignore[return-value]

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """This process's training state, as copies that later steps cannot change. Collective under zero1 and
        fsdp, whose model and optimizer are the plain single-model state dicts on rank 0 (None on the others)."""
        return {
            "model": sharding.full_model_state(self.cfg, self.model),
            "optimizer": sharding.full_optimizer_state(self.cfg, self.model, self.optimizer),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() or None,  # a disabled scaler has no state
            "rng": checkpoint.rng_state(self.device.type == "cuda"),
            "comm_hook": self.comm.hook_state_dict(),  # PowerSGD's error feedback and Q: this rank's own
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put `state` back exactly; the RNG last, so the next draw is the next training step's.

        `state` stays usable: the optimiser and schedule would otherwise adopt its tensors and lists
        (`Optimizer.load_state_dict` keeps a tensor already on the right device) and update them in place.
        """
        if state.get("comm_hook") is not None and not self.warmed_up:
            # DDP lays its buckets out anew after its first step, and PowerSGD's state is per bucket: a fresh
            # model takes (and then undoes) its warm-up steps first, so the state lands on the layout it came from.
            self._warm_up()
        sharding.load_full_state(self.cfg, self.model, self.optimizer, state["model"], state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
        self.scaler.load_state_dict(state["scaler"] or {})
        self.optimizer.zero_grad(set_to_none=True)
        self.comm.load_hook_state_dict(state.get("comm_hook"), self.device)
        checkpoint.set_rng_state(state["rng"])

    # -- checkpoints ----------------------------------------------------------------------
    def enable_checkpoints(self, out: Path, stop: StopRequest | None) -> None:
        """Write checkpoints to `out` (rank 0) and stop cleanly when `stop` records a signal."""
        self.out, self.stop = out, stop
        self._code_version = code_version()
        if self.dist.master:
            checkpoint.remove_stale_temp_files(out)

    def _diverged(self, what: str, epoch: int, done: int) -> str:
        kept = (f"the last good checkpoint ({self._last_good}) is kept in {self.out / checkpoint.CHECKPOINT_FILE}"
                if self._last_good and self.out is not None else "no checkpoint had been written")
        return f"training diverged: {what} at epoch {epoch + 1} step {done}; {kept}"

    @staticmethod
    def _position(epoch: int, step: int) -> str:
        return f"after epoch {epoch}" if step == 0 else f"epoch {epoch + 1} step {step}"

    def _save_checkpoint(self, epoch: int, step: int, sums: dict[str, Any] | None) -> None:
        """Collective: every rank hands rank 0 its RNG states and partial sums; rank 0 writes OUT/checkpoint.pt.

        (epoch, step) is where training continues: `step` steps of epoch `epoch` (0-based) are done.
        """
        if self.out is None:
            return
        dog = getattr(self, "watchdog", None)  # the lost-peer watchdog of a DDP group (loop.Trainer's)
        if dog is not None:
            dog.begin(f"the checkpoint {self._position(epoch, step)}", "checkpoint")
        t = time.perf_counter()
        synchronize(self.device)
        state = self.state_dict()
        floats = [sharding.local_tensor(v) for v in self.model.state_dict().values() if v.is_floating_point()]
        mine = {
            "rng": state["rng"],
            "comm_hook": state["comm_hook"],
            "loss_sum": sums["loss_sum"].detach().cpu().clone() if sums else None,
            "correct": sums["correct"].detach().cpu().clone() if sums else None,
            "finite": bool(torch.stack([torch.isfinite(v).all() for v in floats]).all()),
        }
        ranks = self.dist.all_gather_object(mine)
        if any(r["loss_sum"] is not None and not bool(torch.isfinite(r["loss_sum"])) for r in ranks):
            raise EngineError(self._diverged("the training loss became non-finite", epoch, step))
        if not all(r["finite"] for r in ranks):
            raise EngineError(self._diverged("the weights became non-finite", epoch, step))
        if self.dist.master:
            self.reliability["checkpoints_written"] += 1
            predictions = self.last_predictions
            checkpoint.save(self.out, {
                "format": checkpoint.FORMAT,
                "kind": checkpoint.KIND,
                "config_identity": checkpoint.identity_json(self.cfg.identity()),
                "code_version": self._code_version,
                "epoch": epoch,
                "step": step,
                "steps_per_epoch": steps_per_epoch(self.train.n, self.cfg.batch_size),
                "world_size": self.dist.world_size,
                **{k: state[k] for k in ("model", "optimizer", "scheduler", "scaler")},
                "records": [dict(r) for r in self.records],
                "partial": None if sums is None else {k: float(sums[k]) for k in
                                                      ("data_time_s", "epoch_time_s", "comm_time_s")},
                "ranks": [{k: r[k] for k in ("rng", "comm_hook", "loss_sum", "correct")} for r in ranks],
                "predictions": None if predictions is None else torch.from_numpy(np.asarray(predictions)),
                "elastic_run_id": os.environ.get("TORCHELASTIC_RUN_ID"),
                "reliability": json.loads(json.dumps(self.reliability)),
            })
        self._last_good = self._position(epoch, step)
        if dog is not None:
            dog.done("checkpoint")
        seconds = time.perf_counter() - t
        self._paused += seconds
        self.reliability["checkpoint_time_s"] += seconds

    def restore(self) -> bool:
        """Continue from OUT/checkpoint.pt when asked to (--resume, or torchrun restarted the group).

        Rank 0 reads and checks the file (weights_only) and hands it to every rank, so the
        other ranks need no access to OUT. Returns whether training resumed.
        """
        ckpt, error = None, None
        if self.dist.master and self.out is not None:
            path = self.out / checkpoint.CHECKPOINT_FILE
            try:
                wanted = self.cfg.resume or checkpoint.elastic_auto_resume(self.out)
                if wanted and path.exists():
                    ckpt = checkpoint.load(path)
                    checkpoint.check_compatible(ckpt, self.cfg.identity(), self.dist.world_size, path)
                elif wanted:
                    print(f"pvision: no checkpoint in {self.out}; starting from the beginning", file=sys.stderr,
                          flush=True)
            except PVisionError as exc:
                error = (type(exc).__name__, str(exc))
        ckpt, error = self.dist.broadcast_object((ckpt, error))
        if error is not None:
            raise error_type(error[0])(error[1])
        if ckpt is None:
            return False
        self._continue_from(ckpt)
        return True

    def _continue_from(self, ckpt: dict[str, Any]) -> None:
        epoch, step, steps = int(ckpt["epoch"]), int(ckpt["step"]), int(ckpt["steps_per_epoch"])
        self.records = [dict(r) for r in ckpt["records"]]
        self.start_epoch = epoch
        mine = ckpt["ranks"][self.dist.rank]
        self._partial = None
        if step > 0:
            self._partial = {"epoch": epoch, "step": step, "loss_sum": mine["loss_sum"], "correct": mine["correct"],
                             **ckpt["partial"]}
        if ckpt.get("predictions") is not None:
            self.last_predictions = ckpt["predictions"].numpy()
        self.final_eval_needed = epoch >= self.cfg.epochs and ckpt.get("predictions") is None
        previous = ckpt.get("reliability") or {}
        self.reliability["checkpoints_written"] = int(previous.get("checkpoints_written", 0))
        self.reliability["checkpoint_time_s"] = float(previous.get("checkpoint_time_s", 0.0))
        restarts = checkpoint.elastic_restart_count()
        self.reliability["resumed_from"] = list(previous.get("resumed_from", [])) + [
            {"epoch": epoch, "step": step, "elastic_restart": restarts or None}]
        self._last_good = self._position(epoch, step)
        if self.dist.master:
            where = ("after the last epoch (final outputs only)" if epoch >= self.cfg.epochs
                     else f"epoch {epoch + 1} step {step} of {steps}")
            code = ckpt.get("code_version")
            note = "" if code == self._code_version else f"; written by code {code}, this is {self._code_version}"
            why = f" after torchrun restart {restarts}" if restarts else ""
            print(f"pvision: resuming{why} from {where} ({self.out / checkpoint.CHECKPOINT_FILE}{note})",
                  file=sys.stderr, flush=True)
        # Last: nothing may draw a random number between here and the next training step.
        self.load_state_dict({k: ckpt[k] for k in ("model", "optimizer", "scheduler", "scaler")}
                             | {"rng": mine["rng"], "comm_hook": mine.get("comm_hook")})  # older files: no hook state
