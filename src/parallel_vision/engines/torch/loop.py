"""The training loop: a step, an epoch, the evaluation, written once for `single`, `dp` and `ddp`.

The strategy only changes how the model is wrapped (`build.wrap`); everything the loop asks of the
other ranks goes through `Dist`, whose collectives are no-ops at world size 1. Checkpoints and the
state behind them are `resume.Resumable`'s.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from parallel_vision.config import RunConfig, reached_target
from parallel_vision.engines.common import EpochProgress, epoch_record, steps_per_epoch
from parallel_vision.engines.torch import build, checkpoint, sharding, watchdog
from parallel_vision.engines.torch.collectives import CollectiveCounter, install
from parallel_vision.engines.torch.comm import CommTimer
from parallel_vision.engines.torch.data import epoch_permutation, eval_shard, load_data, shard_slice
from parallel_vision.engines.torch.devices import choose_device, synchronize
from parallel_vision.engines.torch.dist import Dist
from parallel_vision.engines.torch.footprint import StepProbe, state_bytes
from parallel_vision.engines.torch.resume import Resumable
from parallel_vision.engines.torch.steptimes import StepTimer, slow_down_for_tests
from parallel_vision.errors import EngineError
from parallel_vision.results.stragglers import rank_summary


class Stopped(Exception):
    """Every rank agreed to stop at (epoch, step) after a signal; the checkpoint is written."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"stopped at epoch {epoch} step {step}")
        self.epoch, self.step = epoch, step


