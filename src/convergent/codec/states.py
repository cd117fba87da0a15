"""Canonical, bounded encodings of every CRDT state.

Layout rules that make equal states encode to equal bytes:

* a causal context is written as sorted replica ids (8 bytes each, once) and, per replica,
  its intervals as (gap, length) varints; everything else names replicas by their index in
  that table;
* the rows of a dot store (key, dot[, hlc, value]) are written in **dot order**, as columns:
  the dots themselves as intervals (a bulk insert is one interval, whatever its size), then
  the key column, the HLC column and the value column, each in the one layout its content
  allows (`Column`); a decoder rejects any other layout as non-canonical;
* nested maps are written key by key in canonical key order.

Decoders validate what the lattice laws assume: every dot lies inside the context, dots are
unique, no key maps to an empty store, no count exceeds the bytes that remain.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from convergent.codec import wire
from convergent.codec.tags import VERSIONS, Column, LeafCode, Tag, ValueKind
from convergent.codec.weights import read_weights, write_weights
from convergent.codec.wire import Reader, Writer
from convergent.crdt import (
    RGA,
    AppendLog,
    AWSet,
    CausalContext,
    Crdt,
    GCounter,
    LWWRegister,
    MVRegister,
    ORMap,
    PNCounter,
    Weights,
)
from convergent.crdt.applog import Segment
from convergent.crdt.causal import Dot
from convergent.crdt.clock import MAX_TIMESTAMP
from convergent.crdt.dotstore import (
    REGISTER_LEAF,
    SET_LEAF,
    STR_KEYS,
    DotMap,
    LeafKind,
    MapLeaf,
    Rows,
    sort_rows,
)
from convergent.crdt.values import key_order
from convergent.errors import InvalidError, TruncatedError, UnsupportedVersionError

T = TypeVar("T", bound=Crdt)

MAX_COUNTER = (1 << 63) - 1
MAX_DEPTH = 8
# Decoded stores with fewer rows become dict entries (cheap single-key joins later); larger
# ones become numpy blocks (cheap bulk joins).
BLOCK_MIN_ROWS = 256
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


# -- scalar values ------------------------------------------------------------------------


def write_value(w: Writer, v: Any) -> None:
    """One tagged value (register content)."""
    t = type(v)
    if v is None:
        w.byte(ValueKind.NONE)
    elif t is bool:
        w.byte(ValueKind.TRUE if v else ValueKind.FALSE)
    elif t is int:
        w.byte(ValueKind.INT)
        w.svarint(v)
    elif t is float:
        w.byte(ValueKind.FLOAT)
        w.f64(v)
    elif t is str:
        w.byte(ValueKind.STR)
        w.text(v)
    elif t is bytes:
        w.byte(ValueKind.BYTES)
        w.blob(v)
    elif t is tuple:
        w.byte(ValueKind.TUPLE)
        w.uvarint(len(v))
        for x in v:
            write_value(w, x)
    else:
        raise TypeError(f"cannot encode value of type {t.__name__}")


def read_value(r: Reader, depth: int = 0) -> Any:
    """Inverse of `write_value`."""
    at = r.pos
    kind = r.byte()
    if kind == ValueKind.NONE:
        return None
    if kind == ValueKind.FALSE:
        return False
    if kind == ValueKind.TRUE:
        return True
    if kind == ValueKind.INT:
        v = r.svarint()
        if not -(1 << 127) <= v < (1 << 127):
            raise InvalidError(f"integer at offset {at} is outside [-2**127, 2**127)")
        return v
    if kind == ValueKind.FLOAT:
        return r.f64()
    if kind == ValueKind.STR:
        return r.text()
    if kind == ValueKind.BYTES:
        return r.blob()
    if kind == ValueKind.TUPLE:
        if depth >= MAX_DEPTH:
            raise InvalidError(f"values nested deeper than {MAX_DEPTH} at offset {at}")
        n = r.count(1)
        return tuple(read_value(r, depth + 1) for _ in range(n))
    raise InvalidError(f"unknown value kind {kind} at offset {at}")


# -- columns ------------------------------------------------------------------------------


def _column_kind(items: list[Any]) -> Column:
    if not items:
        return Column.EMPTY
    types = {type(x) for x in items}
    if types == {int} and all(INT64_MIN <= x <= INT64_MAX for x in items):
        return Column.INT
    if types == {str}:
        return Column.STR
    if types == {bytes}:
        return Column.BYTES
    if types == {float}:
        return Column.FLOAT
    if types == {bool}:
        return Column.BOOL
    return Column.MIXED


def _array_kind(a: NDArray[Any]) -> Column | None:
    """The layout of a typed numpy column, or None if its items must be inspected."""
    if not len(a):
        return Column.EMPTY
    k = a.dtype.kind
    return {"i": Column.INT, "f": Column.FLOAT, "b": Column.BOOL, "T": Column.STR}.get(k)


def write_column(w: Writer, col: NDArray[Any] | list[Any]) -> None:
    """A column of keys or values in the one layout its content allows."""
    kind = _array_kind(col) if isinstance(col, np.ndarray) else None
    items: list[Any] | None = None
    if kind is None:
        items = col.tolist() if isinstance(col, np.ndarray) else col
        kind = _column_kind(items)
    w.byte(kind)
    if kind == Column.EMPTY:
        return
    if kind == Column.INT:
        if items is not None and len(items) <= wire.SMALL:
            w.raw(wire.encode_deltas_list(items))
        else:
            w.raw(wire.encode_deltas(np.asarray(col if items is None else items, dtype=np.int64)))
    elif kind == Column.FLOAT:
        if items is not None and len(items) <= wire.SMALL:
            w.raw(wire.encode_f64s_list(items))
        else:
            w.raw(wire.encode_f64s(np.asarray(col if items is None else items, dtype=np.float64)))
    elif kind == Column.BOOL:
        w.raw(bytes(items) if items is not None else np.asarray(col, dtype=np.uint8).tobytes())
    elif kind == Column.STR:
        w.raw(wire.encode_strings(col.tolist() if items is None else items))  # type: ignore[union-attr]
    elif kind == Column.BYTES:
        assert items is not None
        w.raw(wire.encode_bytes_column(items))
    else:
        assert items is not None
        for x in items:
            write_value(w, x)


def read_column(r: Reader, n: int) -> NDArray[Any]:
    """Inverse of `write_column` for ``n`` items; typed numpy when the layout allows."""
    at = r.pos
    kind = r.byte()
    if kind == Column.EMPTY:
        if n:
            raise InvalidError(f"empty column at offset {at} for {n} items")
        return np.empty(0, dtype=np.int64)
    if not n:
        raise InvalidError(f"non-empty column layout at offset {at} for no items")
    buf = r.buffer
    if kind == Column.INT:
        a, r.pos = wire.decode_deltas(buf, r.pos, n)
        return a
    if kind == Column.FLOAT:
        f, r.pos = wire.decode_f64s(buf, r.pos, n)
        return f
    if kind == Column.BOOL:
        raw = np.frombuffer(r.raw(n), dtype=np.uint8)
        if raw.max() > 1:
            raise InvalidError(f"bool column at offset {at} holds a byte other than 0 or 1")
        return raw.astype(np.bool_)
    if kind == Column.STR:
        s, r.pos = wire.decode_strings(buf, r.pos, n)
        return np.array(s, dtype=STR_KEYS)
    if kind == Column.BYTES:
        b, r.pos = wire.decode_bytes_column(buf, r.pos, n)
        out = np.empty(n, dtype=object)
        out[:] = b
        return out
    if kind == Column.MIXED:
        items = [read_value(r) for _ in range(n)]
        if _column_kind(items) != Column.MIXED:
            raise InvalidError(f"non-canonical mixed column at offset {at}: items share one kind")
        out = np.empty(n, dtype=object)
        for i, x in enumerate(items):
            out[i] = x
        return out
    raise InvalidError(f"unknown column layout {kind} at offset {at}")


def read_key_column(r: Reader, n: int) -> NDArray[Any]:
    """A column of map keys or set elements: ints (64-bit), strs or bytes only."""
    at = r.pos
    col = read_column(r, n)
    if col.dtype.kind in "iT":
        return col
    if col.dtype == object and all(
        type(k) in (str, bytes) or (type(k) is int and INT64_MIN <= k <= INT64_MAX)
        for k in col.tolist()
    ):
        return col
    raise InvalidError(f"key column at offset {at} holds values that cannot be keys")


# -- causal context -----------------------------------------------------------------------


def _write_intervals(w: Writer, ivs: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> None:
    w.uvarint(len(ivs))
    prev = 0
    for lo, hi in ivs:
        # Gaps are at least 1 after the first interval (coalesced), so store gap - 1.
        w.uvarint(lo - prev - 1 if prev == 0 else lo - prev - 2)
        w.uvarint(hi - lo)
        prev = hi


def _read_intervals(r: Reader) -> list[tuple[int, int]]:
    n = r.count(2)
    out: list[tuple[int, int]] = []
    prev = 0
    for _ in range(n):
        gap, span = r.uvarint(), r.uvarint()
        lo = prev + 1 + gap if prev == 0 else prev + 2 + gap
        hi = lo + span
        if hi > MAX_COUNTER:
            raise InvalidError(f"counter {hi} exceeds 2**63 - 1")
        out.append((lo, hi))
        prev = hi
    return out


def write_context(w: Writer, ctx: CausalContext) -> list[int]:
    """Write a context; returns the replica table (sorted ids) later columns index into."""
    table = ctx.replicas()
    w.uvarint(len(table))
    for rid in table:
        w.raw(rid.to_bytes(8, "big"))
    for rid in table:
        _write_intervals(w, ctx.intervals(rid))
    return table


def read_context(r: Reader) -> tuple[CausalContext, list[int]]:
    """Inverse of `write_context`."""
    n = r.count(9)
    table = [int.from_bytes(r.raw(8), "big") for _ in range(n)]
    if any(b <= a for a, b in pairwise(table)):
        raise InvalidError("replica ids in a context must be strictly increasing")
    ctx = CausalContext()
    for rid in table:
        ivs = _read_intervals(r)
        if not ivs:
            raise InvalidError(f"replica {rid:x} is listed with no dots")
        ctx._by_replica[rid] = ivs
    return ctx, table


# -- flat dot stores (AWSet, ORMap of registers, MVRegister) ------------------------------


def _flat_rows(
    m: DotMap,
) -> tuple[
    NDArray[Any] | list[Any],
    NDArray[np.uint64],
    NDArray[np.uint64],
    NDArray[np.int64] | None,
    NDArray[Any] | list[Any] | None,
]:
    """Rows of a flat dot map, each column as numpy where possible (not yet in dot order)."""
    if not m.overlay and m.block is not None:
        b = m.block.compacted()
        return b.keys, b.reps, b.ctrs, b.hlcs, b.vals
    rows = Rows.gather(m)
    return rows.keys, rows.reps, rows.ctrs, rows.hlcs, rows.values


def _take(col: NDArray[Any] | list[Any], order: NDArray[np.intp]) -> NDArray[Any] | list[Any]:
    if isinstance(col, np.ndarray):
        return col[order]
    return [col[i] for i in order.tolist()]


def _write_dots(
    w: Writer, table: list[int], reps: NDArray[np.uint64], ctrs: NDArray[np.uint64]
) -> None:
    """Dots (already in dot order) as intervals per replica of the table."""
    if len(reps) <= wire.SMALL:
        _write_few_dots(w, table, zip(reps.tolist(), ctrs.tolist(), strict=True))
        return
    tab = np.array(table, dtype=np.uint64)
    idx = np.searchsorted(tab, reps)
    starts = np.searchsorted(idx, np.arange(len(table)), side="left")
    ends = np.searchsorted(idx, np.arange(len(table)), side="right")
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        c = ctrs[s:e]
        if not len(c):
            w.uvarint(0)
            continue
        brk = np.flatnonzero(c[1:] != c[:-1] + np.uint64(1)) + 1
        los = c[np.concatenate([[0], brk])].tolist()
        his = c[np.concatenate([brk - 1, [len(c) - 1]])].tolist()
        _write_intervals(w, list(zip(los, his, strict=True)))


def _write_few_dots(w: Writer, table: list[int], dots: Iterable[tuple[int, int]]) -> None:
    """`_write_dots` for a few dots (in dot order), with plain loops."""
    runs: dict[int, list[tuple[int, int]]] = {}
    for rid, c in dots:
        ivs = runs.setdefault(rid, [])
        if ivs and ivs[-1][1] + 1 == c:
            ivs[-1] = (ivs[-1][0], c)
        else:
            ivs.append((c, c))
    for rid in table:
        if rid in runs:
            _write_intervals(w, runs[rid])
        else:
            w.uvarint(0)


def _read_dots(
    r: Reader, table: list[int], ctx: CausalContext
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    per: list[list[tuple[int, int]]] = [_read_intervals(r) for _ in table]
    total = sum(hi - lo + 1 for ivs in per for lo, hi in ivs)
    # Every row costs at least one byte in a later column: bound before allocating.
    if total > r.limit_items:
        raise InvalidError(f"{total} rows exceed the limit of {r.limit_items}")
    if total > r.remaining:
        raise TruncatedError(
            f"{total} rows need at least {total} more bytes", needed=total - r.remaining
        )
    if total <= wire.SMALL:
        # A few dots (a single edit): plain loops beat numpy's per-call overhead.
        dots = [
            (rid, c)
            for rid, ivs in zip(table, per, strict=True)
            for lo, hi in ivs
            for c in range(lo, hi + 1)
        ]
        if not all(d in ctx for d in dots):
            raise InvalidError("a stored dot lies outside the causal context")
        return (
            np.array([d[0] for d in dots], dtype=np.uint64),
            np.array([d[1] for d in dots], dtype=np.uint64),
        )
    reps = np.empty(total, dtype=np.uint64)
    ctrs = np.empty(total, dtype=np.uint64)
    at = 0
    for rid, ivs in zip(table, per, strict=True):
        for lo, hi in ivs:
            k = hi - lo + 1
            reps[at : at + k] = rid
            ctrs[at : at + k] = np.arange(lo, hi + 1, dtype=np.uint64)
            at += k
    if total and not ctx.covers_many(reps, ctrs).all():
        raise InvalidError("a stored dot lies outside the causal context")
    return reps, ctrs


def write_flat(w: Writer, m: DotMap, table: list[int], keyed: bool = True) -> None:
    """A flat dot map's rows in dot order: count, dots, keys, [hlcs, values]."""
    if m.block is None and sum(len(st) for st in m.overlay.values()) <= SMALL_ROWS:
        _write_flat_small(w, m, table, keyed)
        return
    keys, reps, ctrs, hlcs, vals = _flat_rows(m)
    order = np.lexsort((ctrs, reps))
    reps, ctrs = reps[order], ctrs[order]
    w.uvarint(len(order))
    _write_dots(w, table, reps, ctrs)
    if keyed:
        write_column(w, _take(keys, order))
    if m.kind is REGISTER_LEAF:
        assert hlcs is not None and vals is not None
        w.raw(wire.encode_deltas(np.asarray(hlcs, dtype=np.int64)[order]))
        write_column(w, _take(vals, order))


