"""The PyTorch engine: one training loop; `single`, `dp` and `ddp` only change the wrapping.

Runs inside the engine process made by the launcher (or by torchrun). The data
lives in memory as uint8 tensors (on the GPU when training there); batches are
drawn by indexing a seeded per-epoch permutation and normalised as a whole —
no DataLoader, no per-sample transforms in the hot path. Rank 0 alone writes files and logs.

Reliability (docs/reliability.md): a checkpoint at every epoch end and every
`checkpoint_every` steps holds everything the next step depends on (weights,
optimiser, schedule, scaler, every rank's RNG and partial-epoch sums, the epoch
records), so a resumed run continues bit for bit; SIGINT/SIGTERM end the current
step, checkpoint and exit 130/143; a non-finite loss stops the run before a bad
checkpoint can replace the last good one.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from parallel_vision import envvars
from parallel_vision.config import RunConfig, usable_cores
from parallel_vision.engines.common import (
    EpochProgress,
    epoch_record,
    load_split,
    normalisation,
    peak_rss_mib,
    steps_per_epoch,
)
from parallel_vision.engines.outputs import build_result, save_predictions, save_result, tensorboard_disk_full
from parallel_vision.engines.provenance import code_version, host_environment
from parallel_vision.engines.signals import StopRequest, exit_code_in
from parallel_vision.engines.torch import checkpoint
from parallel_vision.engines.torch.sync_batchnorm import convert_sync_batchnorm
from parallel_vision.errors import ConfigError, EngineError, PVisionError, RunInterrupted
from parallel_vision.models import init as model_init
from parallel_vision.models.torch_cnn import PaperCNN, load_canonical
from parallel_vision.results.schema import atomic_write_bytes


# --------------------------------------------------------------------------- process set-up
@dataclass(frozen=True)
class Dist:
    """Where this process sits in the job. `master` gates every side effect (files, logs)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def _cuda_wanted(cfg: RunConfig) -> bool:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but PyTorch sees no CUDA device")
    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def check_devices(cfg: RunConfig) -> None:
    """Refuse configurations this machine cannot run, before any worker starts."""
    cuda = _cuda_wanted(cfg)
    gpus = torch.cuda.device_count() if cuda else 0
    if cfg.strategy == "dp":
        if gpus == 0:
            raise ConfigError(
                "strategy 'dp' (nn.DataParallel) needs >= 2 CUDA devices; this machine has 0. "
                "Use 'ddp' to run several CPU worker processes"
            )
        if cfg.workers > gpus:
            raise ConfigError(f"{cfg.workers} workers requested but only {gpus} CUDA devices are visible")
    if cfg.strategy == "ddp" and "LOCAL_WORLD_SIZE" not in os.environ:
        if cuda and cfg.workers > gpus:
            raise ConfigError(f"{cfg.workers} workers requested but only {gpus} CUDA devices are visible")
        if not cuda and cfg.workers > usable_cores():
            raise ConfigError(
                f"{cfg.workers} CPU workers requested but this machine has {usable_cores()} usable cores"
            )
    if cfg.precision == "fp16" and not cuda:
        raise ConfigError("fp16 needs a CUDA device; use bf16 or fp32 on the CPU")


def _set_threads(cfg: RunConfig, ctx: Dist) -> None:
    threads = cfg.resolved_threads()
    if cfg.pin_threads and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        mine = cores[(ctx.local_rank * threads) % len(cores):][:threads] or cores[:threads]
        os.sched_setaffinity(0, mine)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (e.g. a second run under torchrun)
        pass


def _device(cfg: RunConfig, ctx: Dist) -> torch.device:
    if _cuda_wanted(cfg):
        index = ctx.local_rank if cfg.strategy == "ddp" else 0
        torch.cuda.set_device(index)
        # Fixed shapes: let cuDNN pick the fastest kernels (during the warm-up, outside the clock).
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls, as for cuDNN convolutions
        return torch.device("cuda", index)
    return torch.device("cpu")


