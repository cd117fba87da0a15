"""Registers: `LWWRegister` (one value, last writer wins) and `MVRegister` (conflicts kept).

`LWWRegister` orders writes by (HLC timestamp, replica id): the replica id breaks ties, so
every replica picks the same winner. `MVRegister` is a dot fun under a causal context: a
write replaces exactly the values its writer had seen, so two concurrent writes both stay
visible until a later write that saw both replaces them. Its `resolved` value is the entry
with the highest (HLC, replica), which every replica computes identically.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Self

from convergent.crdt.base import Actor, CausalCrdt, Crdt
from convergent.crdt.causal import CausalContext, Dot
from convergent.crdt.dotstore import DotFun, join_dotfun
from convergent.crdt.values import Value, check_value, value_key


class LWWRegister(Crdt):
    """A last-writer-wins register stamped by the writer's HLC.

    Example:
        >>> from convergent.crdt import Actor, ReplicaId, HybridLogicalClock
        >>> a = Actor(ReplicaId(1), HybridLogicalClock(wall=lambda: 10))
        >>> b = Actor(ReplicaId(2), HybridLogicalClock(wall=lambda: 20))
        >>> r = LWWRegister.initial()
        >>> r.join(r.set("x", by=a)).join(r.set("y", by=b)).value()
        'y'
    """

    __slots__ = ("replica", "timestamp", "val")
    type_name = "LWWRegister"

    def __init__(self, timestamp: int = 0, replica: int = 0, val: Value = None) -> None:
        self.timestamp = timestamp
        self.replica = replica
        self.val = val

    @classmethod
    def initial(cls) -> Self:
        return cls()

    def _order(self) -> tuple[int, int, tuple[Any, ...]]:
        # The value is the last tie-break: it only matters for states no honest replica
        # produces (one replica, one timestamp, two values), but it keeps join total.
        return (self.timestamp, self.replica, value_key(self.val))

    def set(self, value: Any, *, by: Actor) -> Self:
        """Delta writing ``value``; it wins over everything this replica has seen."""
        v = check_value(value)
        by.clock.observe(self.timestamp)
        return type(self)(by.clock.now(), by.replica, v)

    def join_inplace(self, other: Self) -> None:
        if other._order() > self._order():
            self.timestamp, self.replica, self.val = other.timestamp, other.replica, other.val

    def copy(self) -> Self:
        return type(self)(self.timestamp, self.replica, self.val)

    def value(self) -> Value:
        return self.val

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LWWRegister):
            return NotImplemented
        return self._order() == other._order()

    def __repr__(self) -> str:
        return f"LWWRegister({self.val!r} @ {self.timestamp} by {self.replica:x})"


class Entry(NamedTuple):
    """One value held by an `MVRegister`: who wrote it, when, and what."""

    dot: Dot
    timestamp: int
    value: Value


class MVRegister(CausalCrdt):
    """A multi-value register: concurrent writes are kept and surfaced as a conflict.

    Example:
        >>> from convergent.crdt import Actor, ReplicaId
        >>> alice, bob = Actor(ReplicaId(1)), Actor(ReplicaId(2))
        >>> r = MVRegister.initial()
        >>> both = r.join(r.set(0.1, by=alice)).join(r.set(0.02, by=bob))   # concurrent
        >>> sorted(both.value()), both.is_conflict
        ([0.02, 0.1], True)
        >>> fixed = both.join(both.set(0.05, by=alice))                      # saw both
        >>> fixed.value(), fixed.is_conflict
        ((0.05,), False)
    """

    __slots__ = ("context", "entries")
    type_name = "MVRegister"

    def __init__(self, entries: DotFun | None = None, context: CausalContext | None = None) -> None:
        self.entries: DotFun = entries if entries is not None else {}
        self.context = context if context is not None else CausalContext()

    @classmethod
    def initial(cls) -> Self:
        return cls()

    def set(self, value: Any, *, by: Actor) -> Self:
        """Delta writing ``value`` over every value this replica has seen."""
        v = check_value(value)
        for ts, _ in self.entries.values():
            by.clock.observe(ts)
        dot = self.context.next_dot(by.replica)
        ctx = CausalContext.of_dots(self.entries)
        ctx.add_range(dot.replica, dot.counter, dot.counter)
        return type(self)({dot: (by.clock.now(), v)}, ctx)

    def clear(self, *, by: Actor) -> Self:
        """Delta removing every value this replica has seen (the register becomes unset)."""
        del by  # observed-remove needs no new dot
        return type(self)({}, CausalContext.of_dots(self.entries))

    def join_inplace(self, other: Self) -> None:
        self.entries = join_dotfun(self.entries, self.context, other.entries, other.context) or {}
        self.context.update(other.context)

    def copy(self) -> Self:
        return type(self)(dict(self.entries), self.context.copy())

    def restrict(self, context: CausalContext) -> Self:
        return type(self)({d: v for d, v in self.entries.items() if d in context}, context.copy())

    def sorted_entries(self) -> list[Entry]:
        """The concurrent entries, oldest (HLC, replica) first."""
        return sorted(
            (Entry(Dot(*d), ts, v) for d, (ts, v) in self.entries.items()),
            key=lambda e: (e.timestamp, e.dot.replica, e.dot.counter),
        )

    def value(self) -> tuple[Value, ...]:
        """Every concurrent value, oldest first; one value when there is no conflict."""
        return tuple(e.value for e in self.sorted_entries())

    def resolved(self) -> Value:
        """The deterministic resolution: the value with the highest (HLC, replica)."""
        entries = self.sorted_entries()
        return entries[-1].value if entries else None

    @property
    def is_conflict(self) -> bool:
        """Whether concurrent writes are waiting for someone to resolve them."""
        return len(self.entries) > 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MVRegister):
            return NotImplemented
        if self.context != other.context or self.entries.keys() != other.entries.keys():
            return False
        return all(
            ts == other.entries[d][0] and value_key(v) == value_key(other.entries[d][1])
            for d, (ts, v) in self.entries.items()
        )

    def __repr__(self) -> str:
        return f"MVRegister({list(self.value())!r})"