def _write_flat_small(w: Writer, m: DotMap, table: list[int], keyed: bool) -> None:
    """`write_flat` for a few rows (one edit's delta): the same bytes from plain lists."""
    keys, reps, ctrs, hlcs, vals = m.overlay_rows()
    order = sorted(range(len(reps)), key=lambda i: (reps[i], ctrs[i]))
    w.uvarint(len(order))
    _write_few_dots(w, table, ((reps[i], ctrs[i]) for i in order))
    if keyed:
        write_column(w, [keys[i] for i in order])
    if m.kind is REGISTER_LEAF:
        w.raw(wire.encode_deltas_list([hlcs[i] for i in order]))
        write_column(w, [vals[i] for i in order])


def _read_small_column(r: Reader, n: int, keyed: bool) -> list[Any]:
    """`read_column` (and `read_key_column`) for a few items, as a Python list: the same
    layouts and the same checks, without numpy's per-call cost (a single edit's columns)."""
    at = r.pos
    kind = r.byte()
    if kind == Column.EMPTY:
        if n:
            raise InvalidError(f"empty column at offset {at} for {n} items")
        return []
    if not n:
        raise InvalidError(f"non-empty column layout at offset {at} for no items")
    buf = r.buffer
    out: list[Any]
    if kind == Column.INT:
        ints, r.pos = wire.decode_deltas_list(buf, r.pos, n)
        return ints
    if kind == Column.STR:
        out, r.pos = wire.decode_strings(buf, r.pos, n)
        return out
    if kind == Column.BYTES:
        out, r.pos = wire.decode_bytes_column(buf, r.pos, n)
        return out
    if keyed and kind in (Column.FLOAT, Column.BOOL):
        raise InvalidError(f"key column at offset {at} holds values that cannot be keys")
    if kind == Column.FLOAT:
        floats, r.pos = wire.decode_f64s_list(buf, r.pos, n)
        return floats
    if kind == Column.BOOL:
        raw = r.raw(n)
        if any(b > 1 for b in raw):
            raise InvalidError(f"bool column at offset {at} holds a byte other than 0 or 1")
        return [b == 1 for b in raw]
    if kind == Column.MIXED:
        items = [read_value(r) for _ in range(n)]
        if _column_kind(items) != Column.MIXED:
            raise InvalidError(f"non-canonical mixed column at offset {at}: items share one kind")
        if keyed and not all(
            type(k) in (str, bytes) or (type(k) is int and INT64_MIN <= k <= INT64_MAX)
            for k in items
        ):
            raise InvalidError(f"key column at offset {at} holds values that cannot be keys")
        return items
    raise InvalidError(f"unknown column layout {kind} at offset {at}")


