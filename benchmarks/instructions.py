"""Table 4b: CPU instructions per edit, stage by stage, convergent beside pycrdt (Yrs).

Wall-clock figures on a shared two-core VM drift by 15 % and more between runs (Table 4's
ratios moved by up to 2x); instruction counts do not. Each cell runs
``benchmarks._edit_stages`` under ``valgrind --tool=callgrind`` twice, with the stages up to
this one and up to the one before, and divides the difference by the number of edits, so
imports and setup cancel out. Python's hash seed is fixed, so a rerun gives the same counts
to within about 0.5 %.

valgrind is Debian's ``valgrind`` package; without it the table says so and is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from benchmarks.harness import ROOT, Table, child_env, fmt_int, progress, scaled

EDITS = 1000
STAGES = (
    "the writer: the edit and the frame it sends",
    "the server: checks, commit, ack and forwarded frame",
    "another client: apply the frame, read the value",
)
SYSTEMS = ("convergent", "pycrdt")
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _instructions(system: str, stages: int, edits: int) -> int:
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks._edit_stages",
            system,
            str(stages),
            str(edits),
        ],
        capture_output=True,
        text=True,
        env=child_env(PYTHONHASHSEED="0"),
        cwd=ROOT,
        timeout=1800,
        check=False,
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{system} stages {stages}: {done.stderr.strip()[-300:]}")
    return int(found.group(1))


def table4b(errors: list[str]) -> Table:
    t = Table(
        "Table 4b: CPU instructions per edit, by stage (callgrind; one map key set to a "
        "float, sockets left out)",
        ["stage", "convergent", "pycrdt (Yrs)", "convergent / pycrdt"],
        "lrrr",
    )
    if shutil.which("valgrind") is None:
        t.note("skipped: valgrind is not installed (apt-get install valgrind)")
        return t
    edits = scaled(EDITS, minimum=100)
    runs = [(s, k) for s in SYSTEMS for k in range(len(STAGES) + 1)]
    progress(f"table 4b: {len(runs)} runs under callgrind, {edits} edits each")
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            counts = dict(
                zip(runs, pool.map(lambda r: _instructions(r[0], r[1], edits), runs), strict=True)
            )
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        errors.append(f"Table 4b: {err}")
        t.note(f"ERROR: {err}")
        return t
    per = {
        (s, k): (counts[s, k] - counts[s, k - 1]) / edits
        for s in SYSTEMS
        for k in range(1, len(STAGES) + 1)
    }
    for k, label in enumerate(STAGES, start=1):
        c, y = per["convergent", k], per["pycrdt", k]
        t.add(label, fmt_int(round(c)), fmt_int(round(y)), f"{c / y:.1f}x")
    total = {s: sum(per[s, k] for k in range(1, len(STAGES) + 1)) for s in SYSTEMS}
    t.add(
        "whole path",
        fmt_int(round(total["convergent"])),
        fmt_int(round(total["pycrdt"])),
        f"{total['convergent'] / total['pycrdt']:.1f}x",
    )
    t.note(
        "convergent's server stage commits to a SQLite file; pycrdt's room keeps the "
        "document in memory. Each count is (run through stage k) - (run through stage k-1), "
        f"over {edits:,} edits after 30 warm-up edits."
    )
    return t