class Trainer(Resumable):
    """One training loop for every strategy; the strategy only decides how `model` is wrapped."""

    def __init__(self, cfg: RunConfig, dist: Dist) -> None:
        self.cfg, self.dist = cfg, dist
        self.device = choose_device(cfg, dist.local_rank)
        # Which part of each batch this rank takes: its own under data parallelism; the whole batch where the model,
        # not the data, is split (StrategySpec.same_batch: tensor, pipeline). build.stepper says how sums count.
        self.data_rank = 0 if cfg.strategy_spec.same_batch else dist.rank
        self.timing: dict[str, float | None] = {}

        t = time.perf_counter()
        self.train = load_data(cfg, "train", self.device)
        self.test = load_data(cfg, "test", self.device)
        self.timing["data_load_s"] = time.perf_counter() - t

        t = time.perf_counter()
        model = build.build_model(cfg, self.train.image_shape, len(self.train.class_names), self.device)
        self.comm = CommTimer()
        self.model = build.wrap(model, cfg, self.device, self.comm)
        self.optimizer = build.optimizer(cfg, self.model, self.device)
        self.scheduler = build.scheduler(cfg, self.optimizer, self.train.n)
        torch.manual_seed(cfg.seed + self.data_rank)  # dropout differs by data rank, as with independent devices
        self.timing["model_build_s"] = time.perf_counter() - t
        self.autocast = build.autocast(cfg, self.device)
        self.scaler = build.grad_scaler(cfg, self.device)
        self.stepper = build.stepper(self)  # how a step is taken and the test set evaluated (build.stepper)
        self.cuda_graphs = cfg.compile and cfg.compile_mode == "reduce-overhead"
        self.forward = torch.compile(self.model, mode=cfg.compile_mode) if cfg.compile else self.model

        self.records: list[dict[str, Any]] = []
        self.step_bytes: list[int] = []  # bytes this worker handed to all-reduce, per optimiser step (DDP)
        # Bytes per collective kind of each optimiser step (collectives.py), and what this worker holds
        # (footprint.py: measured in the first step this process takes).
        self.collectives = install(CollectiveCounter())  # zero bytes at one worker
        self.step_collectives: list[dict[str, int]] = []
        self.footprint: dict[str, Any] | None = None
        # Each step's wall time and wait at the collective on this rank (steptimes.py): DDP on the CPU, uncompiled.
        timed = self.comm.measured and self.device.type == "cpu" and not cfg.compile
        self.step_timer = StepTimer(self.bare_model, self.optimizer) if timed else None
        slow_down_for_tests(self.bare_model, dist.rank)
        self.start_epoch = 0
        self.last_predictions: np.ndarray | None = None  # rank 0's; None on the other ranks
        self.final_eval_needed = False
        self._partial: dict[str, Any] | None = None  # where the resumed epoch stood, and its sums on this rank
        self._stop_signum = 0
        self._paused = 0.0
        self._init_checkpoints()
        # The lost-peer watchdog of a DDP group (None otherwise): each step, evaluation and checkpoint reports in.
        self.watchdog = watchdog.current()
        if self.watchdog is not None:
            self.watchdog.last_checkpoint = self._last_checkpoint
        # How often all ranks agree on "stop?" and "finite?": every step on the CPU (a tiny gloo
        # all-reduce), every 16 steps on CUDA (each check is a host sync).
        self.poll_every = 1 if self.device.type == "cpu" else 16
        self.warmed_up = False
        if cfg.compile or self.device.type == "cuda":
            self._warm_up()

    def _warm_up(self) -> None:
        """Compile and autotune outside the clock (airbench's habit), then restore the exact state.

        A few real training steps on a real batch trigger torch.compile, CUDA-graph
        recording, cuDNN's algorithm search and the optimiser's first-step set-up; the
        state is then put back, so the timed run is exactly the run it would have been.
        """
        self.warmed_up = True  # first: the restore below must not ask for another warm-up
        state = self.state_dict()
        # DataParallel's replicas draw their dropout from every GPU's generator, not just this one's.
        replicas = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        t = time.perf_counter()
        per = self.cfg.batch_size // self.stepper.sampler[1]  # this rank's share of a step (pipeline: all of it)
        x, y = self.train.batch(slice(0, per))
        self.model.train()
        for _ in range(3):
            loss, logits = self._step(x, y)
            (loss.detach().double() * per).item()
            self._correct(logits, y).item()
        synchronize(self.device)
        self.timing["compile_s"] = time.perf_counter() - t
        self.load_state_dict(state)
        if replicas is not None:
            torch.cuda.set_rng_state_all(replicas)
        self.comm.take()

    # -- progress, for the lost-peer watchdog ---------------------------------------------
    def _begin(self, what: str, kind: str) -> None:
        if self.watchdog is not None:
            self.watchdog.begin(what, kind)

    def _done(self, kind: str) -> None:
        if self.watchdog is not None:
            self.watchdog.done(kind)

    def _last_checkpoint(self) -> str:
        if self.out is None or self._last_good is None:
            return "none had been written yet"
        where = f"{self.out / checkpoint.CHECKPOINT_FILE} ({self._last_good})"
        # Only rank 0 writes checkpoints: on another host the path names rank 0's folder, not this one's.
        return where if self.dist.master else f"{where} on rank 0's host (rank 0 writes every checkpoint)"

    # -- one step -------------------------------------------------------------------------
    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimiser step, as the strategy's step object takes it: (loss, logits; None where this rank has
        none, as a pipeline stage before the last)."""
        return self.stepper.step(x, y)

    @staticmethod
    def _correct(logits: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        if logits is None:
            return torch.zeros((), dtype=torch.int64, device=y.device)
        return (logits.detach().argmax(1) == y).sum()

    def _local_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs may be overwritten now
        self.optimizer.zero_grad(set_to_none=True)
        k = self.cfg.grad_accum
        if k == 1:
            with self.autocast():
                logits = self.forward(x)
                loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
            self.scaler.scale(loss).backward()  # fp32/bf16: a disabled scaler, loss.backward() and step() as they are
        else:
            loss, logits = self._accumulate(x, y, k)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss, logits

    def _measured_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`_step`, with its collectives counted; the first one this process takes also measures what the
        worker holds (parameters, gradients, optimizer state, gathered parameters, activations)."""
        probe = None if self.footprint is not None or self.cfg.compile else StepProbe(
            self.model, watch_gathered=self.cfg.strategy == "fsdp")
        with self.collectives.counting(), probe.watching() if probe is not None else contextlib.nullcontext():
            loss, logits = self._step(x, y)
        self.step_collectives.append(self.collectives.take())
        if probe is not None:
            self.footprint = {"state": state_bytes(self.model, self.optimizer),
                              "unsharded_peak": probe.unsharded_peak, "activations": probe.activation_bytes}
        return loss, logits

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient accumulation: k micro-batches of this worker's batch, each loss divided by k so the summed
        gradient is the whole batch's mean; under DDP the first k − 1 backward passes skip the all-reduce
        (`no_sync`), the last one reduces the accumulated gradient once."""
        micro = x.shape[0] // k
        losses, outputs = [], []
        no_sync = getattr(self.model, "no_sync", None)
        for i in range(k):
            part = slice(i * micro, (i + 1) * micro)
            context = no_sync() if no_sync is not None and i < k - 1 else contextlib.nullcontext()
            with context:
                with self.autocast():
                    logits = self.forward(x[part])
                    loss = F.cross_entropy(logits, y[part], label_smoothing=self.cfg.label_smoothing)
                self.scaler.scale(loss / k).backward()
            losses.append(loss.detach())
            outputs.append(logits.detach())
        return torch.stack(losses).mean(), torch.cat(outputs)

    # -- epochs ---------------------------------------------------------------------------
    def fit(self, progress: EpochProgress, on_epoch: Callable[[dict[str, Any]], None] = lambda record: None) -> None:
        """Train from `start_epoch` to the end; `on_epoch(record)` after each epoch, before its checkpoint."""
        for epoch in range(self.start_epoch, self.cfg.epochs):
            record = self.run_epoch(epoch, progress)
            warn = epoch == self.start_epoch
            if not np.isfinite(record["train_loss"]):
                raise EngineError(self._diverged("the training loss became non-finite", epoch,
                                                 steps_per_epoch(self.train.n, self.cfg.batch_size)))
            self.records.append(record)
            progress.end_epoch(record)
            on_epoch(record)
            self.end_of_epoch(epoch)
            if warn and self.watchdog is not None and self.dist.master:
                line = watchdog.timeout_warning(self.watchdog)  # the timeout against the first epoch measured
                if line:
                    print(line, file=sys.stderr, flush=True)
            if reached_target(self.cfg, record["test_accuracy"]):  # the same accuracy on every rank: all stop
                break

    def run_epoch(self, epoch: int, progress: EpochProgress) -> dict[str, Any]:
        cfg = self.cfg
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
        self.comm.take_bytes()
        first_step_record = len(self.step_bytes)
        synchronize(self.device)
        self._paused = 0.0
        start = time.perf_counter()
        for step in range(first, steps):
            self._begin(f"the all-reduce of step {step + 1} of epoch {epoch + 1}", "step")
            t = time.perf_counter()
            idx = order[shard_slice(step, cfg.batch_size, *self.stepper.sampler)]
            x, y = self.train.batch(idx, key=(epoch, step, self.stepper.sampler[0]))
            batch_ready = time.perf_counter()
            data_time += batch_ready - t
            if self.step_timer is not None:
                self.step_timer.begin()
            loss, logits = self._measured_step(x, y)
            if self.step_timer is not None:
                self.step_timer.end(t, batch_ready)
            if self.comm.measured:
                self.step_bytes.append(self.comm.take_bytes())
            loss_sum += loss.detach().double() * y.shape[0]
            correct += self._correct(logits, y)
            progress.advance()
            done = step + 1
            global_step = epoch * steps + done
            due = (self.out is not None and cfg.checkpoint_every > 0 and global_step % cfg.checkpoint_every == 0
                   and done < steps)
            if due or done == steps or global_step % self.poll_every == 0:
                self._poll(epoch, done, loss_sum)
            self._done("step")
            if due or self._stop_signum:
                synchronize(self.device)
                sums = {"loss_sum": loss_sum, "correct": correct, "data_time_s": data_time,
                        "epoch_time_s": prior_time + time.perf_counter() - start - self._paused,
                        "comm_time_s": prior_comm + self.comm.seconds}
                self._save_checkpoint(epoch, done, sums)
            if self._stop_signum:
                raise Stopped(epoch, done)
        synchronize(self.device)
        epoch_time = prior_time + time.perf_counter() - start - self._paused
        comm_time = prior_comm + self.comm.take() if self.comm.measured else None

        seen = steps * cfg.batch_size
        self._begin(f"the evaluation after epoch {epoch + 1}", "evaluation")
        total_loss, total_correct = self._all_sum(loss_sum, correct.double())
        t = time.perf_counter()
        test_loss, test_acc, preds = self.evaluate()
        eval_time = time.perf_counter() - t
        self._done("evaluation")
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
            comm_bytes=sum(self.step_bytes[first_step_record:]) if self.comm.measured else None,
        )

    def end_of_epoch(self, epoch: int) -> None:
        """After epoch `epoch`'s record is in `records`: checkpoint, then stop here if a signal came."""
        self._save_checkpoint(epoch + 1, 0, None)
        if epoch + 1 == self.cfg.epochs:
            return  # all training is done: finishing the outputs beats stopping
        self._poll(epoch + 1, 0, torch.zeros((), device=self.device, dtype=torch.float64))
        if self._stop_signum:
            raise Stopped(epoch + 1, 0)

    def _eval_batches(self, shard: slice) -> list[slice]:
        size = self.cfg.eval_batch_size
        if not sharding.forward_is_collective(self.cfg):
            return [slice(a, min(a + size, shard.stop)) for a in range(shard.start, shard.stop, size)]
        largest = -(-self.test.n // self.cfg.data_replicas)
        count = max(1, -(-largest // size))
        bounds = np.linspace(shard.start, shard.stop, count + 1).round().astype(int)
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    # -- where a step waits for the other ranks (summary.per_rank) ---------------------------
    def per_rank_summary(self) -> list[dict[str, Any]] | None:
        """Collective: every rank's step-time summary (results.stragglers.rank_summary), in rank order, on every
        rank; None where steps are not timed (not DDP, not on the CPU, or compiled). One small object per rank, once."""
        if self.step_timer is None:
            return None
        return self.dist.all_gather_object(rank_summary(self.dist.rank, socket.gethostname(), self.step_timer.steps))

    # -- agreement between ranks ----------------------------------------------------------
    def _all_sum(self, *values: torch.Tensor) -> list[float]:
        """Per-image sums over the group, each image counted once: the step object's `copies` ranks hold each
        (tensor parallelism: every rank; exact, a sum of equal doubles divided)."""
        stacked = torch.stack([v.detach().double().to(self.device) for v in values])
        return (self.dist.all_sum(stacked) / self.stepper.copies).cpu().tolist()

    def _poll(self, epoch: int, done: int, loss_sum: torch.Tensor) -> None:
        """All ranks agree whether to stop (the largest signal number any rank saw) and whether the loss
        is still finite; a divergence is an EngineError on every rank at the same step."""
        signum = float(self.stop.signum or 0) if self.stop is not None else 0.0
        flags = torch.stack([torch.full((), signum, dtype=torch.float64, device=self.device),
                             (~torch.isfinite(loss_sum)).double()])
        signum, bad = self.dist.max(flags).tolist()
        if bad:
            raise EngineError(self._diverged("the training loss became non-finite", epoch, done))
        self._stop_signum = int(signum)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self) -> tuple[float, float, np.ndarray | None]:
        """Every test image exactly once, as the strategy's step object evaluates: (loss, accuracy, predictions on
        rank 0)."""
        return self.stepper.evaluate()

    @torch.no_grad()
    def _evaluate_shards(self) -> tuple[float, float, np.ndarray | None]:
        """Every test image exactly once: contiguous shards without padding, gathered in order.

        Returns mean loss and accuracy (on every rank) and the predictions (on rank 0).
        """
        shard = eval_shard(self.test.n, self.data_rank, self.cfg.data_replicas)
        # The same weights on every rank. Under fsdp each forward all-gathers (under tensor it all-reduces, and
        # every rank's shard is the whole test set), so every rank runs the same number of batches (its shard in
        # as many near-equal parts as the largest shard needs); else a plain loop.
        batches = self._eval_batches(shard)
        model = self.bare_model
        # DDP keeps rank 0's BatchNorm statistics (broadcast before each forward); after the last
        # step each rank holds its own update. Evaluate every shard with rank 0's, the saved model's.
        for buffer in model.buffers() if not self.cfg.strategy_spec.same_batch else ():  # tensor: equal already
            self.dist.broadcast(buffer)
        model.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        preds = []
        for part in batches:
            x, y = self.test.batch(part)
            with self.autocast():
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
            preds.append(logits.argmax(1))
        local = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=self.device)
        correct = (local == self.test.labels[shard]).sum().double()
        total_loss, total_correct = self._all_sum(loss_sum, correct)
        gathered = self.dist.all_gather_object(local.cpu().numpy())
        predictions = np.concatenate(gathered[:self.cfg.data_replicas]) if self.dist.master else None
        return total_loss / self.test.n, total_correct / self.test.n, predictions

