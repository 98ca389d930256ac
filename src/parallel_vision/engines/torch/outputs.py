"""What a PyTorch run leaves in OUT besides its checkpoint and TensorBoard scalars (engines.tbevents, the
writer of every engine): model.pt and the result.

The result (complete, or stopped by a signal) is written by `engines.outputs.write_run`, the one
result-writing path of every engine; this module only adds what is torch's: the model file, the
environment, every rank's peak memory and step times (summary.per_rank), torchrun's restarts.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from parallel_vision import allocator
from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.engines.common import peak_rss_mib
from parallel_vision.engines.outputs import FinishedRun, write_run
from parallel_vision.engines.torch import build, checkpoint, pipeline_step, sharding
from parallel_vision.engines.torch.collectives import per_step
from parallel_vision.engines.torch.comm import steady_steps
from parallel_vision.engines.torch.footprint import summarise
from parallel_vision.provenance import host_environment

if TYPE_CHECKING:
    from parallel_vision.engines.torch.loop import Trainer

MODEL_FILE = "model.pt"
#: summary.same_batch of a tensor-parallel run: what its data loading and images/s mean.
SAME_BATCH = ("every rank takes the whole global batch (the model, not the data, is split): each image is loaded "
              "on every rank but trained on once by the group, so images/s counts it once and per_worker_batch is "
              "the global batch")


# --------------------------------------------------------------------------- the result
def save_model(state: dict[str, torch.Tensor], out: Path, kept: str | None = None) -> str:
    """OUT/model.pt: the plain single-model state dict, whatever the strategy (sharding.full_model_state)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    atomic_write_bytes(out / MODEL_FILE, buffer.getvalue(), kept=kept)
    return MODEL_FILE


def environment(trainer: Trainer) -> dict[str, Any]:
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
            "backend": trainer.dist.backend,
            "world_size": trainer.dist.world_size,
            "fused_bn_blocks": build.fused_bn_blocks(trainer.bare_model),
            "allocator": allocator.running(),
        }
    )
    return env


def write_outputs(trainer: Trainer, out: Path, status: str) -> None:
    """Collective (peak memory of every rank); rank 0 writes result.json, and for a complete run the model
    and predictions. An incomplete run (stopped by a signal) keeps the epochs done; the checkpoint the rest."""
    cfg, records = trainer.cfg, trainer.records
    rss = trainer.dist.all_gather_object(peak_rss_mib())
    allocator.release_free_memory()  # training is over: what follows must not grow on top of its peak
    per_rank = trainer.per_rank_summary()  # collective too: every rank's step times (DDP on the CPU)
    held = sharding_summary(trainer)  # collective: what every rank held and sent
    # The plain model's weights: gathered from every rank's shards under fsdp and tensor (a collective), else
    # rank 0's own.
    weights = (sharding.full_model_state(cfg, trainer.model)
               if status == "complete" and (trainer.dist.master or sharding.state_is_collective(cfg)) else None)
    if not trainer.dist.master:
        return
    kept = checkpoint.kept_note(out)  # what a full disk leaves: the checkpoint, removed only once all is written
    artifacts = ({"model": save_model(weights, out, kept)} if weights is not None
                 else {"checkpoint": checkpoint.CHECKPOINT_FILE})
    restarts = checkpoint.elastic_restart_count()
    extra: dict[str, Any] = {"reliability": dict(trainer.reliability, checkpoint_every=cfg.checkpoint_every,
                                                 restarts=restarts)}
    if "TORCHELASTIC_RUN_ID" in os.environ:
        extra["elastic"] = {"run_id": os.environ["TORCHELASTIC_RUN_ID"], "restart_count": restarts,
                            "max_restarts": int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)}
    write_run(FinishedRun(
        cfg=cfg, out=out, status=status, records=records,
        timing=dict(trainer.timing, final_eval_s=records[-1]["eval_time_s"] if records else None, startup_s=None),
        environment=environment(trainer), labels=trainer.test.labels.cpu().numpy(),
        predictions=trainer.last_predictions, class_names=trainer.test.class_names,
        world_size=trainer.dist.world_size, n_train=trainer.train.n, artifacts=artifacts, extra=extra,
        peak_rss_per_worker_mib=rss, kept=kept, restarts=restarts,
        summary_extra=dict(lever_summary(trainer), **held, **({"per_rank": per_rank} if per_rank else {})),
    ))


def lever_summary(trainer: Trainer) -> dict[str, Any]:
    """comm_bytes_per_step: the median over the run's optimiser steps of the bytes one worker handed to the
    gradient all-reduce, PowerSGD's uncompressed first steps left out (comm.steady_steps). DDP only."""
    if not trainer.step_bytes:
        return {}
    return {"comm_bytes_per_step": float(np.median(steady_steps(trainer.cfg.grad_compression, trainer.step_bytes)))}


def sharding_summary(trainer: Trainer) -> dict[str, Any]:
    """Collective. What each worker held (summary.state_bytes_per_worker, activation_bytes_per_worker; measured
    in the first step this process took) and handed to each collective kind per step (summary.comm_bytes_by_op);
    zero1's partition of the optimizer state. Empty for a process that took no training step (a resume of a
    finished run)."""
    footprints = trainer.dist.all_gather_object(trainer.footprint)
    by_op = trainer.dist.all_gather_object(per_step(trainer.step_collectives) if trainer.step_collectives else None)
    summary: dict[str, Any] = {"n_parameters": sum(p.numel() for p in trainer.model.parameters())}
    if all(f is not None for f in footprints):
        peaks = [f["unsharded_peak"] for f in footprints]
        summary["state_bytes_per_worker"] = summarise([f["state"] for f in footprints],
                                                      max(peaks) if None not in peaks else None)
        summary["activation_bytes_per_worker"] = max(int(f["activations"]) for f in footprints)
    if all(b is not None for b in by_op):
        summary["comm_bytes_by_op"] = {k: max(b[k] for b in by_op) for k in by_op[0]}
    if trainer.cfg.strategy == "pipeline":  # the split, the schedule, each stage's times and bubble
        summary.update(pipeline_step.summary(trainer))
    if trainer.cfg.strategy_spec.same_batch:
        summary["same_batch"] = SAME_BATCH
    if trainer.cfg.strategy == "zero1":
        summary["zero1_partition"] = trainer.dist.all_gather_object(sharding.zero1_share(trainer.optimizer))
    return summary
