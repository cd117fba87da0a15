"""Counters: `GCounter` (grow-only) and `PNCounter` (increments and decrements).

A GCounter keeps one monotone total per replica; join takes the per-replica maximum, so a
duplicated or reordered delta is harmless. A PNCounter is two GCounters (Shapiro et al.,
"A comprehensive study of CRDTs", 2011, section 3.1.2).
"""

from __future__ import annotations

from typing import Self

from convergent.crdt.base import Actor, Crdt


class GCounter(Crdt):
    """A grow-only counter.

    Example:
        >>> from convergent.crdt import Actor, ReplicaId
        >>> a, b = GCounter.initial(), GCounter.initial()
        >>> a.join_inplace(a.increment(2, by=Actor(ReplicaId(1))))
        >>> b.join_inplace(b.increment(5, by=Actor(ReplicaId(2))))
        >>> a.join(b).value()
        7
    """

    __slots__ = ("totals",)
    type_name = "GCounter"

    def __init__(self, totals: dict[int, int] | None = None) -> None:
        # Zero totals are bottom: never stored, so equality is plain dict equality.
        self.totals: dict[int, int] = {r: n for r, n in totals.items() if n} if totals else {}

    @classmethod
    def initial(cls) -> Self:
        return cls()

    def increment(self, amount: int = 1, *, by: Actor) -> Self:
        """Delta adding ``amount`` (>= 0) to the writer's total."""
        if type(amount) is not int or amount < 0:
            raise ValueError(
                f"a GCounter only grows: increment must be an int >= 0, got {amount!r}"
            )
        return type(self)({by.replica: self.totals.get(by.replica, 0) + amount})

    def join_inplace(self, other: Self) -> None:
        totals = self.totals
        for rid, n in other.totals.items():
            if n > totals.get(rid, 0):
                totals[rid] = n

    def copy(self) -> Self:
        return type(self)(self.totals)

    def value(self) -> int:
        return sum(self.totals.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GCounter):
            return NotImplemented
        return self.totals == other.totals

    def __repr__(self) -> str:
        return f"GCounter({self.value()})"


class PNCounter(Crdt):
    """A counter that goes both ways: a GCounter of increments and one of decrements."""

    __slots__ = ("neg", "pos")
    type_name = "PNCounter"

    def __init__(self, pos: GCounter | None = None, neg: GCounter | None = None) -> None:
        self.pos = pos if pos is not None else GCounter()
        self.neg = neg if neg is not None else GCounter()

    @classmethod
    def initial(cls) -> Self:
        return cls()

    def increment(self, amount: int = 1, *, by: Actor) -> Self:
        """Delta adding ``amount`` (any int; negative amounts decrement)."""
        if type(amount) is not int:
            raise ValueError(f"increment must be an int, got {amount!r}")
        if amount >= 0:
            return type(self)(pos=self.pos.increment(amount, by=by))
        return type(self)(neg=self.neg.increment(-amount, by=by))

    def decrement(self, amount: int = 1, *, by: Actor) -> Self:
        """Delta subtracting ``amount``."""
        return self.increment(-amount, by=by)

    def join_inplace(self, other: Self) -> None:
        self.pos.join_inplace(other.pos)
        self.neg.join_inplace(other.neg)

    def copy(self) -> Self:
        return type(self)(self.pos.copy(), self.neg.copy())

    def value(self) -> int:
        return self.pos.value() - self.neg.value()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PNCounter):
            return NotImplemented
        return self.pos == other.pos and self.neg == other.neg

    def __repr__(self) -> str:
        return f"PNCounter({self.value()})"
