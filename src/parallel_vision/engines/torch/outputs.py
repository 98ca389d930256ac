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
from torch import nn

from parallel_vision.atomic import atomic_write_bytes
from parallel_vision.engines.common import peak_rss_mib
from parallel_vision.engines.outputs import FinishedRun, write_run
from parallel_vision.engines.torch import build, checkpoint
from parallel_vision.engines.torch.comm import steady_steps
from parallel_vision.provenance import host_environment

if TYPE_CHECKING:
    from parallel_vision.engines.torch.loop import Trainer

MODEL_FILE = "model.pt"


# --------------------------------------------------------------------------- the result
def save_model(model: nn.Module, out: Path, kept: str | None = None) -> str:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
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
        }
    )
    return env


def write_outputs(trainer: Trainer, out: Path, status: str) -> None:
    """Collective (peak memory of every rank); rank 0 writes result.json, and for a complete run the model
    and predictions. An incomplete run (stopped by a signal) keeps the epochs done; the checkpoint the rest."""
    cfg, records = trainer.cfg, trainer.records
    rss = trainer.dist.all_gather_object(peak_rss_mib())
    per_rank = trainer.per_rank_summary()  # collective too: every rank's step times (DDP on the CPU)
    if not trainer.dist.master:
        return
    kept = checkpoint.kept_note(out)  # what a full disk leaves: the checkpoint, removed only once all is written
    artifacts = ({"model": save_model(trainer.bare_model, out, kept)} if status == "complete"
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
        summary_extra=dict(lever_summary(trainer), **({"per_rank": per_rank} if per_rank else {})),
    ))


def lever_summary(trainer: Trainer) -> dict[str, Any]:
    """comm_bytes_per_step: the median over the run's optimiser steps of the bytes one worker handed to the
    gradient all-reduce, PowerSGD's uncompressed first steps left out (comm.steady_steps). DDP only."""
    if not trainer.step_bytes:
        return {}
    return {"comm_bytes_per_step": float(np.median(steady_steps(trainer.cfg.grad_compression, trainer.step_bytes)))}
