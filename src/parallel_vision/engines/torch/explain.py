"""Attribution maps of a run's model.pt through Captum, and their deletion/insertion curves: `pvision explain`'s
torch child (`python -m parallel_vision.engines.torch.explain RUN FOLDER`; explain/run.py writes FOLDER).

FOLDER holds inputs.npy (normalised NHWC float32), labels.npy (the class each map explains) and request.json
(methods, seed, steps, sanity images, the normalised black pixel); this child writes maps.npz and timings.json
there. The model is the plain (unfused) zoo model in eval mode, as `pvision predict` loads it.
"""

from __future__ import annotations

import json
import sys
import time
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
from parallel_vision.explain import faithfulness
from parallel_vision.explain.attribution import (  # the settings the Keras side uses too
    IG_STEPS,
    OCCLUSION_PATCH,
    OCCLUSION_STRIDE,
    SMOOTHGRAD_NOISE,
    SMOOTHGRAD_SAMPLES,
)
from parallel_vision.models.torch_zoo import build_torch_model

#: Images attributed per Captum call (IG and SmoothGrad multiply it by their samples internally).
CHUNK = 100
#: Images whose deletion (or insertion) frames go through the model in one forward pass.
CURVE_IMAGES = 32


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


def maps_of(method: str, model: nn.Module, setup: Setup, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, H, W) float32 maps of NHWC `x` for classes `y`, in chunks."""
    torch.manual_seed(setup.seed)  # SmoothGrad's noise: the same maps for the same seed
    nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(y)
    parts = [attribute(method, model, setup, nchw[i:i + CHUNK].clone().requires_grad_(), labels[i:i + CHUNK]).numpy()
             for i in range(0, len(x), CHUNK)]
    return np.concatenate(parts).astype(np.float32)


def probabilities(model: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) softmax probability of class y[i] for NHWC x[i]."""
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    return torch.softmax(logits.double(), dim=1)[torch.arange(len(y)), torch.from_numpy(y)].numpy()


def curves(model: nn.Module, x: np.ndarray, y: np.ndarray, orders: np.ndarray, black: np.ndarray, *,
           steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves (N, steps + 1) of the true class for each image's pixel order, the frames
    of CURVE_IMAGES images in one forward pass."""
    deletion, insertion = [], []
    for i in range(0, len(x), CURVE_IMAGES):
        part = slice(i, i + CURVE_IMAGES)
        labels = np.repeat(y[part], steps + 1)
        pairs = list(zip(x[part], orders[part], strict=True))
        removed = [faithfulness.deletion_frames(image, black, o, steps) for image, o in pairs]
        added = [faithfulness.insertion_frames(image, o, steps) for image, o in pairs]
        deletion.append(probabilities(model, np.concatenate(removed), labels).reshape(-1, steps + 1))
        insertion.append(probabilities(model, np.concatenate(added), labels).reshape(-1, steps + 1))
    return np.concatenate(deletion), np.concatenate(insertion)


def explain(run: Path, folder: Path) -> None:
    request = json.loads((folder / "request.json").read_text())
    cfg = RunConfig.from_json((run / "config.json").read_text())
    x, y = np.load(folder / "inputs.npy"), np.load(folder / "labels.npy").astype(np.int64)
    seed, steps, k = int(request["seed"]), int(request["steps"]), int(request["sanity_images"])
    black_np = np.asarray(request["black"], np.float32)
    setup = Setup(cfg=cfg, black=torch.from_numpy(black_np).reshape(1, -1, 1, 1),
                  input_range=float(request["input_range"]), seed=seed)
    model, untrained = load_model(run, cfg), randomised(cfg, seed)
    with torch.no_grad():
        out: dict[str, np.ndarray] = {"logits": model(torch.from_numpy(np.ascontiguousarray(
            x.transpose(0, 3, 1, 2)))).numpy()}
    timings: dict[str, dict[str, float]] = {}
    shape = x.shape[1:3]
    rng = np.random.default_rng(seed)
    orders = {"random": np.stack([faithfulness.random_order(shape, rng) for _ in range(len(x))])}
    for method in request["methods"]:
        started = time.perf_counter()
        out[f"map_{method}"] = maps_of(method, model, setup, x, y)
        mapped = time.perf_counter()
        orders[method] = np.stack([faithfulness.order(m) for m in out[f"map_{method}"]])
        deletion, insertion = curves(model, x, y, orders[method], black_np, steps=steps)
        out[f"deletion_{method}"], out[f"insertion_{method}"] = deletion, insertion
        curved = time.perf_counter()
        out[f"randomised_{method}"] = maps_of(method, untrained, setup, x[:k], y[:k])
        timings[method] = {"maps_s": mapped - started, "curves_s": curved - mapped,
                           "sanity_s": time.perf_counter() - curved}
        print(f"{method}: maps {mapped - started:.1f} s, curves {curved - mapped:.1f} s", file=sys.stderr)
    started = time.perf_counter()
    out["deletion_random"], out["insertion_random"] = curves(model, x, y, orders["random"], black_np, steps=steps)
    timings["random"] = {"curves_s": time.perf_counter() - started}
    np.savez(folder / "maps.npz", **out)
    (folder / "timings.json").write_text(json.dumps(timings))


if __name__ == "__main__":
    sys.exit(explain_main(sys.argv, explain))