def _read_flat_small(
    r: Reader, kind: LeafKind, table: list[int], ctx: CausalContext, keyed: bool, n: int, at: int
) -> DotMap:
    """`read_flat` for a few rows (one edit): plain lists all the way."""
    per = [_read_intervals(r) for _ in table]
    total = sum(hi - lo + 1 for ivs in per for lo, hi in ivs)
    if total != n:  # before enumerating: a claimed interval is never trusted
        raise InvalidError(f"store at offset {at} declares {n} rows but its dots name {total}")
    dots = [
        Dot(rid, c)
        for rid, ivs in zip(table, per, strict=True)
        for lo, hi in ivs
        for c in range(lo, hi + 1)
    ]
    if not all(d in ctx for d in dots):
        raise InvalidError("a stored dot lies outside the causal context")
    keys = _read_small_column(r, n, True) if keyed else [0] * n
    m = DotMap(kind)
    if kind is REGISTER_LEAF:
        hl, r.pos = wire.decode_deltas_list(r.buffer, r.pos, n)
        if n and (min(hl) < 0 or max(hl) > MAX_TIMESTAMP):
            raise InvalidError(f"HLC timestamp out of range in store at offset {at}")
        vals = _read_small_column(r, n, False)
        by_key: dict[Any, Any] = {}
        for k, d, h, v in zip(keys, dots, hl, vals, strict=True):
            by_key.setdefault(k, {})[d] = (h, v)
        for k, store in by_key.items():
            m.put(k, store)
    else:
        sets: dict[Any, set[Dot]] = {}
        for k, d in zip(keys, dots, strict=True):
            sets.setdefault(k, set()).add(d)
        for k, ds in sets.items():
            m.put(k, frozenset(ds))
    return m


