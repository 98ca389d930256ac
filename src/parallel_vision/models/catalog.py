"""The model zoo, framework-free: each model's layer description and what one image costs.

Three models, each defined identically in PyTorch (`models.torch_zoo.build_torch_model`) and
Keras 3 (`models.keras_zoo.build_keras_model`):

- ``paper_cnn``: the paper's CNN (Fig. 2; `models.torch_cnn`, `models.keras_cnn`), the default;
- ``resnet18``: the CIFAR ResNet-18 of kuangliu/pytorch-cifar (3×3 stem, no max-pool), compute-heavy;
- ``wide_mlp``: Flatten and two 4096-wide hidden layers, communication-heavy (many gradient
  bytes per FLOP).

`layer_specs` is the single description of every parameterised layer, in canonical order and with
canonical names: `models.init.aligned_weights` draws the `--init aligned` weights from it, the
framework loaders map those weights onto their models BY NAME (PyTorch module names, which are also
the Keras layer names; see below), and `model_costs` counts parameters and FLOPs from it.

FLOP convention: one multiply-accumulate (MAC) is 2 FLOPs, and only convolutions and dense layers
(matrix products) are counted; bias adds, BatchNorm, ReLU, pooling, dropout, the residual adds and
the loss are not. This is the convention of `torch.utils.flop_counter.FlopCounterMode`, against which
the tests check `forward_flops_per_image` exactly. The training estimate is 3 × forward (the backward
pass computes the gradient with respect to the inputs and with respect to the weights, each about one
forward's work), the usual rule of thumb.

Layer names: PyTorch's `named_modules` names (for ResNet-18 exactly kuangliu's state-dict keys,
``layer2.0.conv1``, ``layer2.0.shortcut.0``, ``linear``). Keras 3 accepts '.' in layer names (and
saves/loads such models), so the Keras layer carries the same name unchanged: the rule is the
identity. `paper_cnn` predates the zoo: its canonical names (``conv1`` … ``dense3``) are not module
names, and its loaders map by order, as they always have.

Numpy at most: importing this module imports neither torch nor TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MODEL_NAMES: tuple[str, ...] = ("paper_cnn", "resnet18", "wide_mlp")
DEFAULT_MODEL = "paper_cnn"

#: Width of both hidden layers of `wide_mlp`.
WIDE_MLP_WIDTH = 4096
#: (stage, planes, stride of its first block) of ResNet-18's four stages, two BasicBlocks each.
RESNET18_STAGES: tuple[tuple[int, int, int], ...] = ((1, 64, 1), (2, 128, 2), (3, 256, 2), (4, 512, 2))

LayerKind = Literal["conv", "bn", "dense"]


@dataclass(frozen=True)
class LayerSpec:
    """One parameterised layer: what the aligned init draws and what `model_costs` counts."""

    name: str
    kind: LayerKind
    shape: tuple[int, ...]
    """conv (out, in, kH, kW); dense (out, in); bn (features,)."""
    bias: bool = True
    """conv/dense: has a bias (False for the convolutions BatchNorm follows in ResNet-18)."""
    stride: int = 1
    padding: int = 0
    """conv: zero padding on every side (PyTorch's ``padding``)."""
    out_size: tuple[int, int] | None = None
    """conv: the (H, W) of its output feature map, which its FLOPs scale with."""
    flatten_from: tuple[int, int, int] | None = None
    """dense right after Flatten: the (C, H, W) feature map it flattens (channels first)."""

    @property
    def trainable(self) -> int:
        if self.kind == "bn":
            return 2 * self.shape[0]  # gamma, beta
        weights = 1
        for n in self.shape:
            weights *= n
        return weights + (self.shape[0] if self.bias else 0)

    @property
    def statistics(self) -> int:
        """BatchNorm running mean + variance (Keras counts them as non-trainable parameters)."""
        return 2 * self.shape[0] if self.kind == "bn" else 0

    @property
    def forward_flops(self) -> int:
        """2 × MACs of one image through this layer (0 for BatchNorm; bias adds not counted)."""
        if self.kind == "bn":
            return 0
        macs = 1
        for n in self.shape:
            macs *= n
        if self.kind == "conv":
            assert self.out_size is not None
            macs *= self.out_size[0] * self.out_size[1]
        return 2 * macs


def _check(name: str, channels: int, image_size: int, classes: int) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if channels < 1 or image_size < 1 or classes < 1:
        raise ValueError(f"channels, image_size and classes must be positive, got {channels}, {image_size}, {classes}")
    if name == "paper_cnn" and image_size < 4:
        raise ValueError(f"paper_cnn needs images of at least 4×4 (two 2×2 max-pools), got {image_size}")


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _paper_cnn(channels: int, image_size: int, classes: int) -> list[LayerSpec]:
    s, half, side = image_size, image_size // 2, image_size // 4
    return [
        LayerSpec("conv1", "conv", (32, channels, 3, 3), padding=1, out_size=(s, s)), LayerSpec("bn1", "bn", (32,)),
        LayerSpec("conv2", "conv", (64, 32, 3, 3), padding=1, out_size=(s, s)), LayerSpec("bn2", "bn", (64,)),
        LayerSpec("conv3", "conv", (128, 64, 3, 3), padding=1, out_size=(half, half)),
        LayerSpec("bn3", "bn", (128,)),
        LayerSpec("dense1", "dense", (128, 128 * side * side), flatten_from=(128, side, side)),
        LayerSpec("bn4", "bn", (128,)),
        LayerSpec("dense2", "dense", (64, 128)), LayerSpec("bn5", "bn", (64,)),
        LayerSpec("dense3", "dense", (classes, 64)),
    ]


def _resnet18(channels: int, image_size: int, classes: int) -> list[LayerSpec]:
    def conv(name: str, cout: int, cin: int, k: int, stride: int, size: int) -> tuple[LayerSpec, int]:
        pad = k // 2
        out = _conv_out(size, k, stride, pad)
        return LayerSpec(name, "conv", (cout, cin, k, k), bias=False, stride=stride, padding=pad,
                         out_size=(out, out)), out

    stem, size = conv(name="conv1", cout=64, cin=channels, k=3, stride=1, size=image_size)
    specs = [stem, LayerSpec("bn1", "bn", (64,))]
    in_planes = 64
    for stage, planes, first_stride in RESNET18_STAGES:
        for block in range(2):
            p = f"layer{stage}.{block}."
            stride = first_stride if block == 0 else 1
            c1, out = conv(name=p + "conv1", cout=planes, cin=in_planes, k=3, stride=stride, size=size)
            c2, _ = conv(name=p + "conv2", cout=planes, cin=planes, k=3, stride=1, size=out)
            specs += [c1, LayerSpec(p + "bn1", "bn", (planes,)), c2, LayerSpec(p + "bn2", "bn", (planes,))]
            if stride != 1 or in_planes != planes:  # 1×1 conv + BN projection shortcut
                sc, _ = conv(name=p + "shortcut.0", cout=planes, cin=in_planes, k=1, stride=stride, size=size)
                specs += [sc, LayerSpec(p + "shortcut.1", "bn", (planes,))]
            in_planes, size = planes, out
    specs.append(LayerSpec("linear", "dense", (classes, in_planes)))  # after global average pooling
    return specs


def _wide_mlp(channels: int, image_size: int, classes: int) -> list[LayerSpec]:
    w = WIDE_MLP_WIDTH
    return [
        LayerSpec("fc1", "dense", (w, channels * image_size * image_size),
                  flatten_from=(channels, image_size, image_size)),
        LayerSpec("bn1", "bn", (w,)),
        LayerSpec("fc2", "dense", (w, w)), LayerSpec("bn2", "bn", (w,)),
        LayerSpec("fc3", "dense", (classes, w)),
    ]


_BUILDERS = {"paper_cnn": _paper_cnn, "resnet18": _resnet18, "wide_mlp": _wide_mlp}


def pipeline_blocks(name: str) -> list[list[str]]:
    """The layers of `name` grouped into the blocks a pipeline may be cut between, in order: a block starts at
    each convolution or dense layer (its BatchNorm joins it), except inside a residual block (`layerK.J.*`),
    which stays whole. paper_cnn: 6 blocks, wide_mlp: 3, resnet18: the stem, 8 residual blocks, the head."""
    blocks: list[list[str]] = []
    unit = None
    for spec in layer_specs(name):
        parts = spec.name.split(".")
        this = ".".join(parts[:2]) if len(parts) > 2 else spec.name
        residual = len(parts) > 2 and this == unit
        if spec.kind in ("conv", "dense") and not residual:
            blocks.append([])
        blocks[-1].append(spec.name)
        unit = this
    return blocks


def layer_specs(name: str, channels: int = 1, image_size: int = 28, classes: int = 10) -> list[LayerSpec]:
    """Every parameterised layer of `name` for (channels, image_size × image_size) input, in canonical order."""
    _check(name, channels, image_size, classes)
    return _BUILDERS[name](channels, image_size, classes)


@dataclass(frozen=True)
class ModelCosts:
    """What one model costs per image, computed analytically from `layer_specs`.

    FLOPs count 2 per multiply-accumulate of convolutions and dense layers only (bias adds, BatchNorm,
    activations, pooling and residual adds are not counted), as `torch.utils.flop_counter` does.
    """

    parameters: int
    """Trainable parameters (BatchNorm gamma/beta included, running statistics not)."""
    bn_statistics: int
    """BatchNorm running mean + running variance values (non-trainable; Keras' count_params includes them)."""
    forward_flops_per_image: int
    """2 × MACs of the conv and dense layers for one image's forward pass."""
    gradient_bytes: int
    """Bytes of one full fp32 gradient (parameters × 4): what data parallelism all-reduces every step."""

    @property
    def train_flops_per_image(self) -> int:
        """Forward + backward ≈ 3 × forward: the backward pass does about two forwards' work
        (gradients with respect to the inputs and to the weights). The usual estimate, not a measurement."""
        return 3 * self.forward_flops_per_image

    def gradient_bytes_per_train_flop(self, batch_per_replica: int = 1) -> float:
        """Gradient bytes all-reduced per training FLOP of one replica's step (one all-reduce per step of
        `batch_per_replica` images): the higher, the sooner communication, not compute, bounds scaling."""
        if batch_per_replica < 1:
            raise ValueError(f"batch_per_replica must be positive, got {batch_per_replica}")
        return self.gradient_bytes / (self.train_flops_per_image * batch_per_replica)


def model_costs(name: str, channels: int = 1, image_size: int = 28, classes: int = 10) -> ModelCosts:
    """Parameters, BatchNorm statistics, forward FLOPs per image and gradient bytes of `name`."""
    specs = layer_specs(name, channels, image_size, classes)
    parameters = sum(s.trainable for s in specs)
    return ModelCosts(
        parameters=parameters,
        bn_statistics=sum(s.statistics for s in specs),
        forward_flops_per_image=sum(s.forward_flops for s in specs),
        gradient_bytes=4 * parameters,
    )


_DESCRIPTIONS = {
    "paper_cnn": "paper_cnn: the paper's CNN (Fig. 2): three 3×3 conv blocks (32, 64, 128) with BatchNorm and two "
                 "max-pools, then dense 128–64–classes with BatchNorm and dropout (the default).",
    "resnet18": "resnet18: CIFAR ResNet-18 (kuangliu/pytorch-cifar): 3×3 stem (64), no max-pool, four stages of two "
                "BasicBlocks (64, 128, 256, 512), global average pool, linear; compute-heavy.",
    "wide_mlp": f"wide_mlp: Flatten, two dense {WIDE_MLP_WIDTH}-wide hidden layers with BatchNorm, ReLU and dropout, "
                "dense to classes; communication-heavy (many gradient bytes per FLOP).",
}


def describe(name: str) -> str:
    """One line describing `name`, for docs and reports."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return _DESCRIPTIONS[name]


#: The input shapes the docs tabulate: (label, channels, image_size, classes).
DOC_INPUTS: tuple[tuple[str, int, int, int], ...] = (("MNIST 1×28×28", 1, 28, 10), ("CIFAR-10 3×32×32", 3, 32, 10))


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:g} {unit}"


def costs_markdown() -> str:
    """The costs table of docs/models.md, computed (the docs are checked against it)."""
    rows = ["| Model | Input | Parameters (trainable) | BN statistics | Forward FLOPs / image "
            "| Gradient bytes (fp32) | Gradient bytes / training FLOP |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for name in MODEL_NAMES:
        for label, channels, size, classes in DOC_INPUTS:
            c = model_costs(name, channels, size, classes)
            rows.append(f"| `{name}` | {label} | {c.parameters:,} | {c.bn_statistics:,} "
                        f"| {c.forward_flops_per_image:,} ({_si(c.forward_flops_per_image, 'FLOP')}) "
                        f"| {c.gradient_bytes:,} ({_si(c.gradient_bytes, 'B')}) "
                        f"| {c.gradient_bytes_per_train_flop():.4f} |")
    return "\n".join(rows) + "\n"
