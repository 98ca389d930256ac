"""The JAX engine: the paper's CNN in Keras 3 on the JAX backend, one jitted SPMD step under one device,
keras.distribution.DataParallel over local devices, or DataParallel across jax.distributed processes.

Imported only by the engine process (or, under a user's own KERAS_DISTRIBUTION_* variables, by the worker
process itself); JAX is imported by `setup.start_run`, after the environment it reads at import is set.

    setup.py     environment, JAX and Keras, devices and distribution (the strategies are described there)
    data.py      the arrays, the epoch order, global batches placed on the mesh
    model.py     the Keras CNN (two copies), the state pytree, the train/eval programs compiled ahead of time
    resume.py    epoch-end backups: restored under --resume, written after every epoch (backup.py: the folder)
    train.py     the epoch loop and clock (what each number means), TensorBoard, signals
    evaluate.py  per-epoch evaluation and the final prediction pass of the saved weights
    layout.py    model-parallel: the LayoutMap, and what the result records of the layout
    outputs.py   the result's environment block

What both Keras engines share (the run state, the epoch check, backups, the prediction tail and `finish`,
the one way a run ends) is the Keras layer, engines/keras/.

Timing block: startup_s = launch → devices ready (process start, JAX import, jax.distributed); data_load_s =
reading and normalising the arrays; model_build_s = building both model copies and the initial state;
compile_s = tracing and XLA-compiling the train and eval programs (ahead of time, outside every epoch);
eval_total_s = sum of per-epoch eval times; final_eval_s = the final prediction pass.
"""

from __future__ import annotations

from parallel_vision.config import RunConfig
from parallel_vision.engines.jax import layout
from parallel_vision.engines.jax.data import Feeder, load_data
from parallel_vision.engines.jax.evaluate import predict_with_saved_weights
from parallel_vision.engines.jax.model import build, state_to_host
from parallel_vision.engines.jax.outputs import environment
from parallel_vision.engines.jax.resume import restore
from parallel_vision.engines.jax.setup import start_run
from parallel_vision.engines.jax.train import fit
from parallel_vision.engines.keras.outputs import finish
from parallel_vision.engines.levers import resolve_precision


def train_and_evaluate(cfg: RunConfig) -> None:
    """Run `cfg` in this process (one process of it for `multiworker`); the writer saves the outputs."""
    run = start_run(resolve_precision(cfg, on_gpu=False))  # auto is fp32 here: bf16 not measured faster
    with run.timed("data_load_s"):
        data = load_data(run)
    feeder = Feeder(run)
    model = build(run, data, feeder)
    restore(run, model, feeder)
    # the bytes each device holds and the step's collectives (with model-parallel's layout), restored or not
    run.summary_extra, run.environment_extra = layout.record(run, model)
    stopped = fit(run, model, data, feeder)
    finish(run, stopped or predict_with_saved_weights(run, state_to_host(model.state), data), environment)
