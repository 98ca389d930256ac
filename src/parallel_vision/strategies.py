"""The strategy table: every way the tool can spread training over workers, declared once.

Config validation, the CLI's help, the bench matrix, the launcher's process model, the engines' registry and
the docs' support tables all read `STRATEGY_TABLE`; nothing else lists strategies. A new strategy is one
`StrategySpec` here plus its engine code (`tests/test_strategies.py` checks every column and that the docs
tables are the generated ones).

Framework-free and import-light: `config.py` imports this module, so it imports nothing of the package but
`errors`, and takes configurations duck-typed (any object with RunConfig's attributes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FRAMEWORKS = ("torch", "tensorflow", "jax")
FRAMEWORK_TITLES = {"torch": "torch", "tensorflow": "TensorFlow", "jax": "JAX"}
#: The model zoo (parallel_vision.models.catalog.MODEL_NAMES; a test keeps the two equal).
ALL_MODELS = ("paper_cnn", "resnet18", "wide_mlp")
#: Collective kinds a strategy may issue per optimiser step (the projection models each).
COLLECTIVES = ("all_reduce", "broadcast", "reduce", "all_gather", "reduce_scatter", "send_recv")

Processes = Literal["one", "per-worker"]
"""`one`: every replica lives in one OS process (threads or devices of it); `per-worker`: one process each."""
Spawner = Literal["engine", "launcher"]
"""Who starts the per-worker processes on one host: the engine (torch.multiprocessing.spawn inside one
launcher child) or the launcher (one child per worker, described by the engine's cluster variables)."""


@dataclass(frozen=True)
class Lever:
    """A training option that some strategies honour and others refuse (docs/levers.md)."""

    name: str
    option: str
    """The command-line spelling, for messages and the docs table."""
    used: Callable[[Any], bool]
    """Does this configuration pull the lever?"""


LEVERS: dict[str, Lever] = {lever.name: lever for lever in (
    Lever("lr_scaling", "--lr-scaling/--base-batch", lambda c: c.lr_scaling != "none"),
    Lever("warmup", "--warmup-epochs", lambda c: c.warmup_epochs > 0),
    Lever("grad_accum", "--grad-accum", lambda c: c.grad_accum > 1),
    Lever("grad_compression", "--grad-compression", lambda c: c.grad_compression != "none"),
    Lever("sync_batchnorm", "--sync-batchnorm", lambda c: bool(c.sync_batchnorm)),
    Lever("precision", "--precision", lambda c: c.precision != "fp32"),
    Lever("target", "--target-accuracy", lambda c: c.target_accuracy is not None),
)}
#: Levers every strategy honours unless it says otherwise.
COMMON_LEVERS = frozenset({"lr_scaling", "warmup", "precision", "target"})


@dataclass(frozen=True)
class StrategySpec:
    """One strategy of one framework: what it runs, how its workers are laid out, what it supports."""

    framework: str
    name: str
    title: str
    """The report's name for it (e.g. 'DDP')."""
    api: str
    """The framework API that implements it, recorded in result.json."""
    processes: Processes
    spawner: Spawner | None
    """Who starts the per-worker processes (None: one process)."""
    max_workers: int | None
    """1 for a single-device strategy; None: any number."""
    models: tuple[str, ...]
    levers: frozenset[str]
    """Levers it honours (keys of LEVERS); any other lever pulled is refused."""
    collectives: tuple[str, ...]
    """Collective kinds issued per optimiser step (COLLECTIVES), for the projection."""
    bench_default: bool
    """The N > 1 strategy `pvision bench` runs for its framework when --strategies is not given."""
    refusals: Mapping[str, str] = field(default_factory=dict)
    """lever -> the one-line reason it is refused ({strategy} and {framework} are filled in)."""
    needs_cuda: bool = False
    """Refused with --device cpu (it exists only on GPUs)."""
    min_workers: int = 1
    """2 for a strategy that shards state over workers: with one worker there is nothing to shard over."""
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16", "auto")
    """The --precision values it accepts (the sharded strategies have no sharded fp16 loss scaler)."""
    shards: str = "nothing"
    """What each worker holds only a part of (docs/parallelism.md): nothing, optimizer state, or parameters,
    gradients and optimizer state."""
    same_batch: bool = False
    """Every worker takes the whole global batch (tensor and pipeline parallelism): the group processes it once, so
    the data is not split over workers and images/s counts each image once."""
    models_why: str = ""
    """Why `models` is not every model (appended to the refusal of another model)."""
    split_dims: Mapping[str, int] = field(default_factory=dict)
    """model -> the size of the dimension it splits over the workers (model parallelism): --workers must
    divide it."""

    @property
    def key(self) -> tuple[str, str]:
        return self.framework, self.name

    @property
    def multi(self) -> bool:
        return self.max_workers != 1

    @property
    def shares_process(self) -> bool:
        """Several replicas in one process: they share its thread pool."""
        return self.multi and self.processes == "one"

    def refusal(self, lever: str) -> str:
        """Why this strategy refuses `lever`, in one line."""
        text = (self.refusals.get(lever) or COMMON_REFUSALS.get(lever)
                or f"{LEVERS[lever].option} is not supported by {{framework}}'s {{strategy}} strategy")
        return text.format(strategy=self.name, framework=FRAMEWORK_TITLES[self.framework])


#: Why a lever is refused, where every strategy that refuses it has the same reason.
COMMON_REFUSALS = {
    "grad_compression": "grad_compression applies to strategy ddp only (a DDP communication hook); "
                        "strategy is {strategy}",
    "sync_batchnorm": "sync_batchnorm only applies to strategy 'ddp'",
}
_TF_ACCUM = {"grad_accum": "grad_accum under TensorFlow's {strategy} strategy is not possible: Keras 3's "
                           "gradient_accumulation_steps fails under tf.distribute (merge_call inside a cond); "
                           "use strategy single or the torch engine"}
_JAX_ACCUM = {"grad_accum": "grad_accum is not implemented in the JAX engine (its jitted step takes one whole "
                            "global batch); use the torch engine, or TensorFlow's single strategy"}
_SHARDED = {"grad_compression": "grad_compression is a DDP communication hook; FSDP's gradients go through "
                                  "reduce-scatter, which DDP hooks do not reach (use strategy ddp or zero1)",
            "sync_batchnorm": "sync_batchnorm is DDP's SyncBatchNorm conversion; strategy fsdp does not support it "
                              "(use ddp or zero1)"}
_PIPELINE = {"grad_accum": "--grad-accum is refused with strategy pipeline: its micro-batches (--microbatches) "
                           "already are the accumulation",
             "sync_batchnorm": "sync_batchnorm is DDP's SyncBatchNorm conversion; under strategy pipeline each "
                               "stage owns its BatchNorm layers outright (use ddp or zero1)"}
_TENSOR = {"grad_compression": "grad_compression is a DDP communication hook; strategy tensor all-reduces "
                                 "activations, not gradients (use strategy ddp or zero1)",
           "sync_batchnorm": "sync_batchnorm is DDP's SyncBatchNorm conversion; under strategy tensor every rank "
                             "already normalises over the whole batch (its features are sharded, not its images)"}
#: What a framework without a strategy says when it is asked for it (the strategy exists for another framework).
ELSEWHERE = {
    ("tensorflow", "zero1"): "TensorFlow has no supported sharded strategy (zero1 and fsdp are torch's)",
    ("tensorflow", "fsdp"): "TensorFlow has no supported sharded strategy (zero1 and fsdp are torch's)",
    ("tensorflow", "pipeline"): "TensorFlow has no pipeline strategy (pipeline is torch's: "
                                "torch.distributed.pipelining)",
    ("jax", "pipeline"): "JAX has no pipeline strategy (pipeline is torch's: torch.distributed.pipelining)",
    ("jax", "zero1"): "JAX has no zero1 strategy: under JAX, state is sharded by model parallelism "
                      "(keras.distribution.ModelParallel; docs/parallelism.md)",
    ("jax", "fsdp"): "JAX has no fsdp strategy: under JAX, state is sharded by model parallelism "
                     "(keras.distribution.ModelParallel; docs/parallelism.md)",
    ("tensorflow", "tensor"): "TensorFlow has no tensor strategy: tensor parallelism is torch's "
                              "(torch.distributed.tensor.parallel; -f torch -s tensor)",
    ("jax", "tensor"): "JAX has no tensor strategy: tensor parallelism is torch's (torch.distributed.tensor.parallel;"
                       " -f torch -s tensor)",
    ("tensorflow", "model-parallel"): "TensorFlow has no supported model-parallel strategy (DTensor is "
                                      "experimental, Keras' TensorFlow distribution backend a prototype); "
                                      "model-parallel is JAX's (-f jax)",
    ("torch", "model-parallel"): "torch has no model-parallel strategy: torch splits layers with -s tensor or "
                                 "-s pipeline; model-parallel is JAX's keras.distribution.ModelParallel (-f jax)",
}
#: Width of wide_mlp's hidden layers (models.catalog.WIDE_MLP_WIDTH; a test keeps the two equal).
WIDE_MLP_WIDTH = 4096
_ONE_DEVICE = {"processes": "one", "spawner": None, "max_workers": 1, "collectives": (), "bench_default": False}
_ONE_PROCESS = {"processes": "one", "spawner": None, "max_workers": None, "collectives": ("all_reduce",)}
_PER_WORKER = {"processes": "per-worker", "max_workers": None, "collectives": ("all_reduce",)}

STRATEGY_TABLE: list[StrategySpec] = [
    StrategySpec(framework="torch", name="single", title="single", api="torch.nn.Module", **_ONE_DEVICE,
                 models=ALL_MODELS, levers=COMMON_LEVERS | {"grad_accum"}),
    StrategySpec(framework="torch", name="dp", title="DataParallel", api="torch.nn.DataParallel",
                 **{**_ONE_PROCESS, "collectives": ("broadcast", "reduce")}, models=ALL_MODELS,
                 levers=COMMON_LEVERS | {"grad_accum"}, bench_default=False, needs_cuda=True),
    StrategySpec(framework="torch", name="ddp", title="DDP", api="torch.nn.parallel.DistributedDataParallel",
                 **_PER_WORKER, spawner="engine", models=ALL_MODELS,
                 levers=COMMON_LEVERS | {"grad_accum", "grad_compression", "sync_batchnorm"}, bench_default=True),
    StrategySpec(framework="torch", name="zero1", title="ZeRO-1",
                 api="DistributedDataParallel + torch.distributed.optim.ZeroRedundancyOptimizer",
                 **{**_PER_WORKER, "collectives": ("all_reduce", "broadcast")}, spawner="engine", models=ALL_MODELS,
                 levers=COMMON_LEVERS | {"grad_accum", "grad_compression", "sync_batchnorm"}, bench_default=False,
                 min_workers=2, precisions=("fp32", "bf16", "auto"), shards="optimizer state"),
    StrategySpec(framework="torch", name="fsdp", title="FSDP",
                 api="torch.distributed.fsdp.fully_shard (FSDP2) over a DeviceMesh",
                 **{**_PER_WORKER, "collectives": ("all_gather", "reduce_scatter")}, spawner="engine",
                 models=ALL_MODELS, levers=COMMON_LEVERS | {"grad_accum"}, bench_default=False, refusals=_SHARDED,
                 min_workers=2, precisions=("fp32", "bf16", "auto"),
                 shards="parameters, gradients and optimizer state"),
    StrategySpec(framework="torch", name="pipeline", title="Pipeline",
                 api="torch.distributed.pipelining (PipelineStage + ScheduleGPipe / Schedule1F1B)",
                 **{**_PER_WORKER, "collectives": ("send_recv",)}, spawner="engine", models=ALL_MODELS,
                 levers=COMMON_LEVERS, bench_default=False, refusals=_PIPELINE, min_workers=2,
                 precisions=("fp32", "bf16", "auto"), shards="parameters, gradients and optimizer state (by layer)",
                 same_batch=True),
    StrategySpec(framework="torch", name="tensor", title="Tensor parallel",
                 api="torch.distributed.tensor.parallel (ColwiseParallel fc1, RowwiseParallel fc2)",
                 **_PER_WORKER, spawner="engine", models=("wide_mlp",),
                 levers=COMMON_LEVERS | {"grad_accum"}, bench_default=False, refusals=_TENSOR,
                 min_workers=2, precisions=("fp32", "bf16", "auto"),
                 shards="fc1, bn1 and fc2's parameters, gradients and optimizer state", same_batch=True,
                 models_why="ColwiseParallel and RowwiseParallel shard nn.Linear and nn.Embedding only; "
                            "the convolution models have no tensor-parallel plan"),
    StrategySpec(framework="tensorflow", name="single", title="single", api="default (one device)",
                 **_ONE_DEVICE, models=ALL_MODELS, levers=COMMON_LEVERS | {"grad_accum"}),
    StrategySpec(framework="tensorflow", name="mirrored", title="Mirrored", api="tf.distribute.MirroredStrategy",
                 **_ONE_PROCESS, models=ALL_MODELS, levers=COMMON_LEVERS, bench_default=True, refusals=_TF_ACCUM),
    StrategySpec(framework="tensorflow", name="multiworker", title="MultiWorker",
                 api="tf.distribute.MultiWorkerMirroredStrategy", **_PER_WORKER, spawner="launcher",
                 models=ALL_MODELS, levers=COMMON_LEVERS, bench_default=False, refusals=_TF_ACCUM),
    StrategySpec(framework="jax", name="single", title="single", api="one device (jax.jit)", **_ONE_DEVICE,
                 models=ALL_MODELS, levers=COMMON_LEVERS, refusals=_JAX_ACCUM),
    StrategySpec(framework="jax", name="dp", title="DataParallel",
                 api="keras.distribution.DataParallel (one SPMD program over local devices)",
                 **_ONE_PROCESS, models=ALL_MODELS, levers=COMMON_LEVERS, bench_default=True, refusals=_JAX_ACCUM),
    StrategySpec(framework="jax", name="multiworker", title="MultiWorker",
                 api="keras.distribution.DataParallel over jax.distributed processes (one device each)",
                 **_PER_WORKER, spawner="launcher",
                 models=ALL_MODELS, levers=COMMON_LEVERS, bench_default=False, refusals=_JAX_ACCUM),
    StrategySpec(framework="jax", name="model-parallel", title="ModelParallel",
                 api="keras.distribution.ModelParallel (LayoutMap: wide_mlp's hidden layers split on a 'model' "
                     "mesh axis; one SPMD program over local devices)",
                 **_ONE_PROCESS, models=("wide_mlp",), levers=COMMON_LEVERS, bench_default=False,
                 refusals=_JAX_ACCUM, min_workers=2, split_dims={"wide_mlp": WIDE_MLP_WIDTH},
                 shards="fc1, bn1 and fc2's parameters, gradients and optimizer state", same_batch=True,
                 models_why="its LayoutMap splits wide_mlp's dense layers; the convolution models have no "
                            "model-parallel layout here"),
]


def titles() -> dict[str, str]:
    """Strategy name -> the report's name for it (a name means the same in every framework)."""
    return {s.name: s.title for s in STRATEGY_TABLE}


def strategies_of(framework: str) -> tuple[str, ...]:
    """The strategy names of one framework, in table order."""
    return tuple(s.name for s in STRATEGY_TABLE if s.framework == framework)


def frameworks() -> tuple[str, ...]:
    """The frameworks the table names, in table order."""
    return tuple(dict.fromkeys(s.framework for s in STRATEGY_TABLE))


def all_names() -> tuple[str, ...]:
    """Every strategy name, once, in table order."""
    return tuple(dict.fromkeys(s.name for s in STRATEGY_TABLE))


def lookup(framework: str, name: str) -> StrategySpec | None:
    return next((s for s in STRATEGY_TABLE if s.key == (framework, name)), None)


def get(framework: str, name: str) -> StrategySpec:
    """The spec of a strategy RunConfig has already validated (a KeyError here is a programming error)."""
    spec = lookup(framework, name)
    if spec is None:
        raise KeyError(f"no strategy {name!r} for {framework!r}")
    return spec


def bench_defaults(framework: str) -> tuple[str, ...]:
    return tuple(s.name for s in STRATEGY_TABLE if s.framework == framework and s.bench_default)


def for_more_workers(framework: str) -> str:
    """What to suggest when a single-device strategy is given several workers (CPU-capable ones)."""
    return " or ".join(s.name for s in STRATEGY_TABLE
                       if s.framework == framework and s.multi and not s.needs_cuda)


def refused_levers(spec: StrategySpec, cfg: Any) -> list[str]:
    """The levers `cfg` pulls that `spec` does not honour, in LEVERS order."""
    return [name for name, lever in LEVERS.items() if name not in spec.levers and lever.used(cfg)]


def cli_help() -> str:
    """`--strategy`'s help: every framework's strategies."""
    return "; ".join(f"{fw}: {'|'.join(strategies_of(fw))}" for fw in frameworks()) + "."


def bench_default_help() -> str:
    """`bench --strategies`' default, per framework."""
    return ", ".join(f"{'/'.join(bench_defaults(fw))} for {fw}" for fw in frameworks())


def per_worker_names() -> str:
    """The strategies whose workers are processes, for `--workers`' help."""
    return ", ".join(dict.fromkeys(s.name for s in STRATEGY_TABLE if s.processes == "per-worker"))


# ------------------------------------------------------------------------------------------- the docs tables
def markdown_table() -> str:
    """The support table of docs/architecture.md (a test keeps the page equal to this)."""
    lines = ["| framework | strategy | implementation | processes | workers | models | collectives / step | "
             "sharded |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in STRATEGY_TABLE:
        processes = "one" if s.processes == "one" else f"one per worker (started by the {s.spawner})"
        workers = ("1" if not s.multi else "≥ 2 CUDA devices" if s.needs_cuda else
                   f"≥ {s.min_workers}" if s.min_workers > 1 else "any")
        lines.append(f"| {s.framework} | `{s.name}` | `{s.api}` | {processes} | {workers} | "
                     f"{', '.join(s.models)} | {', '.join(s.collectives) or '—'} | {s.shards} |")
    return "\n".join(lines)


def levers_markdown_table() -> str:
    """The lever support table of docs/levers.md: which strategy honours which lever."""
    head = " | ".join(f"{FRAMEWORK_TITLES[s.framework]} {s.name}" for s in STRATEGY_TABLE)
    lines = [f"| option | {head} |", "| --- |" + " --- |" * len(STRATEGY_TABLE)]
    for name, lever in LEVERS.items():
        cells = " | ".join(_lever_cell(s, name) for s in STRATEGY_TABLE)
        lines.append(f"| `{lever.option}` | {cells} |")
    return "\n".join(lines)


def _lever_cell(spec: StrategySpec, lever: str) -> str:
    if lever not in spec.levers:
        return "refused"
    if lever == "precision" and "fp16" not in spec.precisions:
        return "bf16 only"
    return "yes"


if __name__ == "__main__":  # `python -m parallel_vision.strategies` prints both docs tables
    print(markdown_table(), "", levers_markdown_table(), sep="\n")