# --------------------------------------------------------------------------- communication timing
class CommTimer:
    """DDP communication hook state: wall time of gradient all-reduce, launch to completion.

    Buckets are all-reduced while backward still runs, so this time may overlap
    compute; it is what the communication costs, not what it adds to the epoch.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def _timed_allreduce_hook(state, bucket):  # type: ignore[no-untyped-def]
    # No annotations: torch checks them at registration and this module defers them as strings.
    start = time.perf_counter()
    tensor = bucket.buffer().div_(dist.get_world_size())
    future = dist.all_reduce(tensor, async_op=True).get_future()

    def done(fut: torch.futures.Future[Any]) -> torch.Tensor:
        state.seconds += time.perf_counter() - start
        return fut.value()[0]

    return future.then(done)


# --------------------------------------------------------------------------- data
@dataclass
class DeviceData:
    """A split resident on the device: uint8 pixels (N,C,H,W) and int64 labels.

    Pixels stay uint8 (a quarter of float32: 47 MB instead of 188 MB for MNIST's
    training set, per worker) and each batch is normalised as it is taken, with the
    same float operations a normalise-once copy would have applied, so the values
    are bit-identical; the cost is one elementwise pass over the batch.
    """

    pixels: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    mean: float
    std: float
    channels_last: bool

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.pixels.shape[1:])  # type: ignore[return-value]

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images and labels of `index` (a permutation slice or a range)."""
        x = self.pixels[index].float().div_(255.0).sub_(self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[index]


def _load(cfg: RunConfig, split: str, device: torch.device) -> DeviceData:
    images, labels, names = load_split(cfg, split)
    mean, std = normalisation(cfg)
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    return DeviceData(x, y, names, mean, std, cfg.memory_format == "channels_last")


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The same shuffled order on every rank, new each epoch (DistributedSampler.set_epoch's job)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def shard_slice(step: int, global_batch: int, rank: int, world: int) -> slice:
    """Rank r's part of global batch `step`: the union over ranks is exactly the single-device batch."""
    per = global_batch // world
    start = step * global_batch + rank * per
    return slice(start, start + per)


# --------------------------------------------------------------------------- trainer
class _Stopped(Exception):
    """Every rank agreed to stop at (epoch, step) after a signal; the checkpoint is written."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"stopped at epoch {epoch} step {step}")
        self.epoch, self.step = epoch, step


class Trainer:
    """One training loop for every strategy; the strategy only decides how `model` is wrapped."""

    def __init__(self, cfg: RunConfig, ctx: Dist) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.device = _device(cfg, ctx)
        self.timing: dict[str, float | None] = {}

        t = time.perf_counter()
        self.train = _load(cfg, "train", self.device)
        self.test = _load(cfg, "test", self.device)
        self.timing["data_load_s"] = time.perf_counter() - t

        t = time.perf_counter()
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        channels, _, side = self.train.image_shape
        model: nn.Module = PaperCNN(channels, side, len(self.train.class_names), cfg.dropout)
        if cfg.init == "aligned":  # the framework-free weights every engine starts from (models/init.py)
            load_canonical(model, model_init.aligned_weights(cfg.seed, channels, side, len(self.train.class_names)))
        model = model.to(self.device)
        if cfg.memory_format == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        self.comm = CommTimer()
        if cfg.strategy == "ddp":
            if cfg.sync_batchnorm:
                model = convert_sync_batchnorm(model, self.device.type)
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
            model.register_comm_hook(self.comm, _timed_allreduce_hook)
        elif cfg.strategy == "dp":
            model = nn.DataParallel(model, device_ids=list(range(cfg.workers)))
        self.model = model
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        torch.manual_seed(cfg.seed + ctx.rank)  # dropout differs by rank, as with independent devices
        self.timing["model_build_s"] = time.perf_counter() - t
        self.autocast = self._autocast()
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.cuda_graphs = cfg.compile and cfg.compile_mode == "reduce-overhead"
        self.forward = torch.compile(self.model, mode=cfg.compile_mode) if cfg.compile else self.model
        if cfg.compile or self.device.type == "cuda":
            self._warm_up()

        # Reliability: off until `enable_checkpoints` (a bare Trainer, as in the tests, writes nothing).
        self.out: Path | None = None
        self.stop: StopRequest | None = None
        self.records: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.last_predictions: np.ndarray | None = None  # rank 0's; None on the other ranks
        self.final_eval_needed = False
        self.reliability: dict[str, Any] = {"checkpoints_written": 0, "checkpoint_time_s": 0.0, "resumed_from": []}
        self._code_version: str | None = None
        self._partial: dict[str, Any] | None = None  # where the resumed epoch stood, and its sums on this rank
        self._last_good: str | None = None
        self._stop_signum = 0
        self._paused = 0.0
        # How often all ranks agree on "stop?" and "finite?": every step on the CPU (a tiny gloo
        # all-reduce), every 16 steps on CUDA (each check is a host sync).
        self.poll_every = 1 if self.device.type == "cpu" else 16

    # -- pieces ---------------------------------------------------------------------------
    @property
    def bare_model(self) -> nn.Module:
        """The model without DDP/DataParallel wrapping, for state_dicts with no `module.` prefix."""
        return self.model.module if hasattr(self.model, "module") else self.model

    def _optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        fused = self.device.type == "cuda"  # one kernel for the whole update instead of one per tensor
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=fused,
                                    eps=model_init.adam_epsilon("torch", self.cfg.init))
        return torch.optim.SGD(params, lr=self.cfg.lr, momentum=self.cfg.momentum,
                               weight_decay=self.cfg.weight_decay, fused=fused or None)

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        if self.cfg.lr_schedule == "constant":
            return None
        steps = steps_per_epoch(self.train.n, self.cfg.batch_size) * self.cfg.epochs
        return torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=self.cfg.lr, total_steps=steps)

    def _autocast(self) -> Any:
        if self.cfg.precision == "fp32":
            return None
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    def _warm_up(self) -> None:
        """Compile and autotune outside the clock (airbench's habit), then restore the exact state.

        A few real training steps on a real batch trigger torch.compile, CUDA-graph
        recording, cuDNN's algorithm search and the optimiser's first-step set-up;
        weights, BatchNorm statistics, optimiser, schedule and gradients are then put
        back, so the timed run is exactly the run it would have been.
        """
        import copy

        model_state = {k: v.clone() for k, v in self.bare_model.state_dict().items()}
        optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        scheduler_state = self.scheduler.state_dict() if self.scheduler is not None else None
        scaler_state = self.scaler.state_dict() if self.scaler is not None else None
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        t = time.perf_counter()
        per = self.cfg.per_worker_batch
        x, y = self.train.batch(slice(0, per))
        self.model.train()
        for _ in range(3):
            loss, logits = self._step(x, y)
            (loss.detach().double() * per).item()
            (logits.detach().argmax(1) == y).sum().item()
        self._sync()
        self.timing["compile_s"] = time.perf_counter() - t
        self.optimizer.zero_grad(set_to_none=True)
        self.bare_model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        if scheduler_state is not None:
            self.scheduler.load_state_dict(scheduler_state)  # type: ignore[union-attr]
        if scaler_state is not None:
            self.scaler.load_state_dict(scaler_state)  # type: ignore[union-attr]
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        self.comm.take()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _all_sum(self, *values: torch.Tensor) -> list[float]:
        stacked = torch.stack([v.detach().double().to(self.device) for v in values])
        if self.ctx.distributed:
            dist.all_reduce(stacked)
        return stacked.cpu().tolist()

    # -- one epoch ------------------------------------------------------------------------
    def run_epoch(self, epoch: int, progress: EpochProgress) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        steps = steps_per_epoch(self.train.n, cfg.batch_size)
        order = epoch_permutation(self.train.n, cfg.seed, epoch).to(self.device)
        self.model.train()
        partial = self._partial if self._partial is not None and self._partial["epoch"] == epoch else None
        if partial is not None:
            self._partial = None
        first = int(partial["step"]) if partial else 0
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        data_time = prior_time = prior_comm = 0.0
        if partial:  # continue the interrupted epoch's sums exactly where its checkpoint left them
            loss_sum.copy_(partial["loss_sum"])
            correct.copy_(partial["correct"])
            data_time, prior_time = float(partial["data_time_s"]), float(partial["epoch_time_s"])
            prior_comm = float(partial["comm_time_s"] or 0.0)
        progress.start_epoch(epoch + 1, steps)
        if first:
            progress.advance(first)
        self.comm.take()
        self._sync()
        self._paused = 0.0
        start = time.perf_counter()
        for step in range(first, steps):
            t = time.perf_counter()
            idx = order[shard_slice(step, cfg.batch_size, ctx.rank, ctx.world_size)]
            x, y = self.train.batch(idx)
            data_time += time.perf_counter() - t
            loss, logits = self._step(x, y)
            loss_sum += loss.detach().double() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            progress.advance()
            done = step + 1
            global_step = epoch * steps + done
            due = (self.out is not None and cfg.checkpoint_every > 0 and global_step % cfg.checkpoint_every == 0
                   and done < steps)
            if due or done == steps or global_step % self.poll_every == 0:
                self._poll(epoch, done, loss_sum)
            if due or self._stop_signum:
                self._sync()
                sums = {"loss_sum": loss_sum, "correct": correct, "data_time_s": data_time,
                        "epoch_time_s": prior_time + time.perf_counter() - start - self._paused,
                        "comm_time_s": prior_comm + self.comm.seconds}
                self._save_checkpoint(epoch, done, sums)
            if self._stop_signum:
                raise _Stopped(epoch, done)
        self._sync()
        epoch_time = prior_time + time.perf_counter() - start - self._paused
        comm_time = prior_comm + self.comm.take() if cfg.strategy == "ddp" else None

        seen = steps * cfg.batch_size
        total_loss, total_correct = self._all_sum(loss_sum, correct.double())
        t = time.perf_counter()
        test_loss, test_acc, preds = self.evaluate()
        eval_time = time.perf_counter() - t
        self.last_predictions = preds
        return epoch_record(
            epoch=epoch + 1,
            train_loss=total_loss / seen,
            train_accuracy=total_correct / seen,
            test_loss=test_loss,
            test_accuracy=test_acc,
            epoch_time_s=epoch_time,
            n_train_images=seen,
            n_test_evaluated=len(preds) if preds is not None else self.test.n,
            data_time_s=data_time,
            comm_time_s=comm_time,
            eval_time_s=eval_time,
        )

    def end_of_epoch(self, epoch: int) -> None:
        """After epoch `epoch`'s record is in `records`: checkpoint, then stop here if a signal came."""
        self._save_checkpoint(epoch + 1, 0, None)
        if epoch + 1 == self.cfg.epochs:
            return  # all training is done: finishing the outputs beats stopping
        self._poll(epoch + 1, 0, torch.zeros((), device=self.device, dtype=torch.float64))
        if self._stop_signum:
            raise _Stopped(epoch + 1, 0)

    # -- reliability ----------------------------------------------------------------------
    def enable_checkpoints(self, out: Path, stop: StopRequest | None) -> None:
        """Write checkpoints to `out` (rank 0) and stop cleanly when `stop` records a signal."""
        self.out, self.stop = out, stop
        self._code_version = code_version()
        if self.ctx.master:
            checkpoint.remove_stale_temp_files(out)

    def _poll(self, epoch: int, done: int, loss_sum: torch.Tensor) -> None:
        """All ranks agree whether to stop (the largest signal number any rank saw) and whether the loss
        is still finite; a divergence is an EngineError on every rank at the same step."""
        signum = float(self.stop.signum or 0) if self.stop is not None else 0.0
        flags = torch.stack([torch.full((), signum, dtype=torch.float64, device=self.device),
                             (~torch.isfinite(loss_sum)).double()])
        if self.ctx.distributed:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        signum, bad = flags.tolist()
        if bad:
            raise EngineError(self._diverged("the training loss became non-finite", epoch, done))
        self._stop_signum = int(signum)

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
        Nothing non-finite is ever written, so a divergence leaves the last good checkpoint in place.
        """
        if self.out is None:
            return
        t = time.perf_counter()
        self._sync()
        floats = [v for v in self.bare_model.state_dict().values() if v.is_floating_point()]
        mine = {
            "rng": checkpoint.rng_state(self.device.type == "cuda"),
            "loss_sum": sums["loss_sum"].detach().cpu().clone() if sums else None,
            "correct": sums["correct"].detach().cpu().clone() if sums else None,
            "finite": bool(torch.stack([torch.isfinite(v).all() for v in floats]).all()),
        }
        ranks: list[Any] = [mine]
        if self.ctx.distributed:
            ranks = [None] * self.ctx.world_size
            dist.all_gather_object(ranks, mine)
        if any(r["loss_sum"] is not None and not bool(torch.isfinite(r["loss_sum"])) for r in ranks):
            raise EngineError(self._diverged("the training loss became non-finite", epoch, step))
        if not all(r["finite"] for r in ranks):
            raise EngineError(self._diverged("the weights became non-finite", epoch, step))
        position = self._position(epoch, step)
        if self.ctx.master:
            self.reliability["checkpoints_written"] += 1
            predictions = self.last_predictions
            state = {
                "format": checkpoint.FORMAT,
                "kind": checkpoint.KIND,
                "config_identity": checkpoint.identity_json(self.cfg.identity()),
                "code_version": self._code_version,
                "epoch": epoch,
                "step": step,
                "steps_per_epoch": steps_per_epoch(self.train.n, self.cfg.batch_size),
                "world_size": self.ctx.world_size,
                "model": {k: v.detach().cpu() for k, v in self.bare_model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "records": [dict(r) for r in self.records],
                "partial": None if sums is None else {k: float(sums[k]) for k in
                                                      ("data_time_s", "epoch_time_s", "comm_time_s")},
                "ranks": [{k: r[k] for k in ("rng", "loss_sum", "correct")} for r in ranks],
                "predictions": None if predictions is None else torch.from_numpy(np.asarray(predictions)),
                "elastic_run_id": os.environ.get("TORCHELASTIC_RUN_ID"),
                "reliability": json.loads(json.dumps(self.reliability)),
            }
            checkpoint.save(self.out, state)
        self._last_good = position
        seconds = time.perf_counter() - t
        self._paused += seconds
        self.reliability["checkpoint_time_s"] += seconds

    def restore(self) -> bool:
        """Continue from OUT/checkpoint.pt when asked to (--resume, or torchrun restarted the group).

        Rank 0 reads and checks the file (weights_only) and hands it to every rank, so the
        other ranks need no access to OUT. Returns whether training resumed.
        """
        ckpt, error = None, None
        if self.ctx.master and self.out is not None:
            path = self.out / checkpoint.CHECKPOINT_FILE
            try:
                wanted = self.cfg.resume or checkpoint.elastic_auto_resume(self.out)
                if wanted and path.exists():
                    ckpt = checkpoint.load(path)
                    checkpoint.check_compatible(ckpt, self.cfg.identity(), self.ctx.world_size, path)
                elif wanted:
                    print(f"pvision: no checkpoint in {self.out}; starting from the beginning", file=sys.stderr,
                          flush=True)
            except PVisionError as exc:
                error = (type(exc).__name__, str(exc))
        if self.ctx.distributed:
            box: list[Any] = [(ckpt, error)]
            dist.broadcast_object_list(box, src=0)
            ckpt, error = box[0]
        if error is not None:
            cls = {c.__name__: c for c in PVisionError.__subclasses__()}.get(error[0], EngineError)
            raise cls(error[1])
        if ckpt is None:
            return False
        self._apply(ckpt)
        return True

    def _apply(self, ckpt: dict[str, Any]) -> None:
        epoch, step, steps = int(ckpt["epoch"]), int(ckpt["step"]), int(ckpt["steps_per_epoch"])
        self.bare_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt["scaler"] is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.records = [dict(r) for r in ckpt["records"]]
        self.start_epoch = epoch
        mine = ckpt["ranks"][self.ctx.rank]
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
        if self.ctx.master:
            where = ("after the last epoch (final outputs only)" if epoch >= self.cfg.epochs
                     else f"epoch {epoch + 1} step {step} of {steps}")
            code = ckpt.get("code_version")
            note = "" if code == self._code_version else f"; written by code {code}, this is {self._code_version}"
            why = f" after torchrun restart {restarts}" if restarts else ""
            print(f"pvision: resuming{why} from {where} ({self.out / checkpoint.CHECKPOINT_FILE}{note})",
                  file=sys.stderr, flush=True)
        # Last: nothing may draw a random number between here and the next training step.
        checkpoint.set_rng_state(mine["rng"])

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs may be overwritten now
        self.optimizer.zero_grad(set_to_none=True)
        if self.autocast is not None:
            with self.autocast():
                logits = self.forward(x)
                loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        else:
            logits = self.forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss, logits

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, np.ndarray | None]:
        """Every test image exactly once: contiguous shards without padding, gathered in order.

        Returns mean loss and accuracy (on every rank) and the predictions (on rank 0).
        """
        ctx = self.ctx
        bounds = np.linspace(0, self.test.n, ctx.world_size + 1).round().astype(int)
        lo, hi = int(bounds[ctx.rank]), int(bounds[ctx.rank + 1])
        model = self.bare_model  # the same weights on every rank; no collective inside forward
        if ctx.distributed:
            # DDP keeps rank 0's BatchNorm statistics (broadcast before each forward); after the last
            # step each rank holds its own update. Evaluate every shard with rank 0's, the saved model's.
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        model.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        preds = []
        for start in range(lo, hi, self.cfg.eval_batch_size):
            stop = min(start + self.cfg.eval_batch_size, hi)
            x, y = self.test.batch(slice(start, stop))
            if self.autocast is not None:
                with self.autocast():
                    logits = model(x)
            else:
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
            preds.append(logits.argmax(1))
        local = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=self.device)
        correct = (local == self.test.labels[lo:hi]).sum().double()
        total_loss, total_correct = self._all_sum(loss_sum, correct)
        if ctx.distributed:
            gathered: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(gathered, local.cpu().numpy())
            predictions = np.concatenate(gathered) if ctx.master else None
        else:
            predictions = local.cpu().numpy()
        return total_loss / self.test.n, total_correct / self.test.n, predictions


# --------------------------------------------------------------------------- outputs
def _tensorboard(out: Path) -> Any:
    """A SummaryWriter that cannot pull TensorFlow into this process.

    tensorboard's writer imports TensorFlow when it is installed; registering the
    `notf` marker module makes it use its own stub instead.
    """
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    _quiet_tensorboard_thread()
    try:
        return SummaryWriter(log_dir=str(out / "tb"))
    except Exception as exc:  # a full disk is one line; anything else is re-raised as it was
        error = tensorboard_disk_full(exc, out / "tb", 1, checkpoint.kept_note(out))
        if error is exc:
            raise
        raise error from None


TB_SCALARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_time_s", "images_per_s")


def _quiet_tensorboard_thread() -> None:
    """tensorboard writes event files in a thread of its own, which dies on an OSError (a full disk) with a
    traceback on stderr. The writer raises that error again at the next add_scalar/flush in the training
    thread (`_log_scalars` flushes every epoch), where it becomes one line; so the thread's report is dropped."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "_pvision_tensorboard", False):
        return

    def hook(args: Any) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
            return
        previous(args)

    hook._pvision_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _log_scalars(writer: Any, record: dict[str, Any], out: Path) -> None:
    """One epoch's scalars, flushed at once: a failure (a full disk) surfaces here, as a one-line error."""
    try:
        for key in TB_SCALARS:
            writer.add_scalar(key, record[key], record["epoch"])
        writer.flush()
    except Exception as exc:
        error = tensorboard_disk_full(exc, out / "tb", len(TB_SCALARS), checkpoint.kept_note(out))
        if error is exc:
            raise
        raise error from None


def _close_tensorboard(writer: Any, out: Path, quiet: bool = False) -> None:
    """Flush and close; `quiet` after another error, which is the one to report."""
    try:
        writer.close()
    except Exception as exc:
        if quiet:
            return
        error = tensorboard_disk_full(exc, out / "tb", len(TB_SCALARS), checkpoint.kept_note(out))
        if error is exc:
            raise
        raise error from None


def _save_model(model: nn.Module, out: Path, kept: str | None = None) -> str:
    import io

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    atomic_write_bytes(out / "model.pt", buffer.getvalue(), kept=kept)
    return "model.pt"


def _environment(trainer: Trainer) -> dict[str, Any]:
    env = host_environment()
    cuda = trainer.device.type == "cuda"
    env.update(
        {
            "framework": "torch",
            "torch_version": torch.__version__,
            "device": str(trainer.device),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "cuda_version": torch.version.cuda if cuda else None,
            "torch_threads": torch.get_num_threads(),
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "world_size": trainer.ctx.world_size,
        }
    )
    return env


# --------------------------------------------------------------------------- the run
#: Seconds a collective (and the spawn rendezvous) may wait for a peer before failing; torch's default.
TIMEOUT_ENV = envvars.DIST_TIMEOUT_S
#: Seconds the spawn parent lets the other workers finish on their own after one of them failed.
SPAWN_GRACE_S = 30.0


def _dist_timeout() -> timedelta:
    try:
        seconds = float(os.environ.get(TIMEOUT_ENV, "1800"))
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds; got {os.environ[TIMEOUT_ENV]!r}") from None
    return timedelta(seconds=max(1.0, seconds))


def _write_outputs(trainer: Trainer, out: Path, status: str) -> None:
    """Collective (peak memory of every rank); rank 0 writes result.json, and for a finished run the model
    and predictions. A partial (incomplete) result keeps the epochs done; the checkpoint holds the rest."""
    cfg, ctx = trainer.cfg, trainer.ctx
    rss = [peak_rss_mib()]
    if ctx.distributed:
        rss = [None] * ctx.world_size  # type: ignore[list-item]
        dist.all_gather_object(rss, peak_rss_mib())
    if not ctx.master:
        return
    epochs = trainer.records
    timing = dict(trainer.timing)
    timing["eval_total_s"] = sum(e["eval_time_s"] for e in epochs)
    timing["final_eval_s"] = epochs[-1]["eval_time_s"] if epochs else None
    timing["startup_s"] = None
    predictions = trainer.last_predictions
    kept = checkpoint.kept_note(out)  # what a full disk leaves: the checkpoint, removed only once all is written
    if status == "complete":
        artifacts = {"model": _save_model(trainer.bare_model, out, kept),
                     "predictions": save_predictions(predictions, out, kept=kept)}
    else:
        artifacts = {"checkpoint": checkpoint.CHECKPOINT_FILE}
    if cfg.tensorboard:
        artifacts["tensorboard"] = "tb"
    restarts = checkpoint.elastic_restart_count()
    reliability = dict(trainer.reliability, checkpoint_every=cfg.checkpoint_every, restarts=restarts)
    extra: dict[str, Any] = {"reliability": reliability}
    if "TORCHELASTIC_RUN_ID" in os.environ:
        extra["elastic"] = {"run_id": os.environ["TORCHELASTIC_RUN_ID"], "restart_count": restarts,
                            "max_restarts": int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)}
    result = build_result(
        cfg,
        environment=_environment(trainer),
        epochs=epochs,
        timing=timing,
        y_true=trainer.test.labels.cpu().numpy(),
        y_pred=predictions if predictions is not None else np.empty(0, dtype=np.int64),
        class_names=trainer.test.class_names,
        world_size=ctx.world_size,
        n_train=trainer.train.n,
        artifacts=artifacts,
        status=status,
        extra=extra,
        peak_rss_per_worker_mib=rss,
    )
    result["summary"]["restarts"] = restarts
    save_result(result, out, kept=kept)


def _train(cfg: RunConfig, ctx: Dist, stop: StopRequest | None = None) -> None:
    """Train (or resume) to the end; `stop` is the signal catcher a spawned worker installed first thing."""
    _set_threads(cfg, ctx)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    out = Path(cfg.out_dir or ".")
    with stop or StopRequest() as stop:
        trainer = Trainer(cfg, ctx)
        trainer.enable_checkpoints(out, stop)
        trainer.restore()
        writer = _tensorboard(out) if (ctx.master and cfg.tensorboard) else None
        try:
            with EpochProgress(cfg.epochs, enabled=ctx.master) as progress:
                for epoch in range(trainer.start_epoch, cfg.epochs):
                    record = trainer.run_epoch(epoch, progress)
                    if not np.isfinite(record["train_loss"]):
                        raise EngineError(trainer._diverged("the training loss became non-finite", epoch,
                                                            steps_per_epoch(trainer.train.n, cfg.batch_size)))
                    trainer.records.append(record)
                    progress.end_epoch(record)
                    if writer is not None:
                        _log_scalars(writer, record, out)
                    trainer.end_of_epoch(epoch)
            if writer is not None:
                _close_tensorboard(writer, out)
        except _Stopped as stopped:
            _write_outputs(trainer, out, "incomplete")
            if ctx.distributed:
                dist.barrier()  # nobody leaves (and gets the group torn down) before rank 0 has written
            name = signal_name(trainer._stop_signum)
            where = (f"after epoch {stopped.epoch} of {cfg.epochs}" if stopped.step == 0 else
                     f"at epoch {stopped.epoch + 1} step {stopped.step}")
            raise RunInterrupted(f"stopped by {name} {where}; checkpoint and partial result.json kept in {out}; "
                                 "continue with --resume", exit_code=128 + trainer._stop_signum) from None
        finally:
            if writer is not None:
                _close_tensorboard(writer, out, quiet=True)  # a no-op after the close above
        if trainer.final_eval_needed:  # resumed after the last epoch from a checkpoint without predictions
            trainer.last_predictions = trainer.evaluate()[2]  # (collective: the flag is the same on every rank)
        _write_outputs(trainer, out, "complete")
        if ctx.master:
            checkpoint.remove(out)  # the run is finished: model.pt holds its weights


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _loopback_store(rank: int, world: int, port: int) -> dist.TCPStore:
    """The spawn rendezvous on 127.0.0.1 only: rank 0 listens on a loopback socket it made itself (a
    TCPStore given just a port would listen on every interface)."""
    import socket

    timeout = _dist_timeout()
    if rank != 0:
        return dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=timeout)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise EngineError(f"port {port} on 127.0.0.1 was taken before the DDP rendezvous could use it; "
                          "run again") from None
    sock.listen(128)
    return dist.TCPStore("127.0.0.1", port, world, is_master=True, timeout=timeout, wait_for_workers=False,
                         master_listen_fd=sock.detach())


def _spawned_worker(rank: int, cfg: RunConfig, port: int) -> None:
    """Body of one `torch.multiprocessing.spawn` worker: join the group, train, leave."""
    # First thing: a SIGINT now would otherwise be a KeyboardInterrupt that spawn treats as a clean exit.
    stop = StopRequest().install()
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(cfg.workers),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    if "GLOO_SOCKET_IFNAME" not in os.environ and os.path.exists("/sys/class/net/lo"):
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's pairs on loopback too (else: the hostname's address)
    _run_distributed(cfg, store=_loopback_store(rank, cfg.workers, port), stop=stop)


