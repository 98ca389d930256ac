"""Model definitions: one module per framework, imported only inside an engine process, and
`init`, the framework-free initial weights and optimiser constants of `--init aligned`."""
