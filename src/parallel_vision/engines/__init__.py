"""Training engines. Only the engine modules import a framework, and only in their own process."""
