"""Table 3: the Run document, durable in SQLite (``convergent.open``).

Four stores, each built through the public API in a fresh file (its own temporary folder):
a dataset imported with one ``run.dataset.add_many`` call, config edits and metric points
written one committed op per call, then replicas joining two of those stores and catching
up on edits made while they were offline. Every timed call goes through SQLite (WAL,
``durability="normal"``, the default): an edit is committed to the file before it returns.
Bytes on disk are the store file plus its ``-wal`` after ``run.close()``.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

import convergent
from benchmarks.harness import (
    Table,
    Timing,
    fmt_int,
    fmt_ms,
    fmt_rate,
    fmt_size,
    measure_phases,
    progress,
    repeat_for,
    scaled,
)
from convergent.run import Float, Run

# A workload whose first run takes longer than this is run once, not repeated.
ONCE_OVER_S = 20.0
METRICS = 10
LR = {"lr": Float(0.1, min=0.0)}

Ctx = dict[str, Any]


def on_disk(path: str) -> int:
    """Bytes of a store file and its write-ahead log (call after ``run.close()``)."""
    wal = path + "-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


class Stores:
    """Fresh store paths, each in its own temporary folder; `release` closes what is still
    open and removes the folders."""

    def __init__(self) -> None:
        self._dirs: list[tempfile.TemporaryDirectory[str]] = []
        self._runs: list[Run] = []

    def path(self) -> str:
        folder = tempfile.TemporaryDirectory(prefix="convergent-bench-")
        self._dirs.append(folder)
        return os.path.join(folder.name, "run.convergent")

    def open(self, path: str, **kwargs: Any) -> Run:
        run = convergent.open(path, **kwargs)
        self._runs.append(run)
        return run

    def release(self) -> None:
        for run in self._runs:
            run.close()
        for folder in self._dirs:
            folder.cleanup()
        self._runs.clear()
        self._dirs.clear()


def measure_capped(
    setup: Callable[[], Ctx], *phases: Callable[[Ctx], Any]
) -> tuple[list[Timing], Ctx]:
    """`measure_phases`, except that a workload whose first run took over ``ONCE_OVER_S``
    seconds is not repeated."""
    timings, ctx = measure_phases(setup, *phases, repeat=1)
    total = sum(t.runs[0] for t in timings)
    if total > ONCE_OVER_S:
        return timings, ctx
    more, ctx = measure_phases(setup, *phases, repeat=repeat_for(total) - 1)
    for t, m in zip(timings, more, strict=True):
        t.runs += m.runs
    return timings, ctx


def _per(nbytes: int, items: int) -> str:
    return f"{nbytes / items:,.1f}" if items else "-"


COLUMNS = ["store", "operation", "items", "runs", "ms", "rate", "bytes", "B/item", "check"]


class RunTable:
    """Builds Table 3 section by section; later sections reuse the stores of earlier ones."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.samples = scaled(100_000, 100)
        self.edits = scaled(10_000, 100)
        self.calls = scaled(100_000, 100)
        self.catch_up = scaled(1_000, 10)
        self.table = Table(
            "Table 3: the Run document, durable in SQLite (convergent.open, one file per store)",
            COLUMNS,
            "llrrrrrrl",
        )
        self.dataset_path: str | None = None
        self.config_path: str | None = None
        self.metrics_once = False

    def row(
        self,
        store: str,
        operation: str,
        items: int | str | None = None,
        timing: Timing | None = None,
        rate: str = "",
        nbytes: int | None = None,
        per_item: int | None = None,
        check: str = "",
    ) -> None:
        self.table.add(
            store,
            operation,
            fmt_int(items) if isinstance(items, int) else (items or ""),
            timing.n if timing is not None else "",
            fmt_ms(timing.median) if timing is not None else "",
            rate,
            fmt_int(nbytes) if nbytes is not None else "",
            _per(nbytes, per_item) if nbytes is not None and per_item else "",
            check,
        )

    def check(self, section: str, problems: list[str]) -> str:
        if not problems:
            return "ok"
        self.errors.append(f"Table 3 {section}: " + "; ".join(problems))
        return "FAIL: " + "; ".join(problems)

    def build(self) -> Table:
        started = time.perf_counter()
        keep = Stores()  # the dataset and config stores, joined by the exchange section
        sections: list[tuple[str, Callable[[Stores], None]]] = [
            ("dataset", self.dataset),
            ("config", self.config),
            ("metrics", self.metrics),
            ("exchange", self.exchange),
        ]
        try:
            for name, section in sections:
                progress(f"table 3: {name}")
                scratch = Stores()
                try:
                    section(keep if name in ("dataset", "config") else scratch)
                except Exception as exc:
                    self.errors.append(f"Table 3 {name}:\n{traceback.format_exc()}")
                    self.table.add(name, "ERROR", f"{type(exc).__name__}: {exc}"[:80])
                finally:
                    scratch.release()
        finally:
            keep.release()
        self.notes()
        self.table.note(f"Table 3 wall time: {time.perf_counter() - started:.0f} s.")
        return self.table

    # -- dataset ---------------------------------------------------------------------------
    def dataset(self, stores: Stores) -> None:
        n = self.samples
        rng = np.random.default_rng(3)
        x = rng.integers(0, 17, size=(n, 8, 8), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.int64)

        def setup() -> Ctx:
            path = stores.path()
            return {"path": path, "run": stores.open(path)}

        def add(c: Ctx) -> None:
            c["ids"] = c["run"].dataset.add_many(x, y)

        def labels(c: Ctx) -> None:
            c["labels"] = c["run"].dataset.labels()

        def close(c: Ctx) -> None:
            c["run"].close()

        def reopen(c: Ctx) -> None:
            c["again"] = stores.open(c["path"])
            c["len"] = len(c["again"].dataset)

        def close_again(c: Ctx) -> None:
            c["again"].close()

        (t_add, t_labels, t_close, t_reopen, _), c = measure_phases(
            setup, add, labels, close, reopen, close_again
        )
        self.dataset_path = c["path"]
        nbytes = on_disk(c["path"])
        problems = []
        if c["len"] != n:
            problems.append(f"reopened with {c['len']} samples, not {n}")
        if not np.array_equal(np.bincount(c["labels"], minlength=10), np.bincount(y, minlength=10)):
            problems.append("labels read back differ")
        store = f"dataset {fmt_size(n)}"
        self.row(
            store,
            "dataset.add_many(x uint8 (n,8,8), labels): 1 op",
            n,
            t_add,
            fmt_rate(n / t_add.median, " samples/s"),
        )
        self.row(store, "close(); file + -wal on disk", None, t_close, "", nbytes, n)
        self.row(store, "dataset.labels() (first read)", n, t_labels)
        self.row(
            store,
            "reopen: open() + len(dataset)",
            n,
            t_reopen,
            check=self.check(store, problems),
        )

    # -- config ----------------------------------------------------------------------------
    def config(self, stores: Stores) -> None:
        n = self.edits

        def setup() -> Ctx:
            path = stores.path()
            return {"path": path, "run": stores.open(path, config=LR)}

        def edits(c: Ctx) -> None:
            config = c["run"].config
            for i in range(n):
                config["lr"] = i / n

        def close(c: Ctx) -> None:
            c["run"].close()

        def reopen(c: Ctx) -> None:
            c["again"] = stores.open(c["path"])
            c["lr"] = c["again"].config["lr"]

        def close_again(c: Ctx) -> None:
            c["again"].close()

        (t_edits, t_close, t_reopen, _), c = measure_phases(
            setup, edits, close, reopen, close_again
        )
        self.config_path = c["path"]
        nbytes = on_disk(c["path"])
        problems = [] if c["lr"] == (n - 1) / n else [f"reopened lr {c['lr']}"]
        store = f"config {fmt_size(n)}"
        self.row(
            store,
            'config["lr"] = i / n: 1 op each',
            n,
            t_edits,
            fmt_rate(n / t_edits.median, " edits/s"),
        )
        self.row(store, "close(); file + -wal on disk", None, t_close, "", nbytes, n)
        self.row(
            store,
            'reopen: open() + config["lr"]',
            None,
            t_reopen,
            check=self.check(store, problems),
        )

    # -- metrics ---------------------------------------------------------------------------
    def metrics(self, stores: Stores) -> None:
        calls = self.calls
        points = calls * METRICS
        names = [f"m{j}" for j in range(METRICS)]
        values = np.random.default_rng(5).random((calls, METRICS)).tolist()

        def setup() -> Ctx:
            path = stores.path()
            return {"path": path, "run": stores.open(path)}

        def log(c: Ctx) -> None:
            run_log = c["run"].log
            for s, row in enumerate(values):
                run_log(dict(zip(names, row, strict=True)), step=s)

        def close(c: Ctx) -> None:
            c["run"].close()

        (t_log, t_close), c = measure_capped(setup, log, close)
        self.metrics_once = t_log.n == 1
        path = c["path"]
        nbytes = on_disk(path)

        def reopen_setup() -> Ctx:
            return {}

        def reopen(c: Ctx) -> None:
            c["run"] = stores.open(path)

        def read_one(c: Ctx) -> None:
            c["m3"] = c["run"].metrics("m3")

        def read_all(c: Ctx) -> None:
            c["all"] = [c["run"].metrics(name) for name in names]

        def close_again(c: Ctx) -> None:
            c["run"].close()

        (t_reopen, t_one, _), one = measure_phases(reopen_setup, reopen, read_one, close_again)
        (_, t_all, _), every = measure_phases(reopen_setup, reopen, read_all, close_again)
        m3 = one["m3"]
        problems = []
        if len(m3) != calls or not np.array_equal(m3.step, np.arange(calls)):
            problems.append(f"m3 has {len(m3)} points, not steps 0..{calls - 1}")
        elif not np.array_equal(m3.value, np.array(values)[:, 3]):
            problems.append("m3 values differ")
        if sum(len(s) for s in every["all"]) != points:
            problems.append("not every point read back")
        store = f"metrics {fmt_size(points)}"
        self.row(
            store,
            f"log({{m0..m{METRICS - 1}}}, step=s): 1 op each",
            f"{fmt_int(calls)} x {METRICS}",
            t_log,
            f"{fmt_rate(points / t_log.median)} pts/s = {fmt_rate(calls / t_log.median)} calls/s",
        )
        self.row(store, "close(); file + -wal on disk", None, t_close, "", nbytes, points)
        self.row(store, "reopen: open()", None, t_reopen)
        self.row(
            store,
            'metrics("m3") as arrays (after reopen)',
            calls,
            t_one,
            fmt_rate(calls / t_one.median, " pts/s"),
        )
        self.row(
            store,
            f"metrics(m0..m{METRICS - 1}) as arrays (after reopen)",
            points,
            t_all,
            fmt_rate(points / t_all.median, " pts/s"),
            check=self.check(store, problems),
        )

    # -- exchange --------------------------------------------------------------------------
    def exchange(self, stores: Stores) -> None:
        assert self.config_path is not None and self.dataset_path is not None
        # (name, path, what B/item counts: the config store per edit, the dataset per sample)
        sources = [
            (f"config {fmt_size(self.edits)}", self.config_path, None),
            (f"dataset {fmt_size(self.samples)}", self.dataset_path, self.samples),
        ]
        for name, source, samples in sources:
            first = stores.open(source)
            try:
                self.join(stores, name, first, samples)
                self.catch_up_after_join(stores, name, first)
            finally:
                first.close()

    def join(self, stores: Stores, name: str, first: Run, samples: int | None) -> None:
        ops = first.version.ops
        items = f"{fmt_int(ops)} ops" if samples is None else f"{fmt_int(samples)} samples"
        per = ops if samples is None else samples

        def setup() -> Ctx:
            return {"path": stores.path()}

        def export(c: Ctx) -> None:
            c["blob"] = first.export_since()

        def join(c: Ctx) -> None:
            c["second"] = stores.open(c["path"], join=c["blob"])

        def close(c: Ctx) -> None:
            c["second"].close()

        (t_export, t_join, t_close), c = measure_phases(setup, export, join, close)
        nbytes = len(c["blob"])
        problems = []
        if c["second"].version.ops != ops:
            problems.append(f"joined with {c['second'].version.ops} of {ops} ops")
        store = f"join {name}"
        self.row(store, "first.export_since(): whole history", items, t_export, "", nbytes, per)
        self.row(store, "open(path2, join=bytes)", items, t_join)
        self.row(
            store,
            "second.close(); file + -wal on disk",
            None,
            t_close,
            "",
            on_disk(c["path"]),
            per,
            check=self.check(store, problems),
        )

    def catch_up_after_join(self, stores: Stores, name: str, first: Run) -> None:
        n = self.catch_up
        first.config.declare(LR)  # a no-op where the key is declared alike
        path2 = stores.path()
        stores.open(path2, join=first.export_since()).close()
        edits = iter(range(1_000_000_000))

        def setup() -> Ctx:
            # The second replica is offline (closed) while the first makes n edits.
            config = first.config
            for _ in range(n):
                config["lr"] = next(edits) / 1e9
            return {"second": stores.open(path2)}

        def export(c: Ctx) -> None:
            c["blob"] = first.export_since(c["second"].version)

        def merge(c: Ctx) -> None:
            c["new"] = c["second"].merge_bytes(c["blob"])

        def close(c: Ctx) -> None:
            c["lr"] = c["second"].config["lr"]
            c["second"].close()

        (t_export, t_merge, _), c = measure_phases(setup, export, merge, close)
        nbytes = len(c["blob"])
        problems = []
        if c["new"] != n:
            problems.append(f"merged {c['new']} ops, not {n}")
        if c["lr"] != first.config["lr"]:
            problems.append("replicas differ after the merge")
        store = f"catch-up {name}"
        self.row(
            store,
            f"first.export_since(second.version): {fmt_size(n)} edits",
            f"{fmt_int(n)} ops",
            t_export,
            "",
            nbytes,
            n,
        )
        self.row(
            store,
            "second.merge_bytes(bytes)",
            f"{fmt_int(n)} ops",
            t_merge,
            fmt_rate(n / t_merge.median, " ops/s"),
            check=self.check(store, problems),
        )

    def notes(self) -> None:
        t = self.table
        t.note(
            "ms: median of the runs (5 when a run's phases took under 1 s together, else 3);"
            " each run starts from a fresh file. Every edit is committed to SQLite (WAL,"
            ' durability="normal") before the call returns.'
        )
        t.note(
            "bytes: on disk = store file + -wal after close() (close checkpoints the WAL into"
            " the file); B/item = per sample, edit, point or op. Exchange rows: bytes ="
            " len(export_since(...)), the bytes a replica would send."
        )
        t.note(
            "reopen: convergent.open() of the closed file (quick_check, snapshot decode, replay"
            " of ops after it) plus the read shown; reads 'after reopen' start from a cold"
            " cache, so they include building the arrays."
        )
        once = (
            f" Ran once: the first run took over {ONCE_OVER_S:.0f} s." if self.metrics_once else ""
        )
        t.note(
            f"metrics: {fmt_int(self.calls)} run.log calls of {METRICS} points each, one"
            f" committed op per call.{once}"
        )
        t.note(
            "join: a new file joins with open(path2, join=first.export_since()); catch-up: the"
            f" joined replica is closed while the first makes {fmt_int(self.catch_up)} config"
            " edits, then reopens and merges first.export_since(second.version) (each run adds"
            f" {fmt_int(self.catch_up)} more edits to the first replica's history)."
        )


def table3(errors: list[str]) -> Table:
    return RunTable(errors).build()
