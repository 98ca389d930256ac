"""Model parallelism in a JAX run (`model-parallel`): keras.distribution.ModelParallel with a LayoutMap, and what
the result records of it (the layout, each variable's actual sharding, the bytes each device holds, the
collectives XLA put in the compiled step).

The layout is Megatron's for an MLP, on a (1, N) mesh of axes ('batch', 'model'):
    fc1/kernel  (None, 'model')   column-parallel: each device computes its N-th of the 4096 hidden units
    fc1/bias    ('model',)
    bn1/*       ('model',)        BatchNorm normalises each feature over the batch, and every device holds the
                                  whole batch, so bn1 works on its own features: no communication
    fc2/kernel  ('model', None)   row-parallel: each device's partial product of its hidden units; XLA sums the
                                  partials (one all-reduce of the (batch, 4096) activations forward, one for
                                  fc1's output gradient backward)
Everything else (fc2's bias, bn2, fc3) is replicated. Adam's slots take their variable's layout (Keras'
`add_variable_from_reference`). The batch axis has size 1: every device sees every image, only the layers are
split. GSPMD partitions the one program, so the arithmetic is single's up to reduction order: a wrong layout
changes where the bytes live, never the numbers (the parity test checks the layout itself as well).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np

#: variable path pattern (re.search, as Keras' LayoutMap matches) -> axes of each dimension.
LAYOUT: dict[str, tuple[str | None, ...]] = {
    r"^fc1/kernel$": (None, "model"),
    r"^fc1/bias$": ("model",),
    r"^bn1/(gamma|beta|moving_mean|moving_variance)$": ("model",),
    r"^fc2/kernel$": ("model", None),
}
AXES = ("batch", "model")
#: Collective ops of XLA's HLO, by the names summary.comm_bytes_by_op uses (strategies.COLLECTIVES).
HLO_COLLECTIVES = {"all-reduce": "all_reduce", "all-gather": "all_gather", "reduce-scatter": "reduce_scatter",
                   "collective-permute": "send_recv", "all-to-all": "all_to_all"}
DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "s8": 1, "u8": 1, "pred": 1, "f64": 8, "s64": 8}
CPU_NOTE = ("the model axis spans virtual CPU devices of one process (XLA_FLAGS "
            "--xla_force_host_platform_device_count), which share one thread pool: this run shows the layout and "
            "its correctness, not a speed-up")
NO_PROCESSES = ("strategy model-parallel runs in one process over its local devices, but KERAS_DISTRIBUTION_JOB_"
                "ADDRESSES describes a multi-process job: multi-process model parallelism is not offered (use "
                "multiworker for data parallelism across processes)")
STATE_HOW = ("bytes of each state array's shards on each device (addressable_shards) between steps: parameters "
             "(trainable), non_trainable (BatchNorm statistics, seeds), optimizer (slots, step counter); gradients "
             "exist only inside the compiled step (XLA buffers, laid out like their parameters), so null")


def distribution(keras: Any, devices: list[Any]) -> Any:
    """ModelParallel over a (1, N) mesh of `devices` with LAYOUT."""
    mesh = keras.distribution.DeviceMesh(shape=(1, len(devices)), axis_names=AXES, devices=devices)
    layout_map = keras.distribution.LayoutMap(mesh)
    for pattern, axes in LAYOUT.items():
        layout_map[pattern] = axes
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch", auto_shard_dataset=False)


def jax_mesh(jax: Any, devices: list[Any]) -> Any:
    """The same (1, N) mesh as a jax Mesh (equal to Keras' own: same devices, same axis names)."""
    return jax.sharding.Mesh(np.asarray(devices, dtype=object).reshape(1, len(devices)), AXES)


def spec_of(sharding: Any) -> list[str | None] | None:
    """A NamedSharding's PartitionSpec as a JSON list (None for any other kind of sharding)."""
    spec = getattr(sharding, "spec", None)
    return None if spec is None else [None if a is None else str(a) for a in spec]


def variable_shardings(net: Any) -> dict[str, list[str | None] | None]:
    """path -> the PartitionSpec each of the net's variables actually has (`variable.value.sharding`)."""
    return {v.path: spec_of(v.value.sharding) for v in net.weights}


def state_bytes(state: Any) -> dict[str, Any]:
    """summary.state_bytes_per_worker: per device, the bytes of its shards of each kind of state, and the largest
    device's of each kind."""
    kinds = dict(zip(("parameters", "non_trainable", "optimizer"), state[:3], strict=True))
    per_device: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(kinds, 0))
    for kind, arrays in kinds.items():
        for array in arrays:
            for shard in array.addressable_shards:
                per_device[str(shard.device)][kind] += int(shard.data.nbytes)
    rows = [{"device": d, **b, "total": sum(b.values())} for d, b in sorted(per_device.items())]
    return {**{k: max(r[k] for r in rows) for k in (*kinds, "total")}, "gradients": None,
            "per_device": rows, "how": STATE_HOW}


def _shape_bytes(result_type: str) -> int:
    """Bytes of an HLO result type: `f32[64,4096]{1,0}` or a tuple of them."""
    total = 0
    for dtype, dims in re.findall(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]", result_type):
        size = DTYPE_BYTES.get(dtype, 4)
        for d in filter(None, dims.split(",")):
            size *= int(d)
        total += size
    return total


def hlo_collectives(hlo_text: str) -> dict[str, Any]:
    """The collectives in a compiled step's HLO: how many of each kind and the bytes each device hands to them
    per step (each op's result size; an async pair counted once, at its start)."""
    counts: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = defaultdict(int)
    ops = []
    pattern = re.compile(r"=\s*(.+?)\s+(" + "|".join(HLO_COLLECTIVES) + r")(-start)?\(")
    for line in hlo_text.splitlines():
        match = pattern.search(line)
        if match is None:
            continue
        kind, size = HLO_COLLECTIVES[match.group(2)], _shape_bytes(match.group(1))
        counts[kind] += 1
        sizes[kind] += size
        ops.append({"op": match.group(2), "result": match.group(1).split("{")[0], "bytes": size})
    return {"counts": dict(counts), "bytes_by_op": dict(sizes), "ops": ops}


HLO_HOW = "counted in the compiled train step's HLO (compile().as_text())"


def record(run: Any, model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary_extra, environment_extra) of a JAX run: for every strategy the state bytes each device holds and
    the collectives of the compiled step (the report compares model-parallel with single on them); for
    model-parallel also the layout, the mesh and every variable's sharding."""
    comm = hlo_collectives(model.train_step.as_text())
    summary = {"state_bytes_per_worker": state_bytes(model.state), "comm_bytes_by_op": comm["bytes_by_op"],
               "n_parameters": int(sum(int(v.size) for v in model.state[0]))}
    if run.cfg.strategy != "model-parallel":
        return summary, {"hlo_collectives": {"counts": comm["counts"], "how": HLO_HOW}}
    mesh = {"shape": [1, len(run.placement.devices)], "axis_names": list(AXES)}
    environment = {"layout_map": {p: list(a) for p, a in LAYOUT.items()}, "mesh": mesh,
                   "variable_shardings": variable_shardings(model.net),
                   "state_shardings": {v.path: spec_of(a.sharding) for v, a in zip(
                       model.net.trainable_variables, model.state[0], strict=True)},
                   "hlo_collectives": {"counts": comm["counts"], "ops": comm["ops"], "how": HLO_HOW}}
    if run.placement.platform == "cpu":
        environment["model_parallel_note"] = CPU_NOTE
    return summary, environment
