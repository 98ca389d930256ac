"""The step-time model of the model-parallel strategies (docs/projection.md, *Model parallelism*): `pipeline`'s
(m + p − 1) slowest-stage micro-batch times plus its exposed point-to-point sends, and `tensor`'s compute split
N ways plus its one forward all-reduce per step. Pure arithmetic on numbers the calibration hands over; no store,
no framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from parallel_vision.models.catalog import LayerSpec, layer_specs, pipeline_blocks
from parallel_vision.projection.model import Link, ring_allreduce_s, tree_allreduce_s

#: Bytes per activation element the stages send (fp32: the pipeline stage sends `h.float()`).
ACTIVATION_BYTES = 4
#: The tensor-parallel pair of wide_mlp (engines/torch/tensor_parallel.py): fc1 column-, fc2 row-parallel; bn1
#: is sharded by feature with them (no FLOPs counted); bn2 and fc3 stay replicated.
TENSOR_SHARDED = ("fc1", "fc2")


# --------------------------------------------------------------------------- pipeline
def send_s(size: float, link: Link) -> float:
    """One point-to-point send of `size` bytes over the link: latency + bytes / bandwidth."""
    return link.latency_s + size / link.bandwidth_Bps


def bubble(stages: int, microbatches: int) -> float:
    """The idle share of a (m + p − 1)-slot schedule of equal stages: (p − 1)/(m + p − 1)."""
    return (stages - 1) / (microbatches + stages - 1)


def balanced_split(costs: Sequence[float], stages: int) -> list[list[int]]:
    """The contiguous split of the blocks into `stages` non-empty parts whose largest sum is smallest (exact,
    by dynamic programming; ties: the earliest cut), as the engine cuts at start-up. Returns the block indices
    of each stage. Raises ValueError for more stages than blocks."""
    n = len(costs)
    if not 1 <= stages <= n:
        raise ValueError(f"{stages} stages for {n} blocks")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    best: dict[tuple[int, int], tuple[float, list[int]]] = {(0, 0): (0.0, [])}
    for used in range(1, stages + 1):
        for end in range(used, n - (stages - used) + 1):
            options = [(max(best[(start, used - 1)][0], prefix[end] - prefix[start]), best[(start, used - 1)][1] +
                        [end]) for start in range(used - 1, end) if (start, used - 1) in best]
            best[(end, used)] = min(options, key=lambda o: o[0])
    bounds = [0, *best[(n, stages)][1]]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(stages)]


def _input_elements(spec: LayerSpec, previous: LayerSpec | None) -> int:
    """Elements per image entering the block that starts with `spec` (what the stage before it sends)."""
    if spec.kind == "dense":
        return spec.shape[1]
    assert spec.out_size is not None
    k, s, pad = spec.shape[2], spec.stride, spec.padding
    low = (spec.out_size[0] - 1) * s + k - 2 * pad  # the smallest input giving this output; up to s − 1 more
    size = low
    if previous is not None and previous.out_size is not None and low <= previous.out_size[0] < low + s:
        size = previous.out_size[0]  # no pooling in between (ResNet's strided blocks): the exact size
    return spec.shape[1] * size * size


def cut_elements(model: str, channels: int = 1, image_size: int = 28, classes: int = 10) -> list[int]:
    """Activation elements per image at each boundary between the model's pipeline blocks (len = blocks − 1)."""
    specs = {s.name: s for s in layer_specs(model, channels, image_size, classes)}
    blocks = pipeline_blocks(model)
    convs: list[LayerSpec | None] = []
    last_conv: LayerSpec | None = None
    for block in blocks:
        convs.append(last_conv)
        for name in block:
            if specs[name].kind == "conv":
                last_conv = specs[name]
    return [_input_elements(specs[blocks[j][0]], convs[j]) for j in range(1, len(blocks))]


@dataclass(frozen=True)
class PipelineStep:
    """One pipeline step at p stages and m micro-batches, its parts and bounds (seconds)."""

    stages: int
    microbatches: int
    stage_s: float
    """The slowest stage's forward + backward of one micro-batch."""
    send_bytes: tuple[float, ...]
    """Bytes of one micro-batch's activation across each cut (its gradient back is as large)."""
    link: Link

    @property
    def compute_s(self) -> float:
        return (self.microbatches + self.stages - 1) * self.stage_s

    @property
    def sends_per_microbatch_s(self) -> float:
        """Forward and back across every cut, one micro-batch: 2·Σ (α + S_cut/B)."""
        return 2 * sum(send_s(b, self.link) for b in self.send_bytes)

    @property
    def exposed_s(self) -> float:
        """The sends on the critical path: the first micro-batch's activation down every cut and the last one's
        gradient back up, 2(p − 1) sends; the others overlap the slots of the stages' compute."""
        return self.sends_per_microbatch_s

    @property
    def step_s(self) -> float:
        return self.compute_s + self.exposed_s

    @property
    def high_s(self) -> float:
        """No overlap of sends with compute: every micro-batch's sends in series with the schedule."""
        return self.compute_s + self.microbatches * self.sends_per_microbatch_s

    @property
    def bubble(self) -> float:
        return bubble(self.stages, self.microbatches)


# --------------------------------------------------------------------------- tensor
def tensor_sharded_share(model: str, channels: int = 1, image_size: int = 28, classes: int = 10) -> float:
    """The share of the forward FLOPs in the layers tensor parallelism splits N ways (fc1, fc2 of wide_mlp)."""
    specs = layer_specs(model, channels, image_size, classes)
    total = sum(s.forward_flops for s in specs)
    return sum(s.forward_flops for s in specs if s.name in TENSOR_SHARDED) / total


@dataclass(frozen=True)
class TensorStep:
    """One tensor-parallel step at N ranks: the compute split N ways for the sharded layers, plus the forward
    all-reduces of the row-parallel layer's partial outputs (exposed: the next layer waits for them)."""

    workers: int
    compute_1_s: float
    """One worker's step at the same batch (every rank takes the whole batch)."""
    sharded_share: float
    allreduce_bytes: float
    allreduces: int
    link: Link

    @property
    def compute_s(self) -> float:
        return self.compute_1_s * (1 - self.sharded_share + self.sharded_share / self.workers)

    def _comm(self, cost: float) -> float:
        return self.allreduces * cost if self.workers > 1 else 0.0

    @property
    def comm_s(self) -> float:
        return self._comm(ring_allreduce_s(self.allreduce_bytes, self.workers, self.link))

    @property
    def step_s(self) -> float:
        return self.compute_s + self.comm_s

    @property
    def low_s(self) -> float:
        cheaper = min(ring_allreduce_s(self.allreduce_bytes, self.workers, self.link),
                      tree_allreduce_s(self.allreduce_bytes, self.workers, self.link))
        return self.compute_s + self._comm(cheaper)

    @property
    def high_s(self) -> float:
        dearer = max(ring_allreduce_s(self.allreduce_bytes, self.workers, self.link),
                     tree_allreduce_s(self.allreduce_bytes, self.workers, self.link))
        return self.compute_s + self._comm(dearer)
