"""Identity and causality: replica ids, dots and the causal context.

A *dot* ``(replica, counter)`` names one write event. A replica numbers its events
1, 2, 3, ... so the set of events a replica has seen is, per writer, a set of counters.
`CausalContext` keeps that set as sorted, disjoint, non-adjacent inclusive intervals per
replica. The interval starting at 1 is the classic version vector entry; any further
intervals are the "dot cloud" of delta-CRDTs (Almeida, Shoker, Baquero 2018, section 4),
which appears when deltas arrive out of order. Adjacent intervals are coalesced on every
insertion, so the cloud is compacted on join as a matter of representation: a context has
exactly one form, which also makes equality structural.

Bulk mutators name a million events with one interval, so the context never grows with the
number of dots, only with the number of gaps.
"""

from __future__ import annotations

import secrets
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple, NewType

import numpy as np
from numpy.typing import NDArray

ReplicaId = NewType("ReplicaId", int)
"""A random 64-bit replica id; never reused (a process that lost its state takes a new one)."""

Interval = tuple[int, int]
"""An inclusive counter range ``(lo, hi)`` with ``1 <= lo <= hi``."""


def new_replica_id() -> ReplicaId:
    """Draw a fresh random non-zero 64-bit replica id."""
    while True:
        rid = secrets.randbits(64)
        if rid:
            return ReplicaId(rid)


def distinct_replicas(replicas: NDArray[np.uint64]) -> list[int]:
    """The distinct ids in a replica column, sorted.

    Columns name few writers, so peeling one id at a time (O(rows x writers)) beats the
    hash or sort that ``np.unique`` would spend on a million rows.
    """
    out: list[int] = []
    rest = replicas
    while len(rest):
        if len(out) >= 32:
            return sorted(set(out) | set(np.unique(rest).tolist()))
        rid = rest[0]
        out.append(int(rid))
        rest = rest[rest != rid]
    return sorted(out)


class Dot(NamedTuple):
    """One write event: the ``counter``-th event of ``replica``."""

    replica: int
    counter: int


def _insert(intervals: list[Interval], lo: int, hi: int) -> None:
    """Insert ``[lo, hi]`` into sorted disjoint non-adjacent intervals, coalescing in place."""
    i = bisect_right(intervals, (lo, hi))
    # Step back while the previous interval touches [lo, hi] (overlaps or is adjacent).
    while i > 0 and intervals[i - 1][1] + 1 >= lo:
        i -= 1
    j = i
    new_lo, new_hi = lo, hi
    while j < len(intervals) and intervals[j][0] <= new_hi + 1:
        new_lo = min(new_lo, intervals[j][0])
        new_hi = max(new_hi, intervals[j][1])
        j += 1
    intervals[i:j] = [(new_lo, new_hi)]


def _contains(intervals: list[Interval], counter: int) -> bool:
    if not intervals:
        return False
    first = intervals[0]
    if first[0] <= counter <= first[1]:
        return True
    i = bisect_right(intervals, (counter, 1 << 127)) - 1
    return i >= 0 and intervals[i][0] <= counter <= intervals[i][1]


def _covers(outer: list[Interval], inner: list[Interval]) -> bool:
    """Whether every counter of ``inner`` lies in ``outer`` (both sorted and coalesced)."""
    i = 0
    for lo, hi in inner:
        while i < len(outer) and outer[i][1] < lo:
            i += 1
        if i == len(outer) or not (outer[i][0] <= lo and hi <= outer[i][1]):
            return False
    return True


