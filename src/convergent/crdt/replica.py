"""`Replica`: one copy of a CRDT state, with an outbox of deltas and change subscribers.

Local mutations are joined into the state at once and into the *outbox*, a delta-group
(the join of deltas not yet shipped, Almeida et al. 2018, algorithm 2). Remote deltas are
joined into the state and, by default, into the outbox too, so a replica relays what it
learns (transitive propagation). Joins are idempotent, so shipping a group twice is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from convergent.crdt.base import Actor, CausalCrdt, Crdt
from convergent.crdt.causal import CausalContext, ReplicaId, new_replica_id
from convergent.crdt.clock import HybridLogicalClock

S = TypeVar("S", bound=Crdt)


@dataclass(frozen=True)
class Change(Generic[S]):
    """What a subscriber is told: the delta that changed the state and where it came from."""

    delta: S
    local: bool


class Subscription:
    """A removable handle, like ``torch.utils.hooks.RemovableHandle``."""

    __slots__ = ("_remove",)

    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove = remove

    def remove(self) -> None:
        """Stop notifying this subscriber (idempotent)."""
        self._remove()
        self._remove = lambda: None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Replica(Generic[S]):
    """A replica of one CRDT state.

    Example:
        >>> from convergent.crdt import AWSet
        >>> a, b = Replica(AWSet.initial()), Replica(AWSet.initial())
        >>> a.update(AWSet.add, "x")
        >>> b.update(AWSet.add, "y")
        >>> b.receive(a.take_outbox()); a.receive(b.take_outbox())
        >>> sorted(a.state), a.state == b.state
        (['x', 'y'], True)
    """

    def __init__(
        self,
        state: S,
        replica_id: ReplicaId | None = None,
        clock: HybridLogicalClock | None = None,
    ) -> None:
        self.state = state
        self.actor = Actor(
            replica_id if replica_id is not None else new_replica_id(),
            clock if clock is not None else HybridLogicalClock(),
        )
        self._outbox: S | None = None
        self._outbox_context: CausalContext | None = None
        self._subscribers: dict[int, Callable[[Change[S]], None]] = {}
        self._next_handle = 0

    @property
    def id(self) -> ReplicaId:
        return self.actor.replica

    def update(self, mutator: Callable[..., S], *args: Any, **kwargs: Any) -> None:
        """Run ``mutator(state, *args, by=actor, **kwargs)``, join its delta, ship it later."""
        self.mutate(mutator, *args, **kwargs)

    def mutate(self, mutator: Callable[..., S], *args: Any, **kwargs: Any) -> S:
        """Like `update`, returning the delta (for callers that ship it themselves)."""
        delta = mutator(self.state, *args, by=self.actor, **kwargs)
        self.state.join_inplace(delta)
        self._stage(delta)
        if self._subscribers:
            self._notify(Change(delta, local=True))
        return delta

    def receive(self, delta: S, *, relay: bool = True) -> None:
        """Join a delta (or a whole state) from another replica."""
        self.state.join_inplace(delta)
        if relay:
            self._stage(delta)
        if self._subscribers:
            self._notify(Change(delta, local=False))

    def _stage(self, delta: S) -> None:
        if isinstance(delta, CausalCrdt):
            # Causal states only remember which dots the group must cover; the group is the
            # state restricted to them when taken (`CausalCrdt.restrict`): one context
            # union per edit instead of a second join.
            if self._outbox_context is None:
                self._outbox_context = delta.context.copy()
            else:
                self._outbox_context.update(delta.context)
        elif self._outbox is None:
            self._outbox = delta.copy()
        else:
            self._outbox.join_inplace(delta)

    def take_outbox(self) -> S | None:
        """The delta-group accumulated since the last call (``None`` if nothing changed)."""
        if self._outbox_context is not None:
            ctx, self._outbox_context = self._outbox_context, None
            assert isinstance(self.state, CausalCrdt)
            return self.state.restrict(ctx)
        out, self._outbox = self._outbox, None
        return out

    def subscribe(self, callback: Callable[[Change[S]], None]) -> Subscription:
        """Call ``callback(change)`` after every local or remote change."""
        handle = self._next_handle
        self._next_handle += 1
        self._subscribers[handle] = callback
        return Subscription(lambda: self._subscribers.pop(handle, None) and None)

    def _notify(self, change: Change[S]) -> None:
        for callback in list(self._subscribers.values()):
            callback(change)
