"""python -m profiler: the command line (parser, one function per command, plain-text renderings of a run)."""
from profiler.cli.commands import main

__all__ = ["main"]
