"""``oobleck report``: an artifact's compile report as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys

__all__ = ["cmd_report"]


def cmd_report(args: argparse.Namespace) -> int:
    """Write an artifact's compile report (before/after, verdict, candidates, plot, prompt, cost) as HTML."""
    from oobleck.report import write_report

    written = write_report(args.artifact, args.output, title=args.title)
    sys.stderr.write(f"wrote {written}  (open it in a browser; no script, no external file)\n")
    return 0
