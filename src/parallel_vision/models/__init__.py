"""Model definitions: one module per framework, imported only inside an engine process."""
