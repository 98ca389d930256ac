"""The TensorFlow engine: the paper's CNN in Keras 3 under one device, MirroredStrategy or
MultiWorkerMirroredStrategy, trained with `model.fit` as users (and the paper) do.

Imported only by the engine child process (or, under a user's own TF_CONFIG, by the worker process
itself); TensorFlow is imported by `setup.import_tensorflow`. One module per step of the run:

    setup.py     TensorFlow, threads, devices and strategy (the strategies are described there); TFRun
    data.py      the input pipeline, identical for every strategy
    model.py     the Keras CNN, optimiser, metrics, compiled in the strategy's scope
    resume.py    epoch-end backups: restored under --resume, written after every epoch (backup.py: the folder)
    train.py     `fit` with the epoch clock (clock.py: what each number means) and the signal handling
    evaluate.py  per-epoch evaluation and the final prediction pass of the saved weights
    outputs.py   the result's environment block

What both Keras engines share (the run state, the epoch check, backups, the prediction tail and `finish`,
the one way a run ends) is the Keras layer, engines/keras/.

Timing block: startup_s = launch → strategy ready (process start, TensorFlow import, device and
cluster set-up); data_load_s = reading the arrays, building the pipelines and the two probe
passes; model_build_s = building and compiling the model inside the strategy scope; compile_s =
None (tracing happens inside the warm-up epoch and cannot be isolated from `fit`); eval_total_s =
sum of per-epoch eval times; final_eval_s = the final prediction pass.
"""

from __future__ import annotations

from parallel_vision.config import RunConfig
from parallel_vision.engines.keras.outputs import finish
from parallel_vision.engines.levers import resolve_precision
from parallel_vision.engines.tensorflow.data import load_data
from parallel_vision.engines.tensorflow.evaluate import predict_with_saved_weights
from parallel_vision.engines.tensorflow.model import compiled_model
from parallel_vision.engines.tensorflow.outputs import environment
from parallel_vision.engines.tensorflow.resume import restore
from parallel_vision.engines.tensorflow.setup import start_run
from parallel_vision.engines.tensorflow.train import fit


def train_and_evaluate(cfg: RunConfig) -> None:
    """Run `cfg` in this process (one worker of it for `multiworker`); the writer saves the outputs."""
    run = start_run(resolve_precision(cfg, on_gpu=False))  # auto is fp32 here: bf16 not measured faster
    with run.timed("data_load_s"):
        data = load_data(run)
    with run.timed("model_build_s"):
        model = compiled_model(run, data.input_shape)
    restore(run, model)
    stopped = fit(run, model, data)  # None once every epoch is done
    finish(run, stopped or predict_with_saved_weights(run, model, data), environment)