SMALL_ROWS = 16


def read_flat(
    r: Reader, kind: LeafKind, table: list[int], ctx: CausalContext, keyed: bool = True
) -> DotMap:
    """Inverse of `write_flat`."""
    at = r.pos
    n = r.count(1)
    if n <= SMALL_ROWS:
        return _read_flat_small(r, kind, table, ctx, keyed, n, at)
    reps, ctrs = _read_dots(r, table, ctx)
    if len(ctrs) != n:
        raise InvalidError(f"store at offset {at} declares {n} rows but its dots name {len(ctrs)}")
    keys = read_key_column(r, n) if keyed else np.zeros(n, dtype=np.int64)
    hlcs = vals = None
    if kind is REGISTER_LEAF:
        hlcs, r.pos = wire.decode_deltas(r.buffer, r.pos, n)
        if n and int(hlcs.min()) < 0:
            raise InvalidError(f"negative HLC timestamp in store at offset {at}")
        if n and int(hlcs.max()) > MAX_TIMESTAMP:
            raise InvalidError(f"HLC timestamp beyond {MAX_TIMESTAMP} in store at offset {at}")
        vals = read_column(r, n)
    m = DotMap(kind)
    if n >= BLOCK_MIN_ROWS and keys.dtype.kind in "iT":
        m.block = sort_rows(keys, reps, ctrs, hlcs, vals)
        return m
    by_key: dict[Any, Any] = {}
    klist = keys.tolist()
    if kind is REGISTER_LEAF:
        assert hlcs is not None and vals is not None
        for k, rr, c, h, v in zip(
            klist, reps.tolist(), ctrs.tolist(), hlcs.tolist(), vals.tolist(), strict=True
        ):
            by_key.setdefault(k, {})[Dot(rr, c)] = (h, v)
        for k, store in by_key.items():
            m.put(k, store)
    else:
        for k, rr, c in zip(klist, reps.tolist(), ctrs.tolist(), strict=True):
            by_key.setdefault(k, set()).add(Dot(rr, c))
        for k, dots in by_key.items():
            m.put(k, frozenset(dots))
    return m


