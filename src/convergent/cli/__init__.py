"""The ``convergent`` command line.

Only ``convergent demo`` exists until the hub and the trainer land (later layers); it shows
the Run document at work: two people edit one run in two local files while offline, swap what
the other lacks as bytes, and both end with the same run, concurrent config edits surfaced.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from convergent import __version__
from convergent.cli.demo import run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convergent`` script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="convergent",
        description="Real-time collaborative model training on CRDTs.",
    )
    parser.add_argument("--version", action="version", version=f"convergent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="two offline replicas of a run edit concurrently, merge, show the conflicts",
        description=(
            "Two replicas (alice and bob) of one run, each in its own SQLite file, edit the "
            "config, dataset, notes and metrics while offline, exchange what the other lacks "
            "as bytes, and print the converged run with the surfaced conflicts."
        ),
    )
    demo.add_argument(
        "--dir", type=Path, default=None, help="keep the two run files in this folder"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(args.dir, out=sys.stdout)
        return 0
    parser.print_help()
    return 0
