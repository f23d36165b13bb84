"""The command line: `app` parses and turns any failure into one line, `simulate` and `real` call the library."""

from fedsim.cli.app import main

__all__ = ["main"]
