"""`AWSet`: the add-wins observed-remove set, without tombstones.

Each element carries the dots of the adds that put it there; a remove forgets exactly the
dots it observed, so an add the remover never saw survives it (add wins). Removed elements
leave nothing behind but their dots in the causal context (Almeida et al. 2018, section 7.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from convergent.crdt.base import Actor
from convergent.crdt.causal import CausalContext, Dot
from convergent.crdt.dotstore import (
    SET_LEAF,
    Block,
    DotMap,
    DotMapCrdt,
    key_column,
    observed_dots,
    unique_sorted,
)
from convergent.crdt.values import Key, check_key


class AWSet(DotMapCrdt):
    """An add-wins set of ints, strs or bytes.

    Example:
        >>> from convergent.crdt import Actor, ReplicaId
        >>> alice, bob = Actor(ReplicaId(1)), Actor(ReplicaId(2))
        >>> s = AWSet.initial()
        >>> s.join_inplace(s.add("cat", by=alice))
        >>> removed = s.remove("cat", by=alice)      # alice removes what she saw
        >>> re_added = s.add("cat", by=bob)          # bob re-adds concurrently
        >>> sorted(s.join(removed).join(re_added))   # add wins
        ['cat']
    """

    __slots__ = ()
    type_name = "AWSet"

    def __init__(self, store: DotMap | None = None, context: CausalContext | None = None) -> None:
        self.store = store if store is not None else DotMap(SET_LEAF)
        self.context = context if context is not None else CausalContext()

    @classmethod
    def initial(cls) -> Self:
        return cls()

    def _like(self, store: DotMap, context: CausalContext) -> Self:
        return type(self)(store, context)

    # -- mutators -------------------------------------------------------------------------
    def add(self, element: Any, *, by: Actor) -> Self:
        """Delta adding ``element``; it replaces the adds this replica has seen."""
        k = check_key(element)
        dot = self.context.next_dot(by.replica)
        delta = self._remove_delta((k,))
        delta.context.add(dot.replica, dot.counter)
        delta.store.put(k, frozenset((dot,)))
        return delta

    def remove(self, element: Any, *, by: Actor) -> Self:
        """Delta removing ``element`` as this replica sees it (a no-op if absent)."""
        del by  # observed-remove needs no new dot
        return self._remove_delta((check_key(element),))

    def add_many(self, elements: Iterable[Key] | NDArray[Any], *, by: Actor) -> Self:
        """Delta adding many elements at once: one contiguous dot range, numpy columns.

        Duplicates in ``elements`` are added once. Ints and strs only (one kind per call).
        """
        keys = unique_sorted(key_column(elements))[0]
        n = len(keys)
        first = self.context.max_counter(by.replica) + 1
        ctx = CausalContext()
        if n:
            observed_dots(self.store, keys, ctx)
            ctx.add_range(by.replica, first, first + n - 1)
        store = DotMap(SET_LEAF)
        if not n:
            return type(self)(store, ctx)
        store.block = Block(
            keys,
            np.full(n, by.replica, dtype=np.uint64),
            np.arange(first, first + n, dtype=np.uint64),
            None,
            None,
            np.ones(n, dtype=np.bool_),
        )
        return type(self)(store, ctx)

    def remove_many(self, elements: Iterable[Key] | NDArray[Any], *, by: Actor) -> Self:
        """Delta removing many elements at once (those this replica sees)."""
        del by
        ctx = CausalContext()
        keys = unique_sorted(key_column(elements))[0]
        if len(keys):
            observed_dots(self.store, keys, ctx)
        return type(self)(DotMap(SET_LEAF), ctx)

    # -- reading --------------------------------------------------------------------------
    def elements(self) -> list[Key]:
        """The elements, in canonical order (ints, then bytes, then strs)."""
        return self.store.keys()

    def __iter__(self) -> Iterator[Key]:
        return iter(self.elements())

    def value(self) -> frozenset[Key]:
        return frozenset(self.elements())

    def dots_of(self, element: Key) -> frozenset[Dot]:
        """The add events that keep ``element`` in the set (more than one after concurrent adds)."""
        store = self.store.get(element)
        return store if store is not None else frozenset()

    def __repr__(self) -> str:
        n = len(self)
        shown = self.elements()[:8] if n <= 1000 else []
        return f"AWSet({n} elements{': ' + repr(shown) if shown else ''})"
