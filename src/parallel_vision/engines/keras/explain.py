"""Attribution maps of a run's model.keras and their deletion/insertion curves, on the backend it was trained
with: `pvision explain`'s Keras child (`python -m parallel_vision.engines.keras.explain RUN FOLDER`; explain/run.py
writes FOLDER, explain/child.py reads it and writes maps.npz and timings.json).

No maintained Keras 3 attribution library covers both backends, so the methods are the framework-free numpy of
`explain.attribution` over one gradient module per backend: `engines.tensorflow.gradients` (tf.GradientTape)
and `engines.jax.gradients` (jax.grad over stateless_call). Keras is imported only in `explain`, after the
backend is set from the run's config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from parallel_vision.config import RunConfig
from parallel_vision.engines.keras.predict import load_saved
from parallel_vision.engines.predicting import explain_main
from parallel_vision.engines.workload import workload
from parallel_vision.errors import ConfigError
from parallel_vision.explain import attribution, child


def gradcam_layer(keras: Any, model: Any, model_name: str) -> Any:
    """The layer the torch child explains (engines/torch/explain.py): paper_cnn: the ReLU of its last conv block
    (14×14 on MNIST, the last ReLU before Flatten); resnet18: `layer3`, whose output is `layer3.1.relu2`."""
    if model_name == "paper_cnn":
        before_flatten = model.layers[:[type(la) for la in model.layers].index(keras.layers.Flatten)]
        return [la for la in before_flatten if isinstance(la, keras.layers.ReLU)][-1]
    if model_name == "resnet18":
        return model.get_layer("layer3.1.relu2")
    raise ConfigError(f"gradcam needs a convolutional model; {model_name} has no conv layer")


def split_at(keras: Any, model: Any, layer: Any) -> tuple[Any, Any]:
    """(head, tail): the model up to `layer`'s output and from there to the logits, sharing its weights."""
    if isinstance(model, keras.Sequential):  # a Sequential has no symbolic outputs to cut at
        cut = model.layers.index(layer) + 1
        head = keras.Sequential([keras.Input(model.input_shape[1:]), *model.layers[:cut]])
        return head, keras.Sequential([keras.Input(head.output_shape[1:]), *model.layers[cut:]])
    return keras.Model(model.inputs, layer.output), keras.Model(layer.output, model.outputs)


def randomised(keras: Any, cfg: RunConfig, seed: int) -> Any:
    """The same architecture with Keras' initial (untrained) weights, seeded: the sanity check's model."""
    from parallel_vision.models.keras_zoo import build_keras_model

    shape = workload(cfg)
    keras.utils.set_random_seed(seed)
    return build_keras_model(cfg.model, (shape.image_size, shape.image_size, shape.channels), shape.classes,
                             cfg.dropout)


def functions(keras: Any, cfg: RunConfig, model: Any) -> attribution.Model:
    """The backend's gradient callables for `model` (Grad-CAM's layer split off where the model has one)."""
    if cfg.framework == "jax":
        from parallel_vision.engines.jax import gradients
    else:
        from parallel_vision.engines.tensorflow import gradients
    split = None if cfg.model == "wide_mlp" else split_at(keras, model, gradcam_layer(keras, model, cfg.model))
    return gradients.functions(model, split)


def explain(run: Path, folder: Path) -> None:
    cfg = RunConfig.from_json((run / "config.json").read_text())
    keras, model = load_saved(run, cfg)
    settings = child.settings_of(folder)
    untrained = randomised(keras, cfg, settings.seed)
    child.explain(folder, child.NumpyExplainer(functions(keras, cfg, model), settings),
                  child.NumpyExplainer(functions(keras, cfg, untrained), settings))


if __name__ == "__main__":
    sys.exit(explain_main(sys.argv, explain))
