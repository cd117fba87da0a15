"""The ``convergent`` command line.

Only ``convergent demo`` exists until the hub and the trainer land (later layers); it shows
the core at work: two people edit one run's shared state while offline, swap the deltas as
bytes, and both end with the same state, with the concurrent config edits surfaced.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
        help="two offline replicas edit concurrently, merge, and show the conflicts",
        description=(
            "Two replicas (alice and bob) edit a run's config, dataset and notes while "
            "offline, exchange their deltas as bytes, and print the converged state with "
            "the surfaced conflicts."
        ),
    )
    demo.add_argument("--samples", type=int, default=1797, help="dataset ids to bulk-add")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.samples < 0:
            parser.error("--samples must be >= 0")
        run_demo(args.samples, out=sys.stdout)
        return 0
    parser.print_help()
    return 0
