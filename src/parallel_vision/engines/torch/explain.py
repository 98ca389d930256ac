"""Attribution maps of a run's model.pt through Captum, and their deletion/insertion curves: `pvision explain`'s
torch child (`python -m parallel_vision.engines.torch.explain RUN FOLDER`; explain/run.py writes FOLDER).

FOLDER holds inputs.npy (normalised NHWC float32), labels.npy (the class each map explains) and request.json
(methods, seed, steps, sanity images, the normalised black pixel); this child writes maps.npz and timings.json
there. The model is the plain (unfused) zoo model in eval mode, as `pvision predict` loads it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from parallel_vision.config import RunConfig
from parallel_vision.engines.predicting import explain_main
from parallel_vision.engines.torch.predict import load_model
from parallel_vision.engines.workload import workload
from parallel_vision.errors import ConfigError
from parallel_vision.explain import child
from parallel_vision.explain.attribution import (  # the settings the Keras side uses too
    IG_STEPS,
    OCCLUSION_PATCH,
    OCCLUSION_STRIDE,
    SMOOTHGRAD_NOISE,
    SMOOTHGRAD_SAMPLES,
)
from parallel_vision.models.torch_zoo import build_torch_model


@dataclass(frozen=True)
class Setup:
    """What every method needs besides the model and the images."""

    cfg: RunConfig
    black: torch.Tensor  # (1, C, 1, 1): a black pixel, normalised (the baseline of IG and occlusion)
    input_range: float  # white minus black, normalised (the smallest over channels): SmoothGrad's noise scale
    seed: int


def gradcam_layer(model: nn.Module, model_name: str) -> nn.Module:
    """paper_cnn: the ReLU of its last conv block (14×14 on MNIST); resnet18: `layer3` (`layer4` is 4×4 on 28×28)."""
    if model_name == "paper_cnn":
        return model.features[-2]
    if model_name == "resnet18":
        return model.layer3
    raise ConfigError(f"gradcam needs a convolutional model; {model_name} has no conv layer")


def attribute(method: str, model: nn.Module, setup: Setup, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, H, W) attributions of class `y` for NCHW `x` (channels summed)."""
    black = setup.black
    if method == "saliency":
        a = Saliency(model).attribute(x, target=y, abs=True)
    elif method == "gradcam":
        cam = LayerGradCam(model, gradcam_layer(model, setup.cfg.model)).attribute(x, target=y, relu_attributions=True)
        a = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    elif method == "ig":
        a = IntegratedGradients(model).attribute(x, baselines=black.expand_as(x), target=y, n_steps=IG_STEPS,
                                                 internal_batch_size=len(x) * 8)
    elif method == "smoothgrad":
        noise = SMOOTHGRAD_NOISE * setup.input_range
        a = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=SMOOTHGRAD_SAMPLES,
                                                   nt_samples_batch_size=len(x) * 4, stdevs=noise, target=y)
    elif method == "occlusion":
        c = x.shape[1]
        a = Occlusion(model).attribute(x, target=y, baselines=black,
                                       sliding_window_shapes=(c, OCCLUSION_PATCH, OCCLUSION_PATCH),
                                       strides=(c, OCCLUSION_STRIDE, OCCLUSION_STRIDE), perturbations_per_eval=64)
    else:
        raise ConfigError(f"unknown method {method!r}")
    return a.detach().sum(dim=1)


def randomised(cfg: RunConfig, seed: int) -> nn.Module:
    """The same architecture with its initial (untrained) weights: the sanity check's model."""
    shape = workload(cfg)
    torch.manual_seed(seed)
    return build_torch_model(cfg.model, shape.channels, shape.image_size, shape.classes, 0.0).eval()


@dataclass(frozen=True)
class CaptumExplainer:
    """Captum's methods on a torch model, for the shared orchestration (explain/child.py)."""

    model: nn.Module
    setup: Setup

    def logits(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()

    def attribute(self, method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_()
        return attribute(method, self.model, self.setup, nchw, torch.from_numpy(y)).numpy()

    def begin(self) -> None:
        torch.manual_seed(self.setup.seed)  # SmoothGrad's noise: the same maps for the same seed


def explain(run: Path, folder: Path) -> None:
    request = json.loads((folder / "request.json").read_text())
    cfg = RunConfig.from_json((run / "config.json").read_text())
    seed = int(request["seed"])
    setup = Setup(cfg=cfg, black=torch.from_numpy(np.asarray(request["black"], np.float32)).reshape(1, -1, 1, 1),
                  input_range=float(request["input_range"]), seed=seed)
    child.explain(folder, CaptumExplainer(load_model(run, cfg), setup), CaptumExplainer(randomised(cfg, seed), setup))


if __name__ == "__main__":
    sys.exit(explain_main(sys.argv, explain))
