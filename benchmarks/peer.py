"""Table 2: peer workloads, convergent side by side with pycrdt (Yrs), in the same process.

pycrdt is the ``bench`` extra; without it every pycrdt cell reads ``n/a``. Workloads that
may run away in pycrdt (a bulk ``Array.extend``, a million-key map) run in a child process
with a wall-clock limit, so a timeout or an abort is reported instead of hanging the suite.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.harness import (
    Table,
    Targets,
    Timing,
    WorkerResult,
    dataset,
    fmt_float,
    fmt_int,
    fmt_ms,
    fmt_rate,
    fmt_size,
    measure,
    measure_phases,
    progress,
    run_worker,
    scaled,
    verdict,
)
from convergent.codec import decode, encode
from convergent.crdt import RGA, AppendLog, AWSet, ORMap, Replica, ReplicaId

try:
    import pycrdt
    from pycrdt import Array, Doc, Map
except ImportError:  # the bench extra is not installed
    pycrdt = None

HAVE_PYCRDT = pycrdt is not None
WORKER_TIMEOUT = 60.0
NA = "n/a"


def _pycrdt_map_sets(keys: list[str]) -> tuple[Any, Any]:
    """pycrdt's side of a map-set workload: one transaction per ``m[keys[i]] = i``."""

    def py(dm: tuple[Any, Any]) -> Any:
        doc, m = dm
        for i, k in enumerate(keys):
            with doc.transaction():
                m[k] = i
        return doc

    def py_setup() -> tuple[Any, Any]:
        doc = Doc()
        return doc, doc.get("m", type=Map)

    return py, py_setup


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


