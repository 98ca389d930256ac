"""A run's model.pt in the plain (unfused) zoo model, on preprocessed images: `pvision predict`'s torch child
(`python -m parallel_vision.engines.torch.predict RUN INPUTS.npy LOGITS.npy`; engines/predicting.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from parallel_vision.config import RunConfig
from parallel_vision.engines.predicting import child_main, could_not_load
from parallel_vision.engines.workload import workload
from parallel_vision.models.torch_zoo import build_torch_model


def load_model(run: Path, cfg: RunConfig) -> torch.nn.Module:
    """The run's model.pt in the plain zoo model, in eval mode (`pvision predict` and `pvision explain`)."""
    shape = workload(cfg)
    model = build_torch_model(cfg.model, shape.channels, shape.image_size, shape.classes, 0.0)
    try:
        model.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is one line
        raise could_not_load(run / "model.pt", exc) from None
    return model.eval()


def logits(run: Path, cfg: RunConfig, x: np.ndarray) -> np.ndarray:
    """float32 logits of NHWC `x`, in batches of the run's eval batch size (as its engine evaluated)."""
    model = load_model(run, cfg)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    batch = cfg.eval_batch_size
    with torch.no_grad():
        parts = [model(torch.from_numpy(nchw[i:i + batch])).numpy() for i in range(0, len(nchw), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, workload(cfg).classes), np.float32)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv, logits))
