"""Timing, formatting and plain-text tables shared by the benchmark modules.

Every timing is the median of N runs (N=5 when the first run took under a second, else 3),
each run preceded by ``gc.collect()`` and measured with ``time.perf_counter``. Setup (building
inputs, prefilling a replica) is never inside the timed region.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FAST_REPEAT = 5
SLOW_REPEAT = 3
SLOW_SECONDS = 1.0
INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)


@dataclass
class Settings:
    """Process-wide knobs set from the command line."""

    scale: float = 1.0
    gc_off: bool = False


SETTINGS = Settings()


def scaled(n: int, minimum: int = 1) -> int:
    """``n`` times the size scale (``--quick`` runs everything at a tenth)."""
    return max(minimum, int(n * SETTINGS.scale))


def progress(message: str) -> None:
    """A progress line on stderr, so stdout holds only the tables."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


# -- timing -------------------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds of each run of one measured phase."""

    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def n(self) -> int:
        return len(self.runs)


def repeat_for(first_run: float) -> int:
    return FAST_REPEAT if first_run < SLOW_SECONDS else SLOW_REPEAT


def _timed(phase: Callable[[Any], Any], ctx: Any) -> float:
    gc.collect()
    if SETTINGS.gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        phase(ctx)
        return time.perf_counter() - t0
    finally:
        if SETTINGS.gc_off:
            gc.enable()


def measure_phases(
    setup: Callable[[], Any],
    *phases: Callable[[Any], Any],
    repeat: int | None = None,
) -> tuple[list[Timing], Any]:
    """Time ``phases`` run one after another on a fresh ``setup()`` result, N times.

    Returns one `Timing` per phase and the context of the last run (phases may store their
    results in it). The previous run's context is dropped before the next setup.
    """
    timings = [Timing() for _ in phases]
    ctx: Any = None
    runs = 0
    while True:
        ctx = None
        ctx = setup()
        total = 0.0
        for timing, phase in zip(timings, phases, strict=True):
            dt = _timed(phase, ctx)
            timing.runs.append(dt)
            total += dt
        runs += 1
        if repeat is None:
            repeat = repeat_for(total)
        if runs >= repeat:
            return timings, ctx


def measure(
    run: Callable[[Any], Any],
    setup: Callable[[], Any] | None = None,
    *,
    repeat: int | None = None,
) -> tuple[Timing, Any]:
    """Median-of-N timing of ``run(setup())``; returns the timing and the last run's result."""
    box: dict[str, Any] = {}

    def make() -> dict[str, Any]:
        box.clear()
        box["arg"] = setup() if setup is not None else None
        return box

    def phase(b: dict[str, Any]) -> None:
        b["out"] = run(b["arg"])

    (timing,), last = measure_phases(make, phase, repeat=repeat)
    return timing, last["out"]


def measure_call(fn: Callable[[], Any], *, min_batch: float = 0.02) -> Timing:
    """Per-call time of a side-effect-free call, looped so each timed batch lasts ~20 ms."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    loops = 1 if first >= min_batch else min(10_000, max(1, int(min_batch / max(first, 1e-7))))
    timing = Timing()
    if loops == 1:
        timing.runs.append(first)
    repeat = repeat_for(first)
    while timing.n < repeat:
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        timing.runs.append((time.perf_counter() - t0) / loops)
    return timing


# -- formatting ---------------------------------------------------------------------------


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds with about three significant digits."""
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    if ms >= 0.01:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def fmt_rate(per_second: float | None, unit: str = "") -> str:
    """A rate such as ``1.23M`` or ``45.6k``."""
    if per_second is None:
        return "-"
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M{unit}"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k{unit}"
    return f"{per_second:.0f}{unit}"


def fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_float(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_mbs(nbytes: int, seconds: float) -> str:
    """Throughput in MB/s (10**6 bytes)."""
    return f"{nbytes / seconds / 1e6:.1f}" if seconds > 0 else "-"


def fmt_size(n: int) -> str:
    """A count such as ``10k`` or ``1M``."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


class Table:
    """A plain-text table: first column left-aligned, the rest right-aligned by default."""

    def __init__(self, title: str, columns: Sequence[str], align: str | None = None) -> None:
        self.title = title
        self.columns = list(columns)
        self.align = align if align is not None else "l" + "r" * (len(columns) - 1)
        self.rows: list[list[str]] = []
        self.notes: list[str] = []

    def add(self, *cells: object) -> None:
        row = ["" if c is None else str(c) for c in cells]
        row += [""] * (len(self.columns) - len(row))
        self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row[: len(widths)]):
                widths[i] = max(widths[i], len(cell))

        def line(cells: Sequence[str]) -> str:
            out = []
            for i, (cell, w) in enumerate(zip(cells, widths, strict=False)):
                out.append(cell.ljust(w) if self.align[i] == "l" else cell.rjust(w))
            return "  ".join(out).rstrip()

        rule = "-" * len(line(["-" * w for w in widths]))
        parts = [self.title, rule, line(self.columns), rule]
        parts += [line(r) for r in self.rows]
        parts.append(rule)
        parts += [f"  {n}" for n in self.notes]
        return "\n".join(parts)

    def print(self) -> None:
        print(self.render(), end="\n\n", flush=True)


# -- targets ------------------------------------------------------------------------------


@dataclass
class Target:
    goal: str
    measured: str
    reference: str
    ok: bool | None


@dataclass
class Targets:
    """The project's performance targets, collected as the benchmarks run."""

    items: list[Target] = field(default_factory=list)

    def add(self, goal: str, measured: str, reference: str, ok: bool | None) -> str:
        self.items.append(Target(goal, measured, reference, ok))
        return verdict(ok)

    def table(self) -> Table:
        t = Table("Targets", ["target", "measured", "reference", "status"], "lllr")
        for item in self.items:
            t.add(item.goal, item.measured, item.reference, verdict(item.ok))
        return t


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


# -- shared inputs --------------------------------------------------------------------------


def dataset(n: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``n`` distinct random int64 dataset ids (shuffled) and labels 0..9."""
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(INT64_MIN, INT64_MAX, size=n, dtype=np.int64))
    while len(ids) < n:  # a collision among 2**64 values: astronomically rare, but be exact
        more = rng.integers(INT64_MIN, INT64_MAX, size=n - len(ids), dtype=np.int64)
        ids = np.unique(np.concatenate([ids, more]))
    return rng.permutation(ids), rng.integers(0, 10, size=n, dtype=np.int64)


# -- child processes ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerResult:
    """What a timed-out-able child run gave back."""

    status: str  # "ok", "timeout", "failed (...)"
    runs: list[float]
    nbytes: int | None
    detail: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child ``python -m benchmarks...`` (or a server): the
    project's ``src`` and root on ``PYTHONPATH`` before whatever was there, plus ``extra``."""
    env = dict(os.environ, **extra)
    paths = (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def run_worker(args: Sequence[str], timeout: float) -> WorkerResult:
    """Run ``python -m benchmarks._pycrdt_worker *args`` with a wall-clock limit."""
    env = child_env()
    cmd = [sys.executable, "-m", "benchmarks._pycrdt_worker", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env)
        try:
            rc = proc.wait(timeout=timeout)
            if rc == 0:
                status = "ok"
            elif rc < 0:
                status = f"failed (killed by signal {-rc})"
            else:
                status = f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = "timeout"
        out.seek(0)
        err.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
        stderr = err.read().decode(errors="replace").strip().splitlines()
    runs: list[float] = []
    nbytes = None
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        runs.append(float(rec["seconds"]))
        nbytes = int(rec["bytes"])
    detail = stderr[-1][:120] if stderr and status != "ok" else ""
    return WorkerResult(status, runs, nbytes, detail)