# -- nested dot maps ----------------------------------------------------------------------


def _write_leaf_code(w: Writer, kind: LeafKind) -> None:
    if kind is REGISTER_LEAF:
        w.byte(LeafCode.REGISTER)
    elif kind is SET_LEAF:
        w.byte(LeafCode.SET)
    else:
        assert isinstance(kind, MapLeaf)
        w.byte(LeafCode.MAP)
        _write_leaf_code(w, kind.inner)


def _read_leaf_code(r: Reader, depth: int = 0) -> LeafKind:
    at = r.pos
    code = r.byte()
    if code == LeafCode.REGISTER:
        return REGISTER_LEAF
    if code == LeafCode.SET:
        return SET_LEAF
    if code == LeafCode.MAP:
        if depth >= MAX_DEPTH:
            raise InvalidError(f"maps nested deeper than {MAX_DEPTH} at offset {at}")
        return MapLeaf(_read_leaf_code(r, depth + 1))
    raise InvalidError(f"unknown ORMap value kind {code} at offset {at}")


def write_store(w: Writer, m: DotMap, table: list[int]) -> None:
    """Any dot map: flat rows, or key by key for nested maps."""
    if not isinstance(m.kind, MapLeaf):
        write_flat(w, m, table)
        return
    keys = m.keys()
    w.uvarint(len(keys))
    write_column(w, keys)
    for k in keys:
        write_store(w, m.overlay[k] if k in m.overlay else m.get(k), table)


