"""The package version, in a module of its own so that any module can read it without importing
the package's `__init__` (which would make every such import a cycle through the launcher)."""

__version__ = "0.1.0"
