"""The one contract every CRDT type in `convergent.crdt` follows.

``initial()`` is the bottom state; mutators take the writer (`Actor`) and return a *delta*,
itself a state of the same type; ``join`` is the least upper bound (idempotent, commutative,
associative, never raises); ``value()`` is what users read; ``==`` is structural. For every
mutator ``m``: ``state.join(state.m(..., by=a)) == state after the mutation`` (Almeida et al.,
"Delta State Replicated Data Types", 2018, definition 2.3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from convergent.crdt.causal import CausalContext, ReplicaId
from convergent.crdt.clock import HybridLogicalClock


@dataclass(frozen=True)
class Actor:
    """Who is writing: the replica id that names new dots and the clock that stamps them."""

    replica: ReplicaId
    clock: HybridLogicalClock = field(default_factory=HybridLogicalClock, compare=False)


class Crdt(ABC):
    """Base of every state type: the join-semilattice contract."""

    __slots__ = ()

    type_name: ClassVar[str]

    @classmethod
    @abstractmethod
    def initial(cls) -> Self:
        """The bottom state: joining it changes nothing."""

    @abstractmethod
    def join_inplace(self, other: Self) -> None:
        """Join ``other`` into this state (the replica's hot path; ``other`` is not changed)."""

    @abstractmethod
    def copy(self) -> Self:
        """An independent copy: later in-place joins of either leave the other alone."""

    @abstractmethod
    def value(self) -> Any:
        """The user-visible value."""

    @abstractmethod
    def __eq__(self, other: object) -> bool: ...

    def __hash__(self) -> int:
        raise TypeError(f"{type(self).__name__} is mutable and unhashable")

    def join(self, other: Self) -> Self:
        """The least upper bound of two states, as a new state."""
        out = self.copy()
        out.join_inplace(other)
        return out

    def __or__(self, other: Self) -> Self:
        return self.join(other)


class CausalCrdt(Crdt):
    """A state made of dots under a causal context (`MVRegister`, `AWSet`, `ORMap`).

    Such a state can be *restricted* to a context: the entries whose dots it holds, under
    that context. If ``c`` is the union of some deltas' contexts, ``state.restrict(c)`` is
    at least every one of those deltas and at most the state, so it serves as their
    delta-group without joining them one by one (the replica's outbox relies on this).
    """

    __slots__ = ()

    context: CausalContext

    @abstractmethod
    def restrict(self, context: CausalContext) -> Self:
        """The part of this state that ``context`` names, under ``context``."""
