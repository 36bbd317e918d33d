"""The ``oobleck`` command: compile, run, evaluate, inspect, diff, report and serve frozen programs.

Results go to stdout (JSON for machines, plain text for people); progress and errors go to
stderr. Exit status: 0 on success, 1 on an error (or, for ``diff``, when the artifacts differ),
2 on a usage error.
"""

from oobleck.cli._parser import build_parser, main

__all__ = ["build_parser", "main"]
