"""Model definitions: one module per framework and model, imported only inside an engine process;
`catalog`, the framework-free model zoo (names, layer descriptions, parameter and FLOP costs); and
`init`, the framework-free initial weights and optimiser constants of `--init aligned`.

Builders: `torch_zoo.build_torch_model` / `keras_zoo.build_keras_model` for any `catalog.MODEL_NAMES`
model (docs/models.md)."""