class Peer:
    """Runs sections (a) to (h); later sections reuse the results of earlier ones."""

    def __init__(self, targets: Targets, errors: list[str], bulk_all: bool = False) -> None:
        self.targets = targets
        self.errors = errors
        self.bulk_all = bulk_all
        self.n = scaled(100_000)
        self.conv_map: Replica[ORMap] | None = None
        self.conv_list: Replica[RGA] | None = None
        self.conv_list_bulk: Replica[RGA] | None = None
        self.py_map: Any = None
        self.py_list: Any = None
        self.py_bulk: tuple[int, WorkerResult] | None = None

    def run(self) -> None:
        sections: list[tuple[str, Callable[[], Table]]] = [
            ("(a) map key sets", self.section_a),
            ("(b) list appends", self.section_b),
            ("(c) encoded sizes", self.section_c),
            ("(d) load", self.section_d),
            ("(e) two-replica sync", self.section_e),
            ("(f) bulk dataset ids", self.section_f),
            ("(g) overwrites", self.section_g),
            ("(h) numeric points", self.section_h),
        ]
        for name, section in sections:
            progress(f"table 2 {name}")
            try:
                table = section()
            except Exception as exc:
                self.errors.append(f"Table 2 {name}:\n{traceback.format_exc()}")
                table = Table(f"Table 2{name}: ERROR", ["error"])
                table.add(f"{type(exc).__name__}: {exc}")
            table.print()

    # -- (a) ------------------------------------------------------------------------------
    def section_a(self) -> Table:
        n = self.n
        keys = [f"k{i}" for i in range(n)]

        def conv(rep: Replica[ORMap]) -> Replica[ORMap]:
            update, mutator = rep.update, ORMap.set
            for i, k in enumerate(keys):
                update(mutator, k, i)
            return rep

        conv_t, self.conv_map = measure(conv, lambda: Replica(ORMap(), ReplicaId(1)))
        conv_rate = n / conv_t.median
        table = Table(
            f"Table 2(a): {fmt_size(n)} single-key map sets (key = f'k{{i}}', value i)",
            ["system", "how", "runs", "median s", "sets/s", "vs pycrdt", "target", "status"],
            "llrrrrll",
        )
        table.add(
            "convergent",
            "Replica.update(ORMap.set, k, i) per key",
            conv_t.n,
            f"{conv_t.median:.3f}",
            fmt_rate(conv_rate),
        )
        if HAVE_PYCRDT:
            py_t, self.py_map = measure(*_pycrdt_map_sets(keys))
            py_rate = n / py_t.median
            table.add(
                "pycrdt",
                "with doc.transaction(): m[k] = i",
                py_t.n,
                f"{py_t.median:.3f}",
                fmt_rate(py_rate),
            )
            ok = conv_rate >= py_rate / 3
            status = self.targets.add(
                "single-key sets >= 1/3 of pycrdt's rate",
                f"{fmt_rate(conv_rate)}/s ({conv_rate / py_rate:.2f}x)",
                f"pycrdt {fmt_rate(py_rate)}/s; 1/3 = {fmt_rate(py_rate / 3)}/s",
                ok,
            )
            table.rows[0][5:] = [f"{conv_rate / py_rate:.2f}x", ">= 0.33x", status]
        else:
            table.add("pycrdt", NA)
        return table

    # -- (b) ------------------------------------------------------------------------------
    def section_b(self) -> Table:
        n = self.n
        values = list(range(n))

        def appends(rep: Replica[RGA]) -> None:
            update, mutator = rep.update, RGA.append
            for v in values:
                update(mutator, v)

        def drain(rep: Replica[RGA]) -> None:
            rep.take_outbox()

        (app_t, drain_t), self.conv_list = measure_phases(
            lambda: Replica(RGA(), ReplicaId(1)), appends, drain
        )
        table = Table(
            f"Table 2(b): list appends ({fmt_size(n)} one at a time; bulk at several sizes)",
            ["system", "how", "items", "runs", "median ms", "items/s", "status"],
            "llrrrrl",
        )
        table.add(
            "convergent",
            "Replica.update(RGA.append, v) per item",
            fmt_int(n),
            app_t.n,
            fmt_ms(app_t.median),
            fmt_rate(n / app_t.median),
            "ok",
        )
        table.add(
            "convergent",
            "  then take_outbox() of those deltas",
            fmt_int(n),
            drain_t.n,
            fmt_ms(drain_t.median),
            "",
            "ok",
        )
        if HAVE_PYCRDT:

            def py_setup() -> tuple[Any, Any]:
                doc = Doc()
                return doc, doc.get("a", type=Array)

            def py(da: tuple[Any, Any]) -> Any:
                doc, arr = da
                for v in values:
                    with doc.transaction():
                        arr.append(v)
                return doc

            py_t, self.py_list = measure(py, py_setup)
            table.add(
                "pycrdt",
                "with doc.transaction(): arr.append(v)",
                fmt_int(n),
                py_t.n,
                fmt_ms(py_t.median),
                fmt_rate(n / py_t.median),
                "ok",
            )
        else:
            table.add("pycrdt", NA)
        skip_rest = False
        for nominal in (10_000, 20_000, 40_000, 100_000):
            size = scaled(nominal)
            items = list(range(size))
            progress(f"table 2 (b) bulk extend of {size:,}")
            ext_t, rep = measure(
                lambda r, items=items: _extend(r, items), lambda: Replica(RGA(), ReplicaId(1))
            )
            if size == n:
                self.conv_list_bulk = rep
            table.add(
                "convergent",
                "Replica.update(RGA.extend, items)",
                fmt_int(size),
                ext_t.n,
                fmt_ms(ext_t.median),
                fmt_rate(size / ext_t.median),
                "ok",
            )
            if not HAVE_PYCRDT:
                continue
            if skip_rest:
                table.add("pycrdt", "arr.extend(items), one transaction", fmt_int(size), 0)
                table.rows[-1][6] = "skipped (a smaller size got no run done)"
                continue
            progress(f"pycrdt bulk extend of {size:,} in a child process ({WORKER_TIMEOUT:.0f} s)")
            res = run_worker(["extend", str(size), "3"], WORKER_TIMEOUT)
            if res.runs:
                self.py_bulk = (size, res)
            table.add(
                "pycrdt",
                "arr.extend(items), one transaction",
                fmt_int(size),
                len(res.runs),
                fmt_ms(res.median),
                fmt_rate(size / res.median) if res.median else "-",
                _worker_status(res),
            )
            if not res.runs and not self.bulk_all:
                skip_rest = True
        table.note(
            f"pycrdt bulk runs in a child process per size: up to 3 runs within "
            f"{WORKER_TIMEOUT:.0f} s; the median is over the runs that finished."
        )
        return table

    # -- (c) ------------------------------------------------------------------------------
    def section_c(self) -> Table:
        table = Table(
            "Table 2(c): encoded size of the (a) and (b) results",
            ["workload", "convergent B", "B/item", "pycrdt B", "B/item", "conv/pycrdt", "target"],
            "lrrrrrl",
        )
        n = self.n
        assert self.conv_map is not None and self.conv_list is not None
        conv_map = len(encode(self.conv_map.state))
        py_map = len(self.py_map.get_update()) if self.py_map is not None else None
        status = ""
        if py_map is not None:
            ok = conv_map / n <= py_map / n
            status = self.targets.add(
                "bytes per map key <= pycrdt's (aim 4.5)",
                f"{conv_map / n:.2f} B/key",
                f"pycrdt {py_map / n:.2f} B/key",
                ok,
            )
            status = f"<= pycrdt (aim 4.5): {status}"
        table.add(
            f"map, {fmt_size(n)} keys (a)",
            fmt_int(conv_map),
            fmt_float(conv_map / n),
            fmt_int(py_map) if py_map is not None else NA,
            fmt_float(py_map / n) if py_map is not None else NA,
            _ratio(conv_map, py_map),
            status,
        )
        conv_list = len(encode(self.conv_list.state))
        py_list = len(self.py_list.get_update()) if self.py_list is not None else None
        table.add(
            f"list, {fmt_size(n)} appends one at a time (b)",
            fmt_int(conv_list),
            fmt_float(conv_list / n),
            fmt_int(py_list) if py_list is not None else NA,
            fmt_float(py_list / n) if py_list is not None else NA,
            _ratio(conv_list, py_list),
        )
        if self.conv_list_bulk is not None:
            conv_bulk = len(encode(self.conv_list_bulk.state))
            py_cell, py_per, ratio = NA, NA, "-"
            if self.py_bulk is not None and self.py_bulk[1].nbytes is not None:
                size, res = self.py_bulk
                assert res.nbytes is not None
                py_cell = f"{res.nbytes:,} (at {fmt_size(size)})"
                py_per = fmt_float(res.nbytes / size)
                ratio = _ratio(conv_bulk / n, res.nbytes / size) + " per item"
            elif HAVE_PYCRDT:
                py_cell = "no bulk run finished"
            table.add(
                f"list, {fmt_size(n)} items in one extend (b)",
                fmt_int(conv_bulk),
                fmt_float(conv_bulk / n),
                py_cell,
                py_per,
                ratio,
            )
        table.note("convergent: len(encode(state)); pycrdt: len(doc.get_update()).")
        return table

    # -- (d) ------------------------------------------------------------------------------
    def section_d(self) -> Table:
        table = Table(
            "Table 2(d): load an encoding into a fresh replica",
            ["workload", "convergent ms", "pycrdt ms", "conv/pycrdt", "check", "target"],
            "lrrrll",
        )
        assert self.conv_map is not None and self.conv_list is not None
        rows: list[tuple[str, Any, Any, str, bool]] = [
            (f"map, {fmt_size(self.n)} keys", self.conv_map.state, self.py_map, "m", True),
            (f"list, {fmt_size(self.n)} appends", self.conv_list.state, self.py_list, "a", True),
        ]
        if self.conv_list_bulk is not None:
            rows.append(
                (
                    f"list, {fmt_size(self.n)} extend (pycrdt: per-append list)",
                    self.conv_list_bulk.state,
                    self.py_list,
                    "a",
                    False,
                )
            )
        for label, state, py_doc, root, is_target in rows:
            blob = encode(state)
            conv_t, loaded = measure(lambda _, blob=blob: decode(blob))
            checks = ["conv ok" if loaded == state else "conv MISMATCH"]
            py_ms: float | None = None
            if py_doc is not None:
                update = py_doc.get_update()
                py_t, fresh = measure(lambda _, update=update: _apply(update))
                py_ms = py_t.median
                kind = Map if root == "m" else Array
                same = fresh.get(root, type=kind).to_py() == py_doc.get(root, type=kind).to_py()
                checks.append("pycrdt ok" if same else "pycrdt MISMATCH")
            status = ""
            if is_target and py_ms is not None:
                status = self.targets.add(
                    f"load no slower than pycrdt ({label})",
                    f"{fmt_ms(conv_t.median)} ms",
                    f"pycrdt {fmt_ms(py_ms)} ms",
                    conv_t.median <= py_ms,
                )
            table.add(
                label,
                fmt_ms(conv_t.median),
                fmt_ms(py_ms) if py_ms is not None else NA,
                _ratio(conv_t.median, py_ms),
                ", ".join(checks),
                status,
            )
        table.note("convergent: decode(bytes); pycrdt: Doc().apply_update(update).")
        return table

    # -- (e) ------------------------------------------------------------------------------
    def section_e(self) -> Table:
        edits = scaled(10_000)
        keyspace = max(1, edits // 2)
        keys = [f"k{i % keyspace}" for i in range(edits)]
        table = Table(
            f"Table 2(e): two replicas, {fmt_size(edits)} concurrent map sets each on "
            f"{fmt_size(keyspace)} shared keys, synced both ways",
            ["system", "phase", "median ms", "bytes sent", "converged", "target"],
            "llrrll",
        )

        def conv_setup() -> dict[str, Any]:
            a, b = Replica(ORMap(), ReplicaId(1)), Replica(ORMap(), ReplicaId(2))
            for i, k in enumerate(keys):
                a.update(ORMap.set, k, i)
            for i, k in enumerate(keys):
                b.update(ORMap.set, k, 1_000_000 + i)
            return {"a": a, "b": b}

        def take(c: dict[str, Any]) -> None:
            c["da"], c["db"] = c["a"].take_outbox(), c["b"].take_outbox()

        def enc(c: dict[str, Any]) -> None:
            c["ea"], c["eb"] = encode(c["da"]), encode(c["db"])

        def dec(c: dict[str, Any]) -> None:
            c["xa"], c["xb"] = decode(c["ea"]), decode(c["eb"])

        def join(c: dict[str, Any]) -> None:
            c["b"].receive(c["xa"])
            c["a"].receive(c["xb"])

        phases = measure_phases(conv_setup, take, enc, dec, join)
        timings, last = phases
        totals = [sum(run) for run in zip(*(t.runs for t in timings), strict=True)]
        conv_total = float(np.median(totals))
        conv_bytes = len(last["ea"]) + len(last["eb"])
        conv_ok = last["a"].state == last["b"].state
        table.add(
            "convergent",
            "total",
            fmt_ms(conv_total),
            fmt_int(conv_bytes),
            "yes" if conv_ok else "NO",
        )
        for name, t in zip(
            ["take_outbox x2", "encode x2", "decode x2", "receive (join) x2"],
            timings,
            strict=True,
        ):
            table.add("", f"  {name}", fmt_ms(t.median))
        if HAVE_PYCRDT:

            def py_setup() -> dict[str, Any]:
                da, db = Doc(client_id=1), Doc(client_id=2)
                ma, mb = da.get("m", type=Map), db.get("m", type=Map)
                for i, k in enumerate(keys):
                    with da.transaction():
                        ma[k] = i
                for i, k in enumerate(keys):
                    with db.transaction():
                        mb[k] = 1_000_000 + i
                return {"da": da, "db": db, "ma": ma, "mb": mb}

            def py_sync(c: dict[str, Any]) -> None:
                da, db = c["da"], c["db"]
                sva, svb = da.get_state(), db.get_state()
                ua, ub = da.get_update(svb), db.get_update(sva)
                db.apply_update(ua)
                da.apply_update(ub)
                c["bytes"] = len(sva) + len(svb) + len(ua) + len(ub)

            (py_t,), py_last = measure_phases(py_setup, py_sync)
            py_ok = py_last["ma"].to_py() == py_last["mb"].to_py()
            status = self.targets.add(
                "two-replica sync no slower than pycrdt",
                f"{fmt_ms(conv_total)} ms, {conv_bytes:,} B",
                f"pycrdt {fmt_ms(py_t.median)} ms, {py_last['bytes']:,} B",
                conv_total <= py_t.median,
            )
            table.rows[0][5] = f"<= pycrdt: {status}"
            table.add(
                "pycrdt",
                "state vectors + get_update(sv) + apply_update, both ways",
                fmt_ms(py_t.median),
                fmt_int(py_last["bytes"]),
                "yes" if py_ok else "NO",
            )
        else:
            table.add("pycrdt", NA)
        table.note(
            "convergent: each side's take_outbox() delta-group, encoded, decoded and received"
            " by the other; converged = states equal (pycrdt: m.to_py() equal)."
        )
        return table

    # -- (f) ------------------------------------------------------------------------------
    def section_f(self) -> Table:
        n = scaled(1_000_000)
        ids, labels = dataset(n, seed=1)
        other, labels2 = dataset(n, seed=2)
        half = n // 2
        fresh = other[~np.isin(other, ids)][: n - half]
        ids2 = np.concatenate([ids[:half], fresh])
        labels2 = labels2[: len(ids2)]
        table = Table(
            f"Table 2(f): bulk add of {fmt_size(n)} random int64 dataset ids with labels 0..9",
            ["what", "median ms", "runs", "detail", "target", "status"],
            "lrrlll",
        )

        def make_set(c: dict[str, Any]) -> None:
            c["d"] = AWSet.add_many(c["s"].state, ids, by=c["s"].actor)

        def join_set(c: dict[str, Any]) -> None:
            c["s"].state.join_inplace(c["d"])

        def make_map(c: dict[str, Any]) -> None:
            c["d"] = ORMap.set_many(c["m"].state, ids, labels, by=c["m"].actor)

        def join_map(c: dict[str, Any]) -> None:
            c["m"].state.join_inplace(c["d"])

        def upd_set(c: dict[str, Any]) -> None:
            c["s"].update(AWSet.add_many, ids)

        def upd_map(c: dict[str, Any]) -> None:
            c["m"].update(ORMap.set_many, ids, labels)

        def fresh_pair() -> dict[str, Any]:
            return {"s": Replica(AWSet(), ReplicaId(1)), "m": Replica(ORMap(), ReplicaId(1))}

        goal = 0.5
        (ms_t, js_t), _ = measure_phases(fresh_pair, make_set, join_set)
        (mm_t, jm_t), _ = measure_phases(fresh_pair, make_map, join_map)
        (us_t, um_t), both = measure_phases(fresh_pair, upd_set, upd_map)
        together = float(np.median([a + b for a, b in zip(us_t.runs, um_t.runs, strict=True)]))
        for label, t, detail in [
            (
                "AWSet.add_many(ids) via Replica.update",
                us_t.median,
                f"make delta {fmt_ms(ms_t.median)} + join {fmt_ms(js_t.median)} ms",
            ),
            (
                "ORMap.set_many(ids, labels) via Replica.update",
                um_t.median,
                f"make delta {fmt_ms(mm_t.median)} + join {fmt_ms(jm_t.median)} ms",
            ),
            ("both, ids then labels", together, "same runs as the two rows above"),
        ]:
            status = self.targets.add(
                f"bulk add {fmt_size(n)} < {goal} s: {label}", f"{fmt_ms(t)} ms", "", t < goal
            )
            table.add(label, fmt_ms(t), us_t.n, detail, f"< {goal * 1e3:.0f} ms", status)
        assert len(both["s"].state) == n and len(both["m"].state) == n

        # Two writers, half of the second one's ids shared with the first.
        a_set, b_set = Replica(AWSet(), ReplicaId(1)), Replica(AWSet(), ReplicaId(2))
        a_set.update(AWSet.add_many, ids)
        b_set.update(AWSet.add_many, ids2)
        a_map, b_map = Replica(ORMap(), ReplicaId(1)), Replica(ORMap(), ReplicaId(2))
        a_map.update(ORMap.set_many, ids, labels)
        b_map.update(ORMap.set_many, ids2, labels2)
        expect = len(np.union1d(ids, ids2))
        for label, sa, sb in [
            ("join AWSet a.join(b)", a_set.state, b_set.state),
            ("join ORMap labels a.join(b)", a_map.state, b_map.state),
        ]:
            progress(f"table 2 (f) {label}")
            jt, joined = measure(lambda _, sa=sa, sb=sb: sa.join(sb))
            ok_len = len(joined) == expect
            status = self.targets.add(
                f"join of two {fmt_size(n)} replicas < 1 s: {label}",
                f"{fmt_ms(jt.median)} ms",
                "",
                jt.median < 1.0,
            )
            table.add(
                label,
                fmt_ms(jt.median),
                jt.n,
                f"{len(joined):,} keys" + ("" if ok_len else f" (EXPECTED {expect:,})"),
                "< 1,000 ms",
                status,
            )
        for label, state in [("AWSet", a_set.state), ("ORMap labels", a_map.state)]:
            blob = encode(state)
            et, _ = measure(lambda _, state=state: encode(state))
            dt, back = measure(lambda _, blob=blob: decode(blob))
            table.add(
                f"encode / decode {label} ({fmt_size(n)})",
                f"{fmt_ms(et.median)} / {fmt_ms(dt.median)}",
                et.n,
                f"{len(blob):,} B = {len(blob) / n:.2f} B/key"
                + ("" if back == state else " DECODE MISMATCH"),
            )
        if HAVE_PYCRDT:
            progress(f"pycrdt map of {n:,} keys in one transaction, child process")
            res = run_worker(["mapset", str(n), "3"], WORKER_TIMEOUT)
            detail = _worker_status(res)
            if res.nbytes is not None:
                detail += f"; update {res.nbytes:,} B = {res.nbytes / n:.2f} B/key"
            table.add(
                f"pycrdt Map, {fmt_size(n)} keys set in one transaction",
                fmt_ms(res.median),
                len(res.runs),
                detail,
            )
        else:
            table.add("pycrdt", NA)
        table.note(
            "make delta = AWSet.add_many / ORMap.set_many on the replica's state; join ="
            " state.join_inplace(delta); Replica.update does both and stages the delta."
        )
        table.note(
            f"join: replica 1 holds ids, replica 2 holds {half:,} of them plus {len(fresh):,}"
            " others (its own labels); a.join(b) copies a, then joins b in."
        )
        table.note(
            "pycrdt: str(id) keys, one transaction, in a child process with a 60 s limit "
            "(its closest equivalent; it has no set type)."
        )
        return table

    # -- (g) ------------------------------------------------------------------------------
    def section_g(self) -> Table:
        n = self.n
        nkeys = max(1, scaled(1_000))
        keys = [f"k{i % nkeys}" for i in range(n)]

        def conv(rep: Replica[ORMap]) -> Replica[ORMap]:
            update, mutator = rep.update, ORMap.set
            for i, k in enumerate(keys):
                update(mutator, k, i)
            return rep

        conv_t, rep = measure(conv, lambda: Replica(ORMap(), ReplicaId(1)))
        conv_bytes = len(encode(rep.state))
        goal = 30_000
        table = Table(
            f"Table 2(g): state after {fmt_size(n)} overwrites of {fmt_size(nkeys)} keys",
            ["system", "median s", "sets/s", "state bytes", "B/key", "target", "status"],
            "lrrrrll",
        )
        status = self.targets.add(
            f"state after {fmt_size(n)} overwrites of {fmt_size(nkeys)} keys < 30 KB",
            f"{conv_bytes:,} B",
            "",
            conv_bytes < goal,
        )
        table.add(
            "convergent",
            f"{conv_t.median:.3f}",
            fmt_rate(n / conv_t.median),
            fmt_int(conv_bytes),
            fmt_float(conv_bytes / nkeys, 1),
            "< 30,000 B",
            status,
        )
        if HAVE_PYCRDT:
            py_t, doc = measure(*_pycrdt_map_sets(keys))
            py_bytes = len(doc.get_update())
            self.targets.items[-1].reference = f"pycrdt {py_bytes:,} B"
            table.add(
                "pycrdt",
                f"{py_t.median:.3f}",
                fmt_rate(n / py_t.median),
                fmt_int(py_bytes),
                fmt_float(py_bytes / nkeys, 1),
            )
        else:
            table.add("pycrdt", NA)
        table.note("convergent: len(encode(state)); pycrdt: len(doc.get_update()).")
        return table

    # -- (h) ------------------------------------------------------------------------------
    def section_h(self) -> Table:
        totals = [scaled(t) for t in (100_000, 1_000_000, 10_000_000)]
        batches = [scaled(b) for b in (1_000, 10_000, 100_000)]
        top = max(totals)
        rng = np.random.default_rng(7)
        step = np.arange(top, dtype=np.int64)
        when = step * 1_000
        value = rng.random(top)
        goal = 10e6
        table = Table(
            "Table 2(h): AppendLog.append_many through a Replica",
            [
                "batch",
                "points",
                "calls",
                "median s",
                "points/s",
                "ns/point",
                "x smallest",
                "2nd/1st",
                "take_outbox ms",
                "target",
                "status",
            ],
            "rrrrrrrrrll",
        )
        for batch in batches:
            base: float | None = None
            for total in totals:
                progress(f"table 2 (h) batch {batch:,}, {total:,} points")

                def setup(batch: int = batch, total: int = total) -> dict[str, Any]:
                    cols = [
                        {"step": step[s : s + batch], "time": when[s : s + batch],
                         "value": value[s : s + batch]}
                        for s in range(0, total, batch)
                    ]  # fmt: skip
                    return {"rep": Replica(AppendLog(), ReplicaId(1)), "cols": cols}

                def first(c: dict[str, Any]) -> None:
                    update, mutator = c["rep"].update, AppendLog.append_many
                    for col in c["cols"][: len(c["cols"]) // 2]:
                        update(mutator, col)

                def second(c: dict[str, Any]) -> None:
                    update, mutator = c["rep"].update, AppendLog.append_many
                    for col in c["cols"][len(c["cols"]) // 2 :]:
                        update(mutator, col)

                def drain(c: dict[str, Any]) -> None:
                    c["group"] = c["rep"].take_outbox()

                (t1, t2, drain_t), last = measure_phases(setup, first, second, drain)
                rows = len(last["rep"].state)
                if rows != total or len(last["group"]) != total:
                    raise AssertionError(f"AppendLog holds {rows:,} rows, expected {total:,}")
                calls = len(last["cols"])
                del last
                app_t = Timing([a + b for a, b in zip(t1.runs, t2.runs, strict=True)])
                half = calls // 2
                growth = (
                    float(
                        np.median(
                            [
                                (b / (calls - half)) / (a / half)
                                for a, b in zip(t1.runs, t2.runs, strict=True)
                            ]
                        )
                    )
                    if half
                    else None
                )
                per = app_t.median / total
                base = per if base is None else base
                rate = total / app_t.median
                status = ""
                if total == top:
                    status = self.targets.add(
                        f"append >= 10M points/s (batch {fmt_size(batch)}, "
                        f"{fmt_size(total)} points)",
                        f"{fmt_rate(rate)}/s",
                        "",
                        rate >= goal,
                    )
                table.add(
                    fmt_int(batch),
                    fmt_int(total),
                    fmt_int(-(-total // batch)),
                    f"{app_t.median:.3f}",
                    fmt_rate(rate),
                    f"{per * 1e9:.1f}",
                    fmt_float(per / base),
                    fmt_float(growth),
                    fmt_ms(drain_t.median),
                    ">= 10M/s",
                    status or verdict(rate >= goal),
                )
        table.note(
            "x smallest: ns/point over ns/point at the smallest total with the same batch"
            " (~1.0 = time grows linearly with the number of points); 2nd/1st: per-call time"
            " in the second half of the calls over the first half, in the same runs (~1.0 ="
            " a call's cost does not grow with the log)."
        )
        table.note(
            "points/s counts the Replica.update calls only; take_outbox() afterwards (whatever"
            " work the Replica left for forming the delta-group) is timed separately."
        )
        return table


def _extend(rep: Replica[RGA], items: list[int]) -> Replica[RGA]:
    rep.update(RGA.extend, items)
    return rep


def _apply(update: bytes) -> Any:
    doc = Doc()
    doc.apply_update(update)
    return doc


def _worker_status(res: WorkerResult) -> str:
    if res.status == "ok":
        return "ok"
    done = f" after {len(res.runs)} finished run(s)" if res.runs else " (no run finished)"
    detail = f": {res.detail}" if res.detail else ""
    return f"{res.status}{done}{detail}"
