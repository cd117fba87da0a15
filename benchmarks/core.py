"""Table 1: every mutator of every type through a `Replica`, then join, encode and decode.

Each row builds its workload on a fresh replica per run, alternating replica ids 1 and 2
(same workload shape, different random content), so after the runs there are two states
built by two writers: their join, and the encoding of the first, are timed on those.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.harness import (
    INT64_MAX,
    INT64_MIN,
    Table,
    fmt_float,
    fmt_int,
    fmt_mbs,
    fmt_ms,
    fmt_rate,
    fmt_size,
    measure_call,
    measure_phases,
    progress,
    scaled,
)
from convergent.codec import decode, encode
from convergent.crdt import (
    RGA,
    AppendLog,
    AWSet,
    GCounter,
    LWWRegister,
    MVRegister,
    ORMap,
    PNCounter,
    Replica,
    ReplicaId,
)

Args = list[tuple[Any, ...]]
Prepare = Callable[[Replica[Any], np.random.Generator], Args]


@dataclass(frozen=True)
class Case:
    """One row: ``rep.update(mutator, *args)`` for every args tuple ``prepare`` returns."""

    type_name: str
    op: str
    make: Callable[[], Any]
    mutator: Callable[..., Any]
    prepare: Prepare
    items_per_call: int = 1


def _ops(rep: Replica[Any], mutator: Callable[..., Any], args: Args, lo: int, hi: int) -> None:
    update = rep.update
    for i in range(lo, hi):
        update(mutator, *args[i])


def _ints(rng: np.random.Generator, n: int) -> list[int]:
    return [int(x) for x in rng.integers(0, 1 << 31, size=n)]


def _ids(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    return rng.integers(INT64_MIN, INT64_MAX, size=n, dtype=np.int64)


def cases() -> list[Case]:
    n = scaled(10_000, 10)
    bulk_calls = 10
    rga_ops = scaled(2_000, 10)

    def same(arg: tuple[Any, ...]) -> Prepare:
        return lambda rep, rng: [arg] * n

    def values(rep: Replica[Any], rng: np.random.Generator) -> Args:
        return [(v,) for v in _ints(rng, n)]

    def set_remove(rep: Replica[Any], rng: np.random.Generator) -> Args:
        for e in range(n):
            rep.update(AWSet.add, e)
        rep.take_outbox()
        return [(e,) for e in range(0, n, 2)]

    def set_add_many(rep: Replica[Any], rng: np.random.Generator) -> Args:
        return [(_ids(rng, n),) for _ in range(bulk_calls)]

    def map_set(rep: Replica[Any], rng: np.random.Generator) -> Args:
        return [(f"k{i}", v) for i, v in enumerate(_ints(rng, n))]

    def map_remove(rep: Replica[Any], rng: np.random.Generator) -> Args:
        for i, v in enumerate(_ints(rng, n)):
            rep.update(ORMap.set, f"k{i}", v)
        rep.take_outbox()
        return [(f"k{i}",) for i in range(0, n, 2)]

    def map_set_many(rep: Replica[Any], rng: np.random.Generator) -> Args:
        return [(_ids(rng, n), rng.integers(0, 10, size=n)) for _ in range(bulk_calls)]

    def log_append(rep: Replica[Any], rng: np.random.Generator) -> Args:
        vals = rng.random(n).tolist()
        return [({"step": i, "time": 1_000 * i, "value": v},) for i, v in enumerate(vals)]

    def log_append_many(rep: Replica[Any], rng: np.random.Generator) -> Args:
        out: Args = []
        for c in range(bulk_calls):
            step = np.arange(c * n, (c + 1) * n, dtype=np.int64)
            out.append(({"step": step, "time": step * 1_000, "value": rng.random(n)},))
        return out

    def rga_extend(rep: Replica[Any], rng: np.random.Generator) -> Args:
        return [(_ints(rng, n),) for _ in range(bulk_calls)]

    def rga_insert(rep: Replica[Any], rng: np.random.Generator) -> Args:
        base = scaled(1_000, 10)
        rep.update(RGA.extend, _ints(rng, base))
        rep.take_outbox()
        return [(int(rng.integers(0, base + k + 1)), v) for k, v in enumerate(_ints(rng, rga_ops))]

    def rga_delete(rep: Replica[Any], rng: np.random.Generator) -> Args:
        size = 2 * rga_ops
        rep.update(RGA.extend, _ints(rng, size))
        rep.take_outbox()
        return [(int(rng.integers(0, size - k)),) for k in range(rga_ops)]

    return [
        Case("GCounter", "increment", GCounter.initial, GCounter.increment, same((1,))),
        Case("PNCounter", "increment", PNCounter.initial, PNCounter.increment, same((1,))),
        Case("PNCounter", "decrement", PNCounter.initial, PNCounter.decrement, same((1,))),
        Case("LWWRegister", "set", LWWRegister.initial, LWWRegister.set, values),
        Case("MVRegister", "set", MVRegister.initial, MVRegister.set, values),
        Case("AWSet", "add", AWSet.initial, AWSet.add, lambda rep, rng: [(e,) for e in range(n)]),
        Case("AWSet", "remove", AWSet.initial, AWSet.remove, set_remove),
        Case("AWSet", "add_many", AWSet.initial, AWSet.add_many, set_add_many, n),
        Case("ORMap", "set", ORMap.initial, ORMap.set, map_set),
        Case("ORMap", "remove", ORMap.initial, ORMap.remove, map_remove),
        Case("ORMap", "set_many", ORMap.initial, ORMap.set_many, map_set_many, n),
        Case("AppendLog", "append", AppendLog.initial, AppendLog.append, log_append),
        Case(
            "AppendLog", "append_many", AppendLog.initial, AppendLog.append_many, log_append_many, n
        ),
        Case("RGA", "append", RGA.initial, RGA.append, values),
        Case("RGA", "extend", RGA.initial, RGA.extend, rga_extend, n),
        Case("RGA", "insert (random index)", RGA.initial, RGA.insert, rga_insert),
        Case("RGA", "delete (random index)", RGA.initial, RGA.delete, rga_delete),
    ]


COLUMNS = [
    "type",
    "mutator",
    "calls",
    "ops/s",
    "2nd/1st",
    "join ms",
    "enc ms",
    "enc MB/s",
    "dec ms",
    "dec MB/s",
    "bytes",
    "check",
]


def run_case(case: Case) -> list[str]:
    """Measure one row; returns its cells."""
    built: dict[int, Replica[Any]] = {}
    counter = iter(range(1_000))

    def setup() -> dict[str, Any]:
        rid = 1 + next(counter) % 2
        rep: Replica[Any] = Replica(case.make(), ReplicaId(rid))
        args = case.prepare(rep, np.random.default_rng(rid))
        built[rid] = rep
        return {"rep": rep, "args": args, "mid": len(args) // 2}

    def first(ctx: dict[str, Any]) -> None:
        _ops(ctx["rep"], case.mutator, ctx["args"], 0, ctx["mid"])

    def second(ctx: dict[str, Any]) -> None:
        _ops(ctx["rep"], case.mutator, ctx["args"], ctx["mid"], len(ctx["args"]))

    (t1, t2), last = measure_phases(setup, first, second)
    calls = len(last["args"])
    mid = last["mid"]
    totals = [a + b for a, b in zip(t1.runs, t2.runs, strict=True)]
    total = float(np.median(totals))
    # Per-call time of the second half over the first: ~1 when a call costs the same
    # whatever the state size; it grows with the state when a call is O(state).
    growth = float(
        np.median([(b / (calls - mid)) / (a / mid) for a, b in zip(t1.runs, t2.runs, strict=True)])
    )
    s1, s2 = built[1].state, built[2].state
    join_t = measure_call(lambda: s1.join(s2))
    blob = encode(s1)
    enc_t = measure_call(lambda: encode(s1))
    dec_t = measure_call(lambda: decode(blob))
    problems = []
    if decode(blob) != s1:
        problems.append("decode(encode(s)) != s")
    if s1.join(s2) != s2.join(s1):
        problems.append("join not commutative")
    if encode(s1.join(s2)) != encode(s2.join(s1)):
        problems.append("join encodings differ")
    items = calls * case.items_per_call
    return [
        case.type_name,
        case.op,
        f"{calls:,}" + (f" x {fmt_size(case.items_per_call)}" if case.items_per_call > 1 else ""),
        fmt_rate(items / total),
        fmt_float(growth),
        fmt_ms(join_t.median),
        fmt_ms(enc_t.median),
        fmt_mbs(len(blob), enc_t.median),
        fmt_ms(dec_t.median),
        fmt_mbs(len(blob), dec_t.median),
        fmt_int(len(blob)),
        "ok" if not problems else "FAIL: " + "; ".join(problems),
    ]


def table1(errors: list[str]) -> Table:
    table = Table(
        "Table 1: mutators through a Replica; join, encode, decode of the resulting states",
        COLUMNS,
        "ll" + "r" * (len(COLUMNS) - 3) + "l",
    )
    for case in cases():
        progress(f"table 1: {case.type_name}.{case.op}")
        try:
            table.add(*run_case(case))
        except Exception as exc:
            errors.append(f"Table 1 {case.type_name}.{case.op}:\n{traceback.format_exc()}")
            table.add(case.type_name, case.op, "ERROR", f"{type(exc).__name__}: {exc}"[:60])
    table.note("ops/s: median over runs of calls / time; bulk rows (x N) count items, not calls.")
    table.note(
        "2nd/1st: per-call time in the second half of the workload over the first half "
        "(~1: cost independent of state size; >1: a call costs more as the state grows)."
    )
    table.note(
        "join: s1.join(s2) (a copy then an in-place join) of the states built by replicas 1 and"
        " 2; enc/dec: encode(s1) and decode(bytes); MB/s = 10**6 bytes per second."
    )
    n, rga_ops = scaled(10_000, 10), scaled(2_000, 10)
    table.note(
        f"RGA insert starts from a {fmt_size(scaled(1_000, 10))}-item list, RGA delete from a"
        f" {fmt_size(2 * rga_ops)}-item list ({fmt_size(rga_ops)} random-index calls each);"
        f" other single-op rows: {fmt_size(n)} calls (removes: half of {fmt_size(n)} prefilled);"
        f" bulk rows: 10 calls of {fmt_size(n)} items."
    )
    return table


# -- per-op cost vs state size --------------------------------------------------------------


SCALING = [
    ("RGA.append after extend(size)", "rga", "append", [1_000, 4_000, 16_000, 64_000]),
    ("RGA.insert(random index) after extend(size)", "rga", "insert", [1_000, 4_000, 16_000]),
    ("RGA.delete(random index) after extend(size)", "rga", "delete", [1_000, 4_000, 16_000]),
    ("AWSet.add after add_many(size)", "set", "add", [1_000, 10_000, 100_000, 1_000_000]),
    ("ORMap.set after set_many(size)", "map", "set", [1_000, 10_000, 100_000, 1_000_000]),
]


def _scaling_setup(kind: str, op: str, size: int, ops: int) -> Callable[[], dict[str, Any]]:
    def setup() -> dict[str, Any]:
        rng = np.random.default_rng(size)
        rep: Replica[Any]
        if kind == "rga":
            rep = Replica(RGA(), ReplicaId(1))
            rep.update(RGA.extend, _ints(rng, size))
            if op == "append":
                calls: Args = [(v,) for v in _ints(rng, ops)]
                mutator: Callable[..., Any] = RGA.append
            elif op == "insert":
                calls = [(int(rng.integers(0, size + k + 1)), k) for k in range(ops)]
                mutator = RGA.insert
            else:
                calls = [(int(rng.integers(0, size - k)),) for k in range(ops)]
                mutator = RGA.delete
        elif kind == "set":
            rep = Replica(AWSet(), ReplicaId(1))
            rep.update(AWSet.add_many, _ids(rng, size))
            calls = [(int(x),) for x in _ids(rng, ops)]
            mutator = AWSet.add
        else:
            rep = Replica(ORMap(), ReplicaId(1))
            rep.update(ORMap.set_many, _ids(rng, size), rng.integers(0, 10, size=size))
            calls = [(int(x), 1) for x in _ids(rng, ops)]
            mutator = ORMap.set
        rep.take_outbox()
        return {"rep": rep, "calls": calls, "mutator": mutator}

    return setup


def table1b(errors: list[str]) -> Table:
    ops = scaled(200, 10)
    table = Table(
        f"Table 1b: per-call cost vs state size ({ops} calls through a Replica per run)",
        ["mutator", "state size", "us/call", "x smallest"],
        "lrrr",
    )
    for label, kind, op, sizes in SCALING:
        base: float | None = None
        for nominal in sizes:
            size = scaled(nominal, 10)
            progress(f"table 1b: {label} at {size:,}")
            try:
                timing, _ = measure_phases(
                    _scaling_setup(kind, op, size, ops),
                    lambda c: _ops(c["rep"], c["mutator"], c["calls"], 0, len(c["calls"])),
                )
            except Exception as exc:
                errors.append(f"Table 1b {label} size {size}:\n{traceback.format_exc()}")
                table.add(label, fmt_int(size), "ERROR", f"{type(exc).__name__}: {exc}"[:60])
                continue
            per = timing[0].median / ops
            base = per if base is None else base
            table.add(label, fmt_int(size), f"{per * 1e6:,.1f}", fmt_float(per / base, 1))
    table.note("A flat 'x smallest' column means O(1) per call; one growing with size, O(state).")
    return table