def read_store(
    r: Reader, kind: LeafKind, table: list[int], ctx: CausalContext, seen: set[Dot], depth: int = 0
) -> DotMap:
    """Inverse of `write_store`; ``seen`` collects dots to reject duplicates across keys."""
    if not isinstance(kind, MapLeaf):
        m = read_flat(r, kind, table, ctx)
        if depth:
            for d in m.dots():
                if d in seen:
                    raise InvalidError(f"dot {d} appears under two keys")
                seen.add(d)
        return m
    at = r.pos
    n = r.count(2)
    keys = read_key_column(r, n).tolist()
    if [key_order(k) for k in keys] != sorted({key_order(k) for k in keys}):
        raise InvalidError(f"map keys at offset {at} are not unique and sorted")
    m = DotMap(kind)
    for k in keys:
        inner = read_store(r, kind.inner, table, ctx, seen, depth + 1)
        if not len(inner):
            raise InvalidError(f"key {k!r} maps to an empty store (bottom must be absent)")
        m.put(k, inner)
    return m


# -- per-type bodies ----------------------------------------------------------------------


def _write_totals(w: Writer, totals: dict[int, int]) -> None:
    w.uvarint(len(totals))
    for rid in sorted(totals):
        w.raw(rid.to_bytes(8, "big"))
        w.uvarint(totals[rid])


def _read_totals(r: Reader) -> dict[int, int]:
    n = r.count(9)
    out: dict[int, int] = {}
    prev = -1
    for _ in range(n):
        rid = int.from_bytes(r.raw(8), "big")
        total = r.uvarint()
        if rid <= prev or total == 0:
            raise InvalidError("counter totals must be positive, by strictly increasing replica")
        out[rid] = total
        prev = rid
    return out


def _encode_body(w: Writer, s: Crdt) -> Tag:
    if isinstance(s, GCounter):
        _write_totals(w, s.totals)
        return Tag.GCOUNTER
    if isinstance(s, PNCounter):
        _write_totals(w, s.pos.totals)
        _write_totals(w, s.neg.totals)
        return Tag.PNCOUNTER
    if isinstance(s, LWWRegister):
        w.uvarint(s.timestamp)
        w.raw(s.replica.to_bytes(8, "big"))
        write_value(w, s.val)
        return Tag.LWW_REGISTER
    if isinstance(s, MVRegister):
        table = write_context(w, s.context)
        m = DotMap(REGISTER_LEAF)
        if s.entries:
            m.put(0, s.entries)
        write_flat(w, m, table, keyed=False)
        return Tag.MV_REGISTER
    if isinstance(s, AWSet):
        write_store(w, s.store, write_context(w, s.context))
        return Tag.AWSET
    if isinstance(s, ORMap):
        _write_leaf_code(w, s.store.kind)
        write_store(w, s.store, write_context(w, s.context))
        return Tag.ORMAP
    if isinstance(s, AppendLog):
        _write_applog(w, s)
        return Tag.APPEND_LOG
    if isinstance(s, RGA):
        _write_rga(w, s)
        return Tag.RGA
    if isinstance(s, Weights):
        write_weights(w, s)
        return Tag.WEIGHTS
    raise TypeError(f"no encoding for {type(s).__name__}")


def _decode_body(r: Reader, tag: Tag) -> Crdt:
    if tag == Tag.GCOUNTER:
        return GCounter(_read_totals(r))
    if tag == Tag.PNCOUNTER:
        return PNCounter(GCounter(_read_totals(r)), GCounter(_read_totals(r)))
    if tag == Tag.LWW_REGISTER:
        ts = r.uvarint()
        if ts > MAX_TIMESTAMP:
            raise InvalidError(f"LWW timestamp {ts} is beyond {MAX_TIMESTAMP}")
        rid = int.from_bytes(r.raw(8), "big")
        return LWWRegister(ts, rid, read_value(r))
    if tag == Tag.MV_REGISTER:
        ctx, table = read_context(r)
        m = read_flat(r, REGISTER_LEAF, table, ctx, keyed=False)
        entries = m.get(0)
        return MVRegister(dict(entries) if entries else {}, ctx)
    if tag == Tag.AWSET:
        ctx, table = read_context(r)
        return AWSet(read_store(r, SET_LEAF, table, ctx, set()), ctx)
    if tag == Tag.ORMAP:
        kind = _read_leaf_code(r)
        if kind is SET_LEAF:
            raise InvalidError("an ORMap cannot hold bare dot sets (that is an AWSet)")
        ctx, table = read_context(r)
        return ORMap.with_kind(kind, read_store(r, kind, table, ctx, set()), ctx)
    if tag == Tag.APPEND_LOG:
        return _read_applog(r)
    if tag == Tag.RGA:
        return _read_rga(r)
    if tag == Tag.WEIGHTS:
        return read_weights(r)
    raise InvalidError(f"tag {tag.name} is not a state")


# -- AppendLog ----------------------------------------------------------------------------

_DTYPES = {"i8": 1, "f8": 2}


