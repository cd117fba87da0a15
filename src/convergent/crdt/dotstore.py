"""Dot stores: the shared engine of every causal CRDT (AWSet, MVRegister, ORMap).

Almeida et al. (2018, section 6) build every causal CRDT from three dot stores joined under
their causal contexts ``ca`` and ``cb``:

* a **dot set** (the leaf of an `AWSet` element): keep ``(a ∩ b) ∪ (a − cb) ∪ (b − ca)``;
* a **dot fun** ``dot -> (hlc, value)`` (an `MVRegister`): the same rule on its keys;
* a **dot map** ``key -> dot store`` (`AWSet`, `ORMap`): join per key, drop bottoms.

A dot in one state and not the other survives unless the other has *seen* it, which is how
a remove (a context without the entry) beats the entry it observed while a concurrent add
(a dot the remover never saw) wins.

`DotMap` is the one dot map implementation. It keeps keys in a dict for single-key edits
(the *overlay*) and bulk inserts in sorted numpy columns (the *block*), so a million-key
insert is one vectorized operation instead of a million Python objects. A key lives in
exactly one of the two. A dot index over the overlay makes joining a small delta into a large
state cost the size of the delta, not the size of the state.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from convergent.crdt.base import CausalCrdt
from convergent.crdt.causal import CausalContext, Dot, distinct_replicas
from convergent.crdt.values import Key, key_order, value_key

DotPair = tuple[int, int]
"""A dot as a plain pair: hot paths build these; `Dot` is the same tuple with names."""
DotSet = frozenset[DotPair]
DotFun = dict[DotPair, tuple[int, Any]]
"""``dot -> (hlc timestamp, value)``; treated as immutable once built."""

STR_KEYS = np.dtypes.StringDType()

FLUSH_MIN = 256
"""Joins and restrictions touching at least this many keys move dict entries into the block."""


def join_dotfun(
    a: DotFun | None, ca: CausalContext, b: DotFun | None, cb: CausalContext
) -> DotFun | None:
    """Join two dot funs; ``None`` is bottom. Never mutates its inputs."""
    if not b:
        if not a:
            return None
        kept = {d: v for d, v in a.items() if d not in cb}
        return kept or None
    if not a:
        kept = {d: v for d, v in b.items() if d not in ca}
        return kept or None
    out = {d: v for d, v in a.items() if d in b or d not in cb}
    for d, v in b.items():
        if d not in a and d not in ca:
            out[d] = v
    return out or None


def join_dotset(
    a: DotSet | None, ca: CausalContext, b: DotSet | None, cb: CausalContext
) -> DotSet | None:
    """Join two dot sets; ``None`` is bottom."""
    if a is None:
        a = frozenset()
    if b is None:
        b = frozenset()
    out = (a & b) | {d for d in a if d not in cb} | {d for d in b if d not in ca}
    return frozenset(out) if out else None


# -- leaf kinds ---------------------------------------------------------------------------


class LeafKind:
    """What a `DotMap` holds under each key; one instance per kind."""

    name: str = ""
    columnar = False

    def dots(self, store: Any) -> Iterable[Dot]:
        raise NotImplementedError

    def join(self, a: Any, ca: CausalContext, b: Any, cb: CausalContext) -> Any:
        raise NotImplementedError

    def equal(self, a: Any, b: Any) -> bool:
        raise NotImplementedError

    def restrict(self, store: Any, ctx: CausalContext) -> Any:
        """The part of ``store`` whose dots ``ctx`` holds (``None`` if nothing)."""
        raise NotImplementedError


class _SetLeaf(LeafKind):
    name = "set"
    columnar = True

    def restrict(self, store: Any, ctx: CausalContext) -> Any:
        kept = frozenset(d for d in store if d in ctx)
        return kept or None

    def dots(self, store: Any) -> Iterable[Dot]:
        return store  # type: ignore[no-any-return]

    def join(self, a: Any, ca: CausalContext, b: Any, cb: CausalContext) -> Any:
        return join_dotset(a, ca, b, cb)

    def equal(self, a: Any, b: Any) -> bool:
        return bool(a == b)


class _RegisterLeaf(LeafKind):
    name = "register"
    columnar = True

    def restrict(self, store: Any, ctx: CausalContext) -> Any:
        kept = {d: v for d, v in store.items() if d in ctx}
        return kept or None

    def dots(self, store: Any) -> Iterable[Dot]:
        return store.keys()  # type: ignore[no-any-return]

    def join(self, a: Any, ca: CausalContext, b: Any, cb: CausalContext) -> Any:
        return join_dotfun(a, ca, b, cb)

    def equal(self, a: Any, b: Any) -> bool:
        if a.keys() != b.keys():
            return False
        return all(a[d][0] == b[d][0] and value_key(a[d][1]) == value_key(b[d][1]) for d in a)


@dataclass(frozen=True, eq=False)
class MapLeaf(LeafKind):
    """A nested dot map (an embedded `AWSet` or `ORMap`)."""

    inner: LeafKind

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"map[{self.inner.name}]"

    def dots(self, store: Any) -> Iterable[Dot]:
        return store.dots()  # type: ignore[no-any-return]

    def join(self, a: Any, ca: CausalContext, b: Any, cb: CausalContext) -> Any:
        out = a.copy() if a is not None else DotMap(self.inner)
        out.join_inplace(b if b is not None else DotMap(self.inner), ca, cb)
        return out if len(out) else None

    def equal(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    def restrict(self, store: Any, ctx: CausalContext) -> Any:
        kept = store.restrict(ctx)
        return kept if len(kept) else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MapLeaf) and self.inner == other.inner

    def __hash__(self) -> int:
        return hash(("map", self.inner))


SET_LEAF: LeafKind = _SetLeaf()
REGISTER_LEAF: LeafKind = _RegisterLeaf()


# -- the columnar block -------------------------------------------------------------------


def key_column(keys: Iterable[Key] | NDArray[Any]) -> NDArray[Any]:
    """Keys as a sortable numpy column: int64 for ints, variable-width strings for str.

    ``StringDType`` and not ``'U'``: fixed-width numpy strings silently drop trailing NULs.
    Raises TypeError for keys that cannot be a column (bytes, mixed kinds).
    """
    if isinstance(keys, np.ndarray) and keys.dtype != object:
        if keys.dtype.kind in "iu":
            if keys.dtype == np.uint64 and keys.size and int(keys.max()) >= 1 << 63:
                raise TypeError("integer keys must fit in int64")
            return keys.astype(np.int64, copy=False)
        if keys.dtype.kind in "UT":
            return _str_column(keys)
        raise TypeError(f"keys of dtype {keys.dtype} cannot be set elements or map keys")
    items = keys.tolist() if isinstance(keys, np.ndarray) else list(keys)
    if all(type(k) is int for k in items):
        return np.array(items, dtype=np.int64)
    if all(type(k) is str for k in items):
        return _str_column(items)
    raise TypeError("a key column must hold only ints or only strs")


def _str_column(items: Any) -> NDArray[Any]:
    """A variable-width string column; lone surrogates are refused like `check_key` does."""
    try:
        if isinstance(items, np.ndarray):
            return items if items.dtype.kind == "T" else items.astype(STR_KEYS)
        return np.array(items, dtype=STR_KEYS)
    except (UnicodeEncodeError, TypeError):
        raise TypeError("a string column holds text that is not valid Unicode") from None


def value_array(items: list[Any]) -> NDArray[Any]:
    """Register values as the tightest numpy column that gives back exactly these values."""
    types = {type(v) for v in items}
    if types == {int} and all(-(1 << 63) <= v < (1 << 63) for v in items):
        return np.array(items, dtype=np.int64)
    if types == {float}:
        return np.array(items, dtype=np.float64)
    if types == {str}:
        return np.array(items, dtype=STR_KEYS)
    if types == {bool}:
        return np.array(items, dtype=np.bool_)
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):  # element-wise: tuples must stay scalars of the column
        out[i] = v
    return out


def column_kind(col: NDArray[Any]) -> type:
    return int if col.dtype.kind == "i" else str


class Block:
    """Rows ``(key, replica, counter[, hlc, value])`` sorted by key.

    The arrays are never written after construction (states share them); ``alive`` is the
    one mutable part and is copied with the block. Two indexes are built on first use and
    shared by copies: the keys as a Python list (``bisect`` finds a key in a million in a
    microsecond, where ``searchsorted`` on a string column scans) and the rows in dot order
    (so a small context finds the rows it covers without a pass over the block).
    """

    __slots__ = (
        "_dot_index",
        "_key_list",
        "_live_keys",
        "alive",
        "ctrs",
        "hlcs",
        "keys",
        "reps",
        "vals",
    )

    def __init__(
        self,
        keys: NDArray[Any],
        reps: NDArray[np.uint64],
        ctrs: NDArray[np.uint64],
        hlcs: NDArray[np.int64] | None,
        vals: NDArray[Any] | None,
        alive: NDArray[np.bool_],
    ) -> None:
        self.keys, self.reps, self.ctrs, self.hlcs, self.vals = keys, reps, ctrs, hlcs, vals
        self.alive = alive
        self._key_list: list[Any] | None = None
        self._dot_index: tuple[NDArray[np.intp], NDArray[np.uint64], NDArray[np.uint64]] | None = (
            None
        )
        self._live_keys: int | None = None

    def __repr__(self) -> str:
        return f"Block({int(self.alive.sum())} live rows of {len(self.keys)})"

    @property
    def key_type(self) -> type:
        return column_kind(self.keys)

    def copy(self) -> Block:
        out = Block(self.keys, self.reps, self.ctrs, self.hlcs, self.vals, self.alive.copy())
        out._key_list, out._dot_index, out._live_keys = (
            self._key_list,
            self._dot_index,
            self._live_keys,
        )
        return out

    def with_alive(self, alive: NDArray[np.bool_]) -> Block:
        """The same rows with another liveness mask (indexes shared)."""
        out = self.copy()
        out.alive = alive
        out._live_keys = None
        return out

    def compacted(self) -> Block:
        """Drop dead rows (a copy)."""
        a = self.alive
        return Block(
            self.keys[a],
            self.reps[a],
            self.ctrs[a],
            None if self.hlcs is None else self.hlcs[a],
            None if self.vals is None else self.vals[a],
            np.ones(int(a.sum()), dtype=np.bool_),
        )

    def kill(self, rows: NDArray[np.intp]) -> None:
        """Mark rows dead (their keys moved to the dict, or their dots were removed)."""
        if len(rows):
            self.alive[rows] = False
            self._live_keys = None

    def key_list(self) -> list[Any]:
        if self._key_list is None:
            self._key_list = self.keys.tolist()
        return self._key_list

    def rows_of(self, key: Key) -> NDArray[np.intp]:
        """Indices of the live rows for ``key``."""
        if type(key) is not self.key_type:
            return np.empty(0, dtype=np.intp)
        kl = self.key_list()
        lo = bisect_left(kl, key)
        if lo == len(kl) or kl[lo] != key:
            return np.empty(0, dtype=np.intp)
        hi = bisect_right(kl, key, lo)
        idx = np.arange(lo, hi, dtype=np.intp)
        return idx[self.alive[lo:hi]]

    def rows_for_keys(self, keys: Collection[Any]) -> dict[Any, NDArray[np.intp]]:
        """Live rows of each of ``keys`` held here (absent keys are left out)."""
        kl = self.key_list()
        out: dict[Any, NDArray[np.intp]] = {}
        if len(keys) * 32 < len(kl):
            for k in keys:
                rows = self.rows_of(k)
                if len(rows):
                    out[k] = rows
            return out
        # Many keys: one pass over the block beats a binary search per key.
        hits: dict[Any, list[int]] = {}
        for i, k in enumerate(kl):
            if k in keys:
                hits.setdefault(k, []).append(i)
        for k, idx in hits.items():
            rows = np.array(idx, dtype=np.intp)
            rows = rows[self.alive[rows]]
            if len(rows):
                out[k] = rows
        return out

    def rows_covered(self, ctx: CausalContext) -> NDArray[np.intp]:
        """Live rows whose dots ``ctx`` holds, found interval by interval in dot order."""
        if self._dot_index is None:
            order = np.lexsort((self.ctrs, self.reps))
            self._dot_index = (order, self.reps[order], self.ctrs[order])
        order, reps, ctrs = self._dot_index
        found: list[NDArray[np.intp]] = []
        for rid, ivs in ctx.items():
            s = int(np.searchsorted(reps, np.uint64(rid), side="left"))
            e = int(np.searchsorted(reps, np.uint64(rid), side="right"))
            if s == e:
                continue
            cs = ctrs[s:e]
            for lo, hi in ivs:
                i = int(np.searchsorted(cs, np.uint64(lo), side="left"))
                j = int(np.searchsorted(cs, np.uint64(hi), side="right"))
                if i < j:
                    found.append(order[s + i : s + j])
        if not found:
            return np.empty(0, dtype=np.intp)
        rows = np.concatenate(found)
        return rows[self.alive[rows]]

    def leaf(self, rows: NDArray[np.intp]) -> Any:
        """The dot set / dot fun that ``rows`` (all of one key) make up."""
        reps = self.reps[rows].tolist()
        ctrs = self.ctrs[rows].tolist()
        if self.hlcs is None:
            return frozenset(zip(reps, ctrs, strict=True))
        assert self.vals is not None
        hl = self.hlcs[rows].tolist()
        vs = self.vals[rows].tolist()
        return {(r, c): (h, v) for r, c, h, v in zip(reps, ctrs, hl, vs, strict=True)}

    def live_count(self) -> int:
        """Distinct keys among live rows (cached until rows die)."""
        if self._live_keys is None:
            k = self.keys[self.alive]
            self._live_keys = int(np.count_nonzero(k[1:] != k[:-1])) + 1 if len(k) else 0
        return self._live_keys


def sort_rows(
    keys: NDArray[Any],
    reps: NDArray[np.uint64],
    ctrs: NDArray[np.uint64],
    hlcs: NDArray[np.int64] | None,
    vals: NDArray[Any] | None,
) -> Block:
    """A block from unsorted rows, sorted by key (the order of rows within a key is free:
    readers build sets and dicts from them, and the codec writes rows in dot order)."""
    order = np.argsort(keys, kind="stable")
    return Block(
        keys[order],
        reps[order],
        ctrs[order],
        None if hlcs is None else hlcs[order],
        None if vals is None else vals[order],
        np.ones(len(order), dtype=np.bool_),
    )


def _packed_dots(
    reps: NDArray[np.uint64], ctrs: NDArray[np.uint64], table: NDArray[np.uint64]
) -> NDArray[np.uint64] | None:
    """Dots packed into one uint64 each (replica index in the high bits), for ``np.isin``."""
    if not len(ctrs):
        return np.empty(0, dtype=np.uint64)
    if int(ctrs.max()) >= 1 << 44 or len(table) >= 1 << 20:
        return None
    idx = np.searchsorted(table, reps).astype(np.uint64)
    packed: NDArray[np.uint64] = (idx << np.uint64(44)) | ctrs
    return packed


def _dots_in(reps: NDArray[np.uint64], ctrs: NDArray[np.uint64], other: Block) -> NDArray[np.bool_]:
    """``out[i]``: whether the dot of row i is a live row of ``other``."""
    live_r, live_c = other.reps[other.alive], other.ctrs[other.alive]
    table = np.array(distinct_replicas(np.concatenate([reps, live_r])), dtype=np.uint64)
    a, b = _packed_dots(reps, ctrs, table), _packed_dots(live_r, live_c, table)
    if a is not None and b is not None:
        return np.isin(a, b)
    theirs = set(zip(live_r.tolist(), live_c.tolist(), strict=True))
    return np.fromiter(
        ((r, c) in theirs for r, c in zip(reps.tolist(), ctrs.tolist(), strict=True)),
        dtype=np.bool_,
        count=len(ctrs),
    )


# -- the dot map --------------------------------------------------------------------------


class DotMap:
    """``key -> dot store`` for one `LeafKind`, with dict overlay and columnar block.

    Joined under contexts the caller passes (the causal context lives in the enclosing
    `AWSet`/`ORMap`, shared by every nested level, as in Almeida et al. section 6.3).
    """

    __slots__ = ("block", "kind", "overlay", "owner")

    def __init__(self, kind: LeafKind) -> None:
        self.kind = kind
        self.overlay: dict[Key, Any] = {}
        # The dot index: which overlay key holds each dot. Lets a small delta's context find
        # the few entries it removes without scanning the map.
        self.owner: dict[DotPair, Key] = {}
        self.block: Block | None = None

    # -- reading --------------------------------------------------------------------------
    def get(self, key: Key) -> Any:
        """The store under ``key``, or ``None``."""
        store = self.overlay.get(key)
        if store is None and self.block is not None:
            rows = self.block.rows_of(key)
            if len(rows):
                return self.block.leaf(rows)
        return store

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        n = len(self.overlay)
        if self.block is not None:
            n += self.block.live_count()
        return n

    def keys(self) -> list[Key]:
        """Every key, in canonical order."""
        ks: list[Key] = list(self.overlay)
        if self.block is not None:
            live = self.block.keys[self.block.alive]
            if len(live):
                ks.extend(np.unique(live).tolist())
        ks.sort(key=key_order)
        return ks

    def items(self) -> Iterator[tuple[Key, Any]]:
        """``(key, store)`` in canonical order."""
        for k in self.keys():
            yield k, self.get(k)

    def dots(self) -> Iterator[Dot]:
        """Every dot held (not the context)."""
        for store in self.overlay.values():
            yield from self.kind.dots(store)
        if self.block is not None:
            b = self.block
            for r, c in zip(b.reps[b.alive].tolist(), b.ctrs[b.alive].tolist(), strict=True):
                yield Dot(r, c)

    def copy(self) -> DotMap:
        out = DotMap(self.kind)
        if isinstance(self.kind, MapLeaf):
            out.overlay = {k: v.copy() for k, v in self.overlay.items()}
        else:
            out.overlay = dict(self.overlay)
        out.owner = dict(self.owner)
        out.block = None if self.block is None else self.block.copy()
        return out

    def keys_seen_by(self, ctx: CausalContext) -> set[Key]:
        """Dict keys holding a dot that ``ctx`` has seen, through the dot index: the context's
        dots are looked up when there are fewer of them than indexed dots, else the index is
        scanned."""
        owner = self.owner
        if ctx.dot_count() < len(owner):
            return {k for d in ctx.dots() if (k := owner.get(d)) is not None}
        return {k for d, k in owner.items() if d in ctx}

    def restrict(self, ctx: CausalContext) -> DotMap:
        """The entries whose dots ``ctx`` holds (see `CausalCrdt.restrict`)."""
        out = DotMap(self.kind)
        n = len(self.owner)
        if n >= FLUSH_MIN and 8 * ctx.dot_count() >= n and self.flush():
            keys: set[Key] = set()  # everything is in the block now: restrict it in one pass
        else:
            keys = self.keys_seen_by(ctx)
        for k in keys:
            out.put(k, self.kind.restrict(self.overlay[k], ctx))
        b = self.block
        if b is not None:
            hit = np.sort(b.rows_covered(ctx))  # back to key order
            if len(hit):
                out.block = Block(
                    b.keys[hit],
                    b.reps[hit],
                    b.ctrs[hit],
                    None if b.hlcs is None else b.hlcs[hit],
                    None if b.vals is None else b.vals[hit],
                    np.ones(len(hit), dtype=np.bool_),
                )
        return out

    # -- writing --------------------------------------------------------------------------
    def overlay_rows(self) -> tuple[list[Key], list[int], list[int], list[int], list[Any]]:
        """The dict entries of a flat map as row lists: keys, replicas, counters, HLCs, values
        (the last two empty for sets)."""
        ov = self.overlay
        # Flat comprehensions, not zip(*rows): unzipping 100k tuples costs twice as much.
        keys = [k for k, st in ov.items() for _ in st]
        dots = [d for st in ov.values() for d in st]
        reps = [d[0] for d in dots]
        ctrs = [d[1] for d in dots]
        if self.kind is not REGISTER_LEAF:
            return keys, reps, ctrs, [], []
        hvs = [hv for st in ov.values() for hv in st.values()]
        return keys, reps, ctrs, [h for h, _ in hvs], [v for _, v in hvs]

    def flush(self) -> bool:
        """Move every dict entry into the block, so large joins and encodings vectorize.

        Only flat kinds (sets, registers) whose keys are all ints or all strs can; returns
        whether it happened. The value is unchanged: this is a change of representation.
        """
        if not self.kind.columnar or not self.overlay:
            return False
        want = self.block.key_type if self.block is not None else type(next(iter(self.overlay)))
        if want not in (int, str) or any(type(k) is not want for k in self.overlay):
            return False
        register = self.kind is REGISTER_LEAF
        keys, reps, ctrs, hl, vals = self.overlay_rows()
        hcol = np.array(hl, dtype=np.int64) if register else None
        vcol = value_array(vals) if register else None
        kcol = np.array(keys, dtype=np.int64 if want is int else STR_KEYS)
        rcol = np.array(reps, dtype=np.uint64)
        ccol = np.array(ctrs, dtype=np.uint64)
        if self.block is not None:
            b = self.block.compacted()
            kcol = np.concatenate([b.keys, kcol])
            rcol = np.concatenate([b.reps, rcol])
            ccol = np.concatenate([b.ctrs, ccol])
            if register:
                assert b.hlcs is not None and b.vals is not None
                assert hcol is not None and vcol is not None
                hcol = np.concatenate([b.hlcs, hcol])
                vcol = _concat_values(b.vals, vcol)
        self.block = sort_rows(kcol, rcol, ccol, hcol, vcol)
        self.overlay = {}
        self.owner = {}
        return True

    def put(self, key: Key, store: Any) -> None:
        """Set the store under ``key`` (``None`` removes the key), keeping the index true."""
        old = self.overlay.get(key)
        if old is not None:
            for d in self.kind.dots(old):
                del self.owner[d]
        elif self.block is not None:
            self.block.kill(self.block.rows_of(key))
        if store is None:
            self.overlay.pop(key, None)
            return
        self.overlay[key] = store
        for d in self.kind.dots(store):
            self.owner[d] = key

    def _materialize(self, keys: Iterable[Key]) -> None:
        """Move ``keys`` from the block into the overlay."""
        if self.block is None:
            return
        for k in keys:
            rows = self.block.rows_of(k)
            if len(rows):
                store = self.block.leaf(rows)
                self.block.kill(rows)
                self.overlay[k] = store
                for d in self.kind.dots(store):
                    self.owner[d] = k

    def join_inplace(self, other: DotMap, ca: CausalContext, cb: CausalContext) -> None:
        """Join ``other`` (seen under ``cb``) into this map (seen under ``ca``)."""
        if other.block is None and self.block is None:
            self._join_overlays(other, ca, cb)
            return
        ob = other.block
        if ob is not None and self.overlay:
            # A large block is coming: move our dict entries into our block first, so the
            # whole join is a vectorized block join instead of a Python loop per key.
            n = int(ob.alive.sum())
            if n >= FLUSH_MIN and len(self.overlay) <= 8 * n:
                self.flush()
        # Keys they hold as dict entries become dict entries here too.
        self._materialize(other.overlay)
        incoming: dict[Key, Any] = {}
        if ob is not None and self.overlay:
            # Keys we hold as dict entries and they hold in their block: bring theirs up.
            found = ob.rows_for_keys(self.overlay)
            if found:
                mask = ob.alive.copy()
                for k, rows in found.items():
                    incoming[k] = ob.leaf(rows)
                    mask[rows] = False
                ob = ob.with_alive(mask)
        touched: set[Key] = set(other.overlay)
        touched.update(incoming)
        # Our dict keys holding a dot they have seen: their side may have removed it.
        touched.update(self.keys_seen_by(cb))
        if ob is not None:
            self._join_blocks(ob, ca, cb)
        elif self.block is not None:
            self.block.kill(self.block.rows_covered(cb))
        for k in touched:
            a = self.overlay.get(k)
            b = other.overlay.get(k, incoming.get(k))
            self.put(k, self.kind.join(a, ca, b, cb))

    def _join_overlays(self, other: DotMap, ca: CausalContext, cb: CausalContext) -> None:
        """The dict-only join: the path of every single-key edit, local or remote."""
        theirs = other.overlay
        # Their keys, and ours holding a dot they have seen but do not hold (removed there).
        touched = list(theirs)
        touched.extend(k for k in self.keys_seen_by(cb) if k not in theirs)
        join = self.kind.join
        overlay = self.overlay
        for k in touched:
            self.put(k, join(overlay.get(k), ca, theirs.get(k), cb))

    def _join_blocks(self, ob: Block, ca: CausalContext, cb: CausalContext) -> None:
        """Vectorized join of our block with ``ob`` (whose keys are not in our overlay)."""
        olive = np.flatnonzero(ob.alive)
        o_reps, o_ctrs = ob.reps[olive], ob.ctrs[olive]
        mine = self.block
        if mine is not None and mine.key_type is not ob.key_type:
            # Incompatible key kinds cannot share a column: fall back to dict entries.
            keys = np.unique(ob.keys[olive]).tolist()
            for k in keys:
                rows = ob.rows_of(k)
                self.put(k, self.kind.join(self.overlay.get(k), ca, ob.leaf(rows), cb))
            mine.kill(mine.rows_covered(cb))
            return
        # Their rows survive unless we have seen them (and, when seen, we hold them too).
        keep_o = ~ca.covers_many(o_reps, o_ctrs)
        if mine is None:
            alive = np.zeros(len(ob.keys), np.bool_)
            alive[olive[keep_o]] = True
            self.block = ob.with_alive(alive)
            return
        mlive = np.flatnonzero(mine.alive)
        m_reps, m_ctrs = mine.reps[mlive], mine.ctrs[mlive]
        keep_m = ~cb.covers_many(m_reps, m_ctrs)
        # A dot can only be in both blocks if both name its replica: skip the set
        # intersection when the writers are disjoint (two replicas' bulk imports).
        if set(distinct_replicas(m_reps)) & set(distinct_replicas(o_reps)):
            keep_m |= _dots_in(m_reps, m_ctrs, ob)
            # Rows they hold that we hold too are duplicates: keep ours.
            keep_o &= ~_dots_in(o_reps, o_ctrs, mine)
        if not keep_o.any():
            mine.kill(mlive[~keep_m])
            return
        mi, oi = mlive[keep_m], olive[keep_o]
        keys = np.concatenate([mine.keys[mi], ob.keys[oi]])
        reps = np.concatenate([mine.reps[mi], ob.reps[oi]])
        ctrs = np.concatenate([mine.ctrs[mi], ob.ctrs[oi]])
        hlcs = vals = None
        if mine.hlcs is not None and ob.hlcs is not None:
            hlcs = np.concatenate([mine.hlcs[mi], ob.hlcs[oi]])
        if mine.vals is not None and ob.vals is not None:
            vals = _concat_values(mine.vals[mi], ob.vals[oi])
        self.block = sort_rows(keys, reps, ctrs, hlcs, vals)

    # -- equality -------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DotMap):
            return NotImplemented
        if self.kind != other.kind or len(self) != len(other):
            return False
        if isinstance(self.kind, MapLeaf):
            return all(
                (b := other.get(k)) is not None and self.kind.equal(a, b) for k, a in self.items()
            )
        return self.rows() == other.rows()

    def __hash__(self) -> int:
        raise TypeError("DotMap is unhashable")

    def rows(self) -> Rows:
        """Every (key, dot[, hlc, value]) row in canonical order (flat kinds only)."""
        return Rows.gather(self)

    def __repr__(self) -> str:
        return f"DotMap[{self.kind.name}]({len(self)} keys)"


def _concat_values(a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
    if a.dtype == b.dtype or (a.dtype.kind == "T" and b.dtype.kind == "T"):
        return np.concatenate([a, b])
    # Mixed kinds (an int column meeting a str column) fall back to Python objects, which
    # keep each value's own type.
    out = np.empty(len(a) + len(b), dtype=object)
    out[: len(a)] = a.tolist()
    out[len(a) :] = b.tolist()
    return out


@dataclass
class Rows:
    """The canonical flat form of a `DotMap` of sets or registers: parallel columns.

    ``keys`` and ``values`` are Python lists, the rest numpy; sorted by
    (key order, replica, counter). Equality compares values by `value_key`.
    """

    keys: list[Key]
    reps: NDArray[np.uint64]
    ctrs: NDArray[np.uint64]
    hlcs: NDArray[np.int64] | None
    values: list[Any] | None

    @classmethod
    def gather(cls, m: DotMap) -> Rows:
        register = m.kind is REGISTER_LEAF
        ok, orr, oc, oh, ov = m.overlay_rows()
        b = m.block.compacted() if m.block is not None else None
        if b is not None and not ok:
            # Blocks are sorted by key only: order rows within a key by dot.
            order = np.lexsort((b.ctrs, b.reps, b.keys))
            return cls(
                b.keys[order].tolist(),
                b.reps[order],
                b.ctrs[order],
                None if b.hlcs is None else b.hlcs[order],
                None if b.vals is None else b.vals[order].tolist(),
            )
        keys: list[Key] = ok
        reps = np.array(orr, dtype=np.uint64)
        ctrs = np.array(oc, dtype=np.uint64)
        hlcs = np.array(oh, dtype=np.int64) if register else None
        values: list[Any] | None = ov if register else None
        if b is not None and len(b.keys):
            keys = keys + b.keys.tolist()
            reps = np.concatenate([reps, b.reps])
            ctrs = np.concatenate([ctrs, b.ctrs])
            if register:
                assert hlcs is not None and b.hlcs is not None and b.vals is not None
                hlcs = np.concatenate([hlcs, b.hlcs])
                values = ov + b.vals.tolist()
        if all(type(k) is int for k in keys):
            order = np.lexsort((ctrs, reps, np.array(keys, dtype=np.int64)))
        elif all(type(k) is str for k in keys):
            order = np.lexsort((ctrs, reps, np.array(keys, dtype=STR_KEYS)))
        else:
            order = np.array(
                sorted(
                    range(len(keys)),
                    key=lambda i: (key_order(keys[i]), int(reps[i]), int(ctrs[i])),
                ),
                dtype=np.intp,
            )
        ol = order.tolist()
        return cls(
            [keys[i] for i in ol],
            reps[order],
            ctrs[order],
            None if hlcs is None else hlcs[order],
            None if values is None else [values[i] for i in ol],
        )

    def __len__(self) -> int:
        return len(self.keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rows):
            return NotImplemented
        if len(self) != len(other) or [key_order(k) for k in self.keys] != [
            key_order(k) for k in other.keys
        ]:
            return False
        if not (np.array_equal(self.reps, other.reps) and np.array_equal(self.ctrs, other.ctrs)):
            return False
        if (self.hlcs is None) != (other.hlcs is None):
            return False
        if (
            self.hlcs is not None
            and other.hlcs is not None
            and not np.array_equal(self.hlcs, other.hlcs)
        ):
            return False
        if self.values is None or other.values is None:
            return self.values is other.values
        return [value_key(v) for v in self.values] == [value_key(v) for v in other.values]

    def __hash__(self) -> int:
        raise TypeError("Rows is unhashable")


# -- building blocks for bulk mutators ----------------------------------------------------


def unique_sorted(col: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.intp]]:
    """Sorted distinct values of a key column and the index of each one's first occurrence.

    A stable sort and a neighbour compare: faster than ``np.unique``'s hash path for large
    int64 columns.
    """
    order = np.argsort(col, kind="stable")
    s = col[order]
    first = np.ones(len(s), dtype=np.bool_)
    if len(s) > 1:
        first[1:] = s[1:] != s[:-1]
    return s[first], order[first]


def context_of(reps: NDArray[np.uint64], ctrs: NDArray[np.uint64]) -> CausalContext:
    """The context holding exactly these dots, built from runs (vectorized)."""
    ctx = CausalContext()
    if not len(ctrs):
        return ctx
    order = np.lexsort((ctrs, reps))
    r, c = reps[order], ctrs[order]
    # A run breaks where the replica changes or the counter does not step by one.
    brk = np.flatnonzero((r[1:] != r[:-1]) | (c[1:] != c[:-1] + np.uint64(1))) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk - 1, [len(c) - 1]])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        ctx.add_range(int(r[s]), int(c[s]), int(c[e]))
    return ctx


def observed_dots(m: DotMap, keys: NDArray[Any], into: CausalContext) -> None:
    """Add the dots ``m`` holds under any of ``keys`` to ``into`` (what a bulk write replaces)."""
    b = m.block
    if b is not None and b.keys.dtype.kind == keys.dtype.kind and b.alive.any():
        hit = np.flatnonzero(b.alive & np.isin(b.keys, keys))
        if len(hit):
            into.update(context_of(b.reps[hit], b.ctrs[hit]))
    if m.overlay:
        if len(m.overlay) < len(keys):
            wanted = column_kind(keys)
            mine = [k for k in m.overlay if type(k) is wanted]
            if mine:
                col = np.array(mine, dtype=keys.dtype)
                present = np.asarray(mine, dtype=object)[np.isin(col, keys)].tolist()
            else:
                present = []
        else:
            present = [k for k in keys.tolist() if k in m.overlay]
        for k in present:
            for d in m.kind.dots(m.overlay[k]):
                into.add(d[0], d[1])


class DotMapCrdt(CausalCrdt):
    """Shared body of `AWSet` and `ORMap`: a `DotMap` under one causal context."""

    __slots__ = ("context", "store")

    store: DotMap
    context: CausalContext

    def join_inplace(self, other: Self) -> None:
        self.store.join_inplace(other.store, self.context, other.context)
        self.context.update(other.context)

    def _like(self, store: DotMap, context: CausalContext) -> Self:
        raise NotImplementedError

    def restrict(self, context: CausalContext) -> Self:
        return self._like(self.store.restrict(context), context.copy())

    def copy(self) -> Self:
        return self._like(self.store.copy(), self.context.copy())

    def _remove_delta(self, keys: Iterable[Key]) -> Self:
        """Delta forgetting every dot held under ``keys`` (observed-remove)."""
        ctx = CausalContext()
        for k in keys:
            store = self.store.get(k)
            if store is not None:
                for d in self.store.kind.dots(store):
                    ctx.add(d[0], d[1])
        return self._like(DotMap(self.store.kind), ctx)

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, key: object) -> bool:
        return key in self.store

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DotMapCrdt) or type(other) is not type(self):
            return NotImplemented
        return self.context == other.context and self.store == other.store