def _restarted_torchrun_store() -> dist.Store | None:
    """After a torchrun restart: torchrun's shared store, under a prefix of this attempt.

    torchrun keeps one TCPStore for all rendezvous rounds and hands it to the workers without a
    per-attempt prefix (torch 2.13), so gloo's connection keys of the dead attempt are still there
    and a restarted rank may dial a peer that no longer exists ("Connection refused"). A first
    attempt, or a store torchrun makes per round (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1), needs nothing.
    """
    restart = checkpoint.elastic_restart_count()
    if restart <= 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=_dist_timeout())
    return dist.PrefixStore(f"parallel_vision/restart_{restart}", store)


def _run_distributed(cfg: RunConfig, store: dist.Store | None = None, stop: StopRequest | None = None) -> None:
    ctx = Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))
    store = store or _restarted_torchrun_store()
    backend = "nccl" if _cuda_wanted(cfg) else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world_size, store=store,
                            timeout=_dist_timeout())
    try:
        _train(cfg, ctx, stop)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _worker_error(trace: str) -> PVisionError:
    """The worker's own error class and message when it was an expected failure, else an EngineError."""
    last = trace.strip().splitlines()[-1] if trace.strip() else "unknown error"
    name, _, message = last.partition(": ")
    cls = {c.__name__: c for c in PVisionError.__subclasses__()}.get(name.rsplit(".", 1)[-1])
    if cls is RunInterrupted and name.startswith("parallel_vision.errors."):
        return RunInterrupted(message, exit_code=exit_code_in(message))
    if cls is not None and name.startswith("parallel_vision.errors."):
        return cls(message)
    return EngineError(f"a DDP worker failed: {last}")