def _write_applog(w: Writer, s: AppendLog) -> None:
    w.uvarint(len(s.fields))
    for name, dtype in s.fields:
        w.text(name)
        w.byte(_DTYPES[dtype])
    writers = s.writers()
    w.uvarint(len(writers))
    for rid in writers:
        segs = s.logs[rid]
        w.raw(rid.to_bytes(8, "big"))
        w.uvarint(len(segs))
        for seg in segs:
            w.uvarint(seg.start)
            w.uvarint(seg.n)
            for name, dtype in s.fields:
                col = seg.view(name)
                w.raw(wire.encode_deltas(col) if dtype == "i8" else wire.encode_f64s(col))


def _read_applog(r: Reader) -> AppendLog:
    nf = r.count(2)
    fields = []
    names = set()
    for _ in range(nf):
        name = r.text()
        code = r.byte()
        if code not in (1, 2) or name in names:
            raise InvalidError(f"bad AppendLog field {name!r}")
        names.add(name)
        fields.append((name, "i8" if code == 1 else "f8"))
    log = AppendLog(tuple(fields))
    nw = r.count(9)
    prev = -1
    for _ in range(nw):
        rid = int.from_bytes(r.raw(8), "big")
        if rid <= prev:
            raise InvalidError("AppendLog writers must be strictly increasing")
        prev = rid
        nseg = r.count(2)
        segs: list[Segment] = []
        end = -2
        for _ in range(nseg):
            start, n = r.uvarint(), r.uvarint()
            if n == 0 or start <= end + 0 or (segs and start <= end):
                raise InvalidError("AppendLog segments must be non-empty, sorted and apart")
            if n > r.limit_items or n * max(1, len(fields)) > r.remaining:
                raise TruncatedError(f"segment of {n} rows is longer than the input")
            cols: dict[str, NDArray[Any]] = {}
            for name, dtype in fields:
                if dtype == "i8":
                    cols[name], r.pos = wire.decode_deltas(r.buffer, r.pos, n)
                else:
                    cols[name], r.pos = wire.decode_f64s(r.buffer, r.pos, n)
            segs.append(Segment(start, cols))
            end = start + n  # the next segment must leave a gap (else it would be merged)
        if not segs:
            raise InvalidError("an AppendLog writer with no rows must be absent")
        log.logs[rid] = segs
    return log


# -- RGA ----------------------------------------------------------------------------------


def _write_rga(w: Writer, s: RGA) -> None:
    """Columns: ids (Lamport deltas, replica indexes), origins, values; then tombstones.

    An origin is most often the element just before in id order (a typed or appended run),
    which costs one byte; any other origin is written as (Lamport distance, replica index).
    """
    ids = sorted(s.elements)
    reps = {rid for _, rid in ids} | {rid for _, rid in s.deleted}
    reps |= {o[1] for o, _ in s.elements.values() if o is not None}
    table = sorted(reps)
    index = {rid: i for i, rid in enumerate(table)}
    w.uvarint(len(table))
    for rid in table:
        w.raw(rid.to_bytes(8, "big"))
    w.uvarint(len(ids))
    w.raw(wire.encode_deltas(np.array([e[0] for e in ids], dtype=np.int64)))
    w.raw(wire.encode_uvarints(np.array([index[e[1]] for e in ids], dtype=np.uint64)))
    kinds = bytearray()
    far: list[tuple[int, int]] = []
    prev = None
    for eid in ids:
        origin = s.elements[eid][0]
        if origin is None:
            kinds.append(0)
        elif origin == prev:
            kinds.append(1)
        else:
            kinds.append(2)
            far.append((eid[0] - origin[0], index[origin[1]]))
        prev = eid
    w.raw(bytes(kinds))
    w.raw(wire.encode_uvarints(np.array([d for d, _ in far], dtype=np.uint64)))
    w.raw(wire.encode_uvarints(np.array([i for _, i in far], dtype=np.uint64)))
    write_column(w, [s.elements[e][1] for e in ids])
    dels = sorted(s.deleted)
    w.uvarint(len(dels))
    w.raw(wire.encode_deltas(np.array([d[0] for d in dels], dtype=np.int64)))
    w.raw(wire.encode_uvarints(np.array([index[d[1]] for d in dels], dtype=np.uint64)))


def _read_ids(
    r: Reader, table: list[int], n: int, what: str
) -> tuple[list[tuple[int, int]], NDArray[np.int64]]:
    """``n`` sorted RGA ids, and their Lamport times as an array."""
    lams, r.pos = wire.decode_deltas(r.buffer, r.pos, n)
    idx, r.pos = wire.decode_uvarints(r.buffer, r.pos, n)
    if n and (int(lams[0]) < 1 or int(idx.max()) >= len(table)):
        raise InvalidError(f"RGA {what}: Lamport time below 1 or replica index outside the table")
    # Strictly increasing (lamport, replica); the table is sorted, so indexes order replicas.
    step = np.diff(lams)
    if not np.all((step > 0) | ((step == 0) & (np.diff(idx.astype(np.int64)) > 0))):
        raise InvalidError(f"RGA {what} must be strictly increasing")
    reps = np.array(table, dtype=np.uint64)[idx].tolist() if n else []
    return list(zip(lams.tolist(), reps, strict=True)), lams


