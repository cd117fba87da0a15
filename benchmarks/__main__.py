"""``python -m benchmarks``: the benchmark suite (``make bench``).

Table 1 times every mutator of every type through a `Replica`, with join, encode and decode;
Table 2 runs peer workloads side by side with pycrdt (Yrs) in the same process; Table 3 times
the Run document durable in SQLite (import, edits, metrics, reopen, join, catch-up); Table 4
runs the hub over real sockets beside pycrdt-websocket (latency, fan-out, catch-up, SIGKILL
durability), and Table 4b counts the CPU instructions of one edit's path, stage by stage,
beside pycrdt under callgrind; Table 6 loads the dashboard in headless chromium (first
paint of a run with 100,000 metric points and 2,000 samples, an edit to another browser);
Table 7 trains the digits with K workers over the weights CRDT (simulated and as processes
through a hub) against synchronous data parallelism and gloo DDP; a last table lists the
project's performance targets. Tables go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib import metadata

from benchmarks import core, dashboard, hub, instructions, run, training, weights
from benchmarks.harness import SETTINGS, Targets, progress
from benchmarks.peer import Peer


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        choices=[
            "types",
            "peers",
            "run",
            "hub",
            "instructions",
            "training",
            "dashboard",
            "weights",
        ],
        help=(
            "run only Table 1 (types), Table 2 (peers), Table 3 (run: the durable document) "
            "or Table 4 (hub: server and clients over WebSocket, with Table 4b), Table 4b "
            "(instructions: one edit's path under callgrind), Table 5 (training), "
            "Table 6 (dashboard: first paint and edit latency in headless chromium), "
            "Table 7 (weights: decentralized training with the weights CRDT vs DDP)"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every size divided by 10: a smoke test, not numbers to compare",
    )
    parser.add_argument(
        "--gc-off", action="store_true", help="disable the garbage collector inside timed regions"
    )
    parser.add_argument(
        "--pycrdt-bulk-all",
        action="store_true",
        help="try every pycrdt bulk-extend size even after a smaller one got no run done",
    )
    args = parser.parse_args(argv)
    SETTINGS.scale = 0.1 if args.quick else 1.0
    SETTINGS.gc_off = args.gc_off

    import numpy as np

    started = time.perf_counter()
    print(
        f"convergent benchmarks  python {platform.python_version()}  numpy {np.__version__}  "
        f"pycrdt {_version('pycrdt')}  {platform.machine()}  {os.cpu_count()} cpus"
        f"{'  QUICK (sizes / 10)' if args.quick else ''}"
        f"{'  gc off while timing' if args.gc_off else ''}",
        end="\n\n",
        flush=True,
    )
    errors: list[str] = []
    targets = Targets()
    if args.only in (None, "types"):
        core.table1(errors).print()
        core.table1b(errors).print()
    if args.only in (None, "peers"):
        Peer(targets, errors, bulk_all=args.pycrdt_bulk_all).run()
    if args.only in (None, "run"):
        run.table3(errors).print()
    if args.only in (None, "hub"):
        hub.table4(targets, errors).print()
    if args.only in (None, "hub", "instructions"):
        instructions.table4b(errors).print()
    if args.only in (None, "training"):
        training.table5(errors).print()
    if args.only in (None, "dashboard"):
        dashboard.table6(errors).print()
    if args.only in (None, "weights"):
        weights.table7(errors).print()
    if args.only in (None, "peers", "hub"):
        targets.table().print()
    for err in errors:
        print(f"ERROR in {err}", flush=True)
    progress(f"done in {time.perf_counter() - started:.0f} s")
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
