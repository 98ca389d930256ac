"""`python -m parallel_vision` is the same command line as `pvision` (torchrun uses this)."""

from parallel_vision.cli import main

if __name__ == "__main__":
    main()