def _read_rga(r: Reader) -> RGA:
    nt = r.count(8)
    table = [int.from_bytes(r.raw(8), "big") for _ in range(nt)]
    if any(b <= a for a, b in pairwise(table)):
        raise InvalidError("RGA replica table must be strictly increasing")
    n = r.count(4)
    ids, lams = _read_ids(r, table, n, "element ids")
    kinds = r.raw(n)
    n_far = kinds.count(2)
    if len(kinds) - kinds.count(0) - kinds.count(1) != n_far:
        raise InvalidError("RGA origin kinds must be 0, 1 or 2")
    dist, r.pos = wire.decode_uvarints(r.buffer, r.pos, n_far)
    far_rep, r.pos = wire.decode_uvarints(r.buffer, r.pos, n_far)
    if n_far and int(far_rep.max()) >= len(table):
        raise InvalidError("RGA origin names a replica outside the table")
    values = read_column(r, n).tolist()
    chain = n > 0 and kinds[0] == 0 and kinds.count(1) == n - 1
    origins: list[tuple[int, int] | None]
    if chain:
        # One run typed or appended from the start (the common shape): each element's
        # origin is the one before it, and the document order is the id order.
        if not np.all(np.diff(lams) > 0):
            raise InvalidError("RGA elements in a run must have increasing Lamport times")
        origins = [None, *ids[:-1]]
    else:
        origins = []
        far = iter(zip(dist.tolist(), far_rep.tolist(), strict=True))
        prev: tuple[int, int] | None = None
        for eid, kind in zip(ids, kinds, strict=True):
            origin: tuple[int, int] | None = None
            if kind == 1:
                if prev is None or prev[0] >= eid[0]:
                    raise InvalidError(f"RGA element {eid} cannot follow the previous element")
                origin = prev
            elif kind == 2:
                d, ri = next(far)
                if not 1 <= d < eid[0]:
                    raise InvalidError(f"RGA element {eid} names an origin outside (0, its time)")
                origin = (eid[0] - d, table[ri])
                if origin == prev:
                    raise InvalidError("non-canonical RGA origin: it is the previous element")
            origins.append(origin)
            prev = eid
    elements = dict(zip(ids, zip(origins, values, strict=True), strict=True))
    nd = r.count(2)
    deleted = set(_read_ids(r, table, nd, "tombstones")[0])
    used = {e[1] for e in ids} | {e[1] for e in deleted}
    if not chain:
        used |= {o[1] for o in origins if o is not None}
    if used != set(table):
        raise InvalidError("RGA replica table lists a replica no element or tombstone uses")
    return RGA.from_parts(elements, deleted, order=ids if chain else None)


# -- entry points -------------------------------------------------------------------------


def encode(state: Crdt) -> bytes:
    """Canonical bytes of a state: ``tag, version, body``.

    Example:
        >>> from convergent.crdt import GCounter
        >>> encode(GCounter({1: 5})).hex()
        '010101000000000000000105'
    """
    w = Writer()
    w.raw(b"\0\0")
    tag = _encode_body(w, state)
    out = bytearray(w.getvalue())
    out[0], out[1] = tag, VERSIONS[tag]
    return bytes(out)


def decode(
    data: bytes | bytearray | memoryview, *, limit_items: int = wire.DEFAULT_LIMIT_ITEMS
) -> Crdt:
    """Decode one state; raises only `DecodeError` subclasses on bad input."""
    r = Reader(data, limit_items)
    raw_tag = r.byte()
    version = r.byte()
    try:
        tag = Tag(raw_tag)
    except ValueError:
        raise UnsupportedVersionError("type tag", raw_tag, [int(t) for t in Tag]) from None
    if version != VERSIONS[tag]:
        raise UnsupportedVersionError(f"{tag.name} format version", version, VERSIONS[tag])
    try:
        state = _decode_body(r, tag)
    except (ValueError, OverflowError, TypeError, KeyError, IndexError) as exc:
        # Belt and braces: a decoder bug must still surface as "invalid input".
        raise InvalidError(f"invalid {tag.name}: {exc}") from None
    r.done()
    return state


def decode_as(data: bytes | bytearray | memoryview, cls: type[T], **kwargs: Any) -> T:
    """Decode and check the type: ``decode_as(b, AWSet)``."""
    state = decode(data, **kwargs)
    if not isinstance(state, cls):
        raise InvalidError(f"expected {cls.__name__}, got {type(state).__name__}")
    return state