class CausalContext:
    """The set of dots a state has seen, as per-replica intervals.

    Example:
        >>> ctx = CausalContext()
        >>> ctx.add(7, 1); ctx.add(7, 2); ctx.add(7, 5)
        >>> ctx.version_vector(), ctx.cloud()
        ({7: 2}, {7: ((5, 5),)})
        >>> Dot(7, 2) in ctx, Dot(7, 3) in ctx
        (True, False)
    """

    __slots__ = ("_by_replica",)

    def __init__(self, by_replica: Mapping[int, Iterable[Interval]] | None = None) -> None:
        self._by_replica: dict[int, list[Interval]] = {}
        if by_replica:
            for rid, ivs in by_replica.items():
                for lo, hi in ivs:
                    self.add_range(rid, lo, hi)

    # -- building -------------------------------------------------------------------------
    def add(self, replica: int, counter: int) -> None:
        """Record one dot."""
        self.add_range(replica, counter, counter)

    def add_range(self, replica: int, lo: int, hi: int) -> None:
        """Record the dots ``(replica, lo..hi)`` inclusive."""
        if lo < 1 or hi < lo:
            raise ValueError(f"invalid counter range {lo}..{hi}")
        ivs = self._by_replica.get(replica)
        if ivs is None:
            self._by_replica[replica] = [(lo, hi)]
        elif lo == ivs[-1][1] + 1:
            ivs[-1] = (ivs[-1][0], hi)
        else:
            _insert(ivs, lo, hi)

    def update(self, other: CausalContext) -> None:
        """Join ``other`` into this context in place (set union)."""
        for rid, ivs in other._by_replica.items():
            mine = self._by_replica.get(rid)
            if mine is None:
                self._by_replica[rid] = list(ivs)
            elif mine != ivs:
                for lo, hi in ivs:
                    if lo == mine[-1][1] + 1:
                        mine[-1] = (mine[-1][0], hi)  # the common case: the next event
                    elif not (mine[0][0] <= lo and hi <= mine[0][1]):
                        _insert(mine, lo, hi)

    def copy(self) -> CausalContext:
        """An independent copy."""
        out = CausalContext()
        out._by_replica = {rid: list(ivs) for rid, ivs in self._by_replica.items()}
        return out

    def join(self, other: CausalContext) -> CausalContext:
        """The union of two contexts, as a new context."""
        out = self.copy()
        out.update(other)
        return out

    # -- reading --------------------------------------------------------------------------
    def __contains__(self, dot: object) -> bool:
        try:
            ivs = self._by_replica.get(dot[0])  # type: ignore[index]
        except (TypeError, IndexError, KeyError):
            return False
        if ivs is None:
            return False
        c = dot[1]  # type: ignore[index]
        lo, hi = ivs[0]
        return (lo <= c <= hi) or (len(ivs) > 1 and _contains(ivs, c))

    def max_counter(self, replica: int) -> int:
        """The highest counter seen from ``replica`` (0 if none): the next dot is this + 1."""
        ivs = self._by_replica.get(replica)
        return ivs[-1][1] if ivs else 0

    def next_dot(self, replica: int) -> Dot:
        """The dot a new event of ``replica`` takes."""
        return Dot(replica, self.max_counter(replica) + 1)

    def replicas(self) -> list[int]:
        """Replica ids with at least one dot, sorted."""
        return sorted(self._by_replica)

    def intervals(self, replica: int) -> tuple[Interval, ...]:
        """The intervals seen from ``replica``, sorted."""
        return tuple(self._by_replica.get(replica, ()))

    def items(self) -> Iterator[tuple[int, tuple[Interval, ...]]]:
        """``(replica, intervals)`` pairs in replica order (canonical)."""
        for rid in sorted(self._by_replica):
            yield rid, tuple(self._by_replica[rid])

    def replicas_beyond(self, other: CausalContext) -> list[int]:
        """Sorted ids of the replicas with a dot here that ``other`` lacks.

        Cheap where the two mostly agree (a replica whose intervals are equal costs one list
        comparison): what `Run.export_since` asks before it looks in the store.
        """
        theirs = other._by_replica
        out = []
        for rid, ivs in self._by_replica.items():
            held = theirs.get(rid)
            if held != ivs and (held is None or not _covers(held, ivs)):
                out.append(rid)
        out.sort()
        return out

    def version_vector(self) -> dict[int, int]:
        """The contiguous prefix ``1..n`` seen from each replica."""
        return {rid: ivs[0][1] for rid, ivs in sorted(self._by_replica.items()) if ivs[0][0] == 1}

    def cloud(self) -> dict[int, tuple[Interval, ...]]:
        """The dots outside the version vector (gaps from out-of-order deltas)."""
        out: dict[int, tuple[Interval, ...]] = {}
        for rid, ivs in sorted(self._by_replica.items()):
            rest = tuple(ivs[1:]) if ivs[0][0] == 1 else tuple(ivs)
            if rest:
                out[rid] = rest
        return out

    @classmethod
    def of_dots(cls, dots: Iterable[tuple[int, int]]) -> CausalContext:
        """The context holding exactly ``dots``."""
        ctx = cls()
        for r, c in dots:
            ctx.add_range(r, c, c)
        return ctx

    def dot_count(self) -> int:
        """How many dots the context holds."""
        return sum(hi - lo + 1 for ivs in self._by_replica.values() for lo, hi in ivs)

    def dots(self) -> Iterator[tuple[int, int]]:
        """Every dot as a ``(replica, counter)`` pair (a version vector may hold millions)."""
        for rid, ivs in self._by_replica.items():
            for lo, hi in ivs:
                for c in range(lo, hi + 1):
                    yield (rid, c)

    def is_empty(self) -> bool:
        """Whether no dot has been seen."""
        return not self._by_replica

    def covers_many(
        self, replicas: NDArray[np.uint64], counters: NDArray[np.uint64]
    ) -> NDArray[np.bool_]:
        """Vectorized membership: ``out[i] = (replicas[i], counters[i]) in self``."""
        out = np.zeros(len(counters), dtype=np.bool_)
        if not len(counters) or not self._by_replica:
            return out
        for rid in distinct_replicas(replicas):
            ivs = self._by_replica.get(int(rid))
            if not ivs:
                continue
            sel = replicas == np.uint64(rid)
            c = counters[sel]
            los = np.fromiter((lo for lo, _ in ivs), dtype=np.uint64, count=len(ivs))
            his = np.fromiter((hi for _, hi in ivs), dtype=np.uint64, count=len(ivs))
            i = np.searchsorted(los, c, side="right").astype(np.int64) - 1
            ok = i >= 0
            hit = np.zeros(len(c), dtype=np.bool_)
            hit[ok] = c[ok] <= his[i[ok]]
            out[sel] = hit
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalContext):
            return NotImplemented
        return self._by_replica == other._by_replica

    def __hash__(self) -> int:
        raise TypeError("CausalContext is mutable and unhashable")

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{rid:x}:" + "+".join(f"{lo}..{hi}" if lo != hi else f"{lo}" for lo, hi in ivs)
            for rid, ivs in self.items()
        )
        return f"CausalContext({parts})"
