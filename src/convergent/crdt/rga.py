"""`RGA`: a replicated growable array (Roh et al., "Replicated abstract data types", 2011).

Every element has a unique id ``(lamport, replica)`` and names its *origin*, the element it
was inserted after. The document order is the depth-first walk of that tree with siblings in
descending id order; because a child's Lamport time always exceeds its origin's, integrating
an element is "step right past every element with a larger id", whatever order elements
arrive in. Deleted elements stay as tombstones (an ordered list needs them as anchors); the
state is a grow-only set of elements plus a grow-only set of tombstones, so join is a union.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Self

from convergent.crdt.base import Actor, Crdt
from convergent.crdt.values import Value, check_value, value_key

ElementId = tuple[int, int]
"""``(lamport, replica)``: unique, and totally ordered."""


class RGA(Crdt):
    """An ordered list with insert and delete.

    Example:
        >>> from convergent.crdt import Actor, ReplicaId
        >>> alice, bob = Actor(ReplicaId(1)), Actor(ReplicaId(2))
        >>> doc = RGA.initial()
        >>> doc.join_inplace(doc.extend(["a", "c"], by=alice))
        >>> x = doc.insert(1, "b", by=alice)        # concurrent edits
        >>> y = doc.delete(0, by=bob)
        >>> doc.join(x).join(y).value()
        ['b', 'c']
    """

    __slots__ = ("_cache", "_integrated", "_order", "_pending", "deleted", "elements", "lamport")
    type_name = "RGA"

    def __init__(self) -> None:
        self.elements: dict[ElementId, tuple[ElementId | None, Value]] = {}
        self.deleted: set[ElementId] = set()
        self.lamport = 0
        self._order: list[ElementId] = []  # integrated elements, document order
        self._integrated: set[ElementId] = set()
        self._pending: dict[ElementId, list[ElementId]] = {}  # origin -> waiting children
        self._cache: tuple[ElementId, int] | None = None  # last integrated (id, position)

    @classmethod
    def initial(cls) -> Self:
        return cls()

    # -- integration ----------------------------------------------------------------------
    def _position(self, eid: ElementId) -> int:
        c = self._cache
        if c is not None and c[1] < len(self._order) and self._order[c[1]] == eid:
            return c[1]
        return self._order.index(eid)

    def _integrate(self, eid: ElementId) -> None:
        order = self._order
        origin = self.elements[eid][0]
        pos = 0 if origin is None else self._position(origin) + 1
        n = len(order)
        while pos < n and order[pos] > eid:
            pos += 1
        order.insert(pos, eid)
        self._cache = (eid, pos)

    def _add(self, eid: ElementId, origin: ElementId | None, value: Value) -> None:
        self.elements[eid] = (origin, value)
        self.lamport = max(self.lamport, eid[0])
        if origin is not None and origin not in self._integrated:
            # Its origin has not arrived (deltas may come in any order): wait for it.
            self._pending.setdefault(origin, []).append(eid)
            return
        stack = [eid]
        while stack:
            e = stack.pop()
            self._integrate(e)
            self._integrated.add(e)
            stack.extend(self._pending.pop(e, ()))

    # -- mutators -------------------------------------------------------------------------
    def _visible(self) -> list[ElementId]:
        deleted = self.deleted
        return [e for e in self._order if e not in deleted]

    def insert(self, index: int, value: Any, *, by: Actor) -> Self:
        """Delta inserting ``value`` so that it lands at ``index`` (0 <= index <= len)."""
        return self.insert_many(index, [value], by=by)

    def insert_many(self, index: int, values: Iterable[Any], *, by: Actor) -> Self:
        """Delta inserting ``values`` in order at ``index``: one chain, linear in its length."""
        visible = self._visible()
        if not 0 <= index <= len(visible):
            raise IndexError(f"insert index {index} out of range for a list of {len(visible)}")
        return self._chain(visible[index - 1] if index else None, values, by)

    def _chain(self, origin: ElementId | None, values: Iterable[Any], by: Actor) -> Self:
        out = type(self)()
        lamport = self.lamport
        for v in values:
            lamport += 1
            eid = (lamport, int(by.replica))
            out._add(eid, origin, check_value(v))
            origin = eid
        return out

    def append(self, value: Any, *, by: Actor) -> Self:
        """Delta appending ``value`` at the end."""
        return self.extend([value], by=by)

    def extend(self, values: Iterable[Any], *, by: Actor) -> Self:
        """Delta appending ``values`` at the end, in time linear in ``len(values)``."""
        # The last visible element, found from the end: O(1) unless the tail was deleted.
        origin = next((e for e in reversed(self._order) if e not in self.deleted), None)
        return self._chain(origin, values, by)

    def delete(self, index: int, *, by: Actor) -> Self:
        """Delta deleting the element at ``index``."""
        del by
        visible = self._visible()
        if not 0 <= index < len(visible):
            raise IndexError(f"delete index {index} out of range for a list of {len(visible)}")
        out = type(self)()
        out.deleted.add(visible[index])
        return out

    # -- lattice --------------------------------------------------------------------------
    def join_inplace(self, other: Self) -> None:
        elements = self.elements
        new = [e for e in other.elements if e not in elements]
        if len(new) > 64 and 4 * len(new) > len(self._order):
            # Many new elements: one walk of the whole tree beats shifting a Python list
            # once per element (which is quadratic when a long run lands near the front).
            for e in new:
                elements[e] = other.elements[e]
            self._rebuild()
        else:
            # Origins first: other's integrated order is causal, its pending ones wait anyway.
            for eid in other._order:
                if eid not in elements:
                    origin, value = other.elements[eid]
                    self._add(eid, origin, value)
            for eid in new:
                if eid not in elements:
                    origin, value = other.elements[eid]
                    self._add(eid, origin, value)
        self.deleted |= other.deleted
        self.lamport = max(self.lamport, other.lamport)

    def _rebuild(self) -> None:
        """Recompute the document order from the tree: depth first, larger ids first."""
        children: dict[ElementId | None, list[ElementId]] = {}
        for eid, (origin, _) in self.elements.items():
            children.setdefault(origin, []).append(eid)
        order: list[ElementId] = []
        stack = sorted(children.get(None, ()))
        while stack:
            e = stack.pop()
            order.append(e)
            kids = children.get(e)
            if kids:
                kids.sort()
                stack.extend(kids)
        self._order = order
        self._integrated = set(order)
        self._pending = {}
        for eid, (origin, _) in self.elements.items():
            if eid not in self._integrated:
                assert origin is not None
                self._pending.setdefault(origin, []).append(eid)
        self._cache = None
        if self.elements:
            self.lamport = max(self.lamport, *(e[0] for e in self.elements))

    @classmethod
    def from_parts(
        cls,
        elements: dict[ElementId, tuple[ElementId | None, Value]],
        deleted: set[ElementId],
        order: list[ElementId] | None = None,
    ) -> Self:
        """A state from its element set and tombstones (the codec's constructor).

        ``order`` may be given when the elements are one chain (each one's origin is the
        one before it in ``order``): the tree is then a path and needs no walk.
        """
        out = cls()
        out.elements = elements
        out.deleted = deleted
        if order is None:
            out._rebuild()
        else:
            out._order = order
            out._integrated = set(order)
            out.lamport = order[-1][0] if order else 0
        return out

    def copy(self) -> Self:
        out = type(self)()
        out.elements = dict(self.elements)
        out.deleted = set(self.deleted)
        out.lamport = self.lamport
        out._order = list(self._order)
        out._integrated = set(self._integrated)
        out._pending = {k: list(v) for k, v in self._pending.items()}
        return out

    # -- reading --------------------------------------------------------------------------
    def value(self) -> list[Value]:
        deleted, elements = self.deleted, self.elements
        return [elements[e][1] for e in self._order if e not in deleted]

    def __len__(self) -> int:
        return sum(1 for e in self._order if e not in self.deleted)

    def __iter__(self) -> Iterator[Value]:
        return iter(self.value())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RGA):
            return NotImplemented
        if self.deleted != other.deleted or self.elements.keys() != other.elements.keys():
            return False
        return all(
            o == other.elements[e][0] and value_key(v) == value_key(other.elements[e][1])
            for e, (o, v) in self.elements.items()
        )

    def __repr__(self) -> str:
        return f"RGA({self.value()!r})" if len(self.elements) < 20 else f"RGA({len(self)} items)"