def train_and_evaluate(cfg: RunConfig) -> None:
    """Run `cfg` to completion in this process (and its spawned workers); rank 0 writes the result."""
    check_devices(cfg)
    if cfg.strategy != "ddp":
        _train(cfg, Dist())
        return
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun made us: we are one worker
        world = int(os.environ["WORLD_SIZE"])
        if world != cfg.workers:
            raise ConfigError(f"--workers {cfg.workers} but torchrun started WORLD_SIZE={world} processes")
        _run_distributed(cfg)
        return
    import logging

    import torch.multiprocessing as mp

    from parallel_vision.launch.ports import free_port

    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # we report the failure ourselves

    workers: list[Any] = []
    # SIGINT/SIGTERM to this process go on to every worker; they agree on a step, checkpoint and stop.
    with StopRequest(forward_to=lambda: [p.pid for p in workers if p.is_alive()]) as stop:
        try:
            port = cfg.master_port or free_port()  # a user's port was checked free by the launcher
            context = mp.start_processes(_spawned_worker, args=(cfg, port), nprocs=cfg.workers, join=False,
                                         start_method="spawn")
            workers.extend(context.processes)
            while not context.join(grace_period=SPAWN_GRACE_S):
                pass
        except mp.ProcessRaisedException as exc:
            raise _worker_error(str(exc)) from None
        except mp.ProcessExitedException as exc:
            if stop.requested:
                raise RunInterrupted(f"stopped by {stop.name}: a DDP worker exited before saving ({exc})",
                                     exit_code=stop.exit_code) from None
            raise EngineError(f"a DDP worker died: {exc}") from None
