"""A seeded, deterministic simulated network for testing replicated systems.

This plays the role of Yjs's ``TestConnector`` (``tests/testHelper.js``): replicas
exchange opaque ``bytes`` through a :class:`SimulatedNetwork` that can lose,
duplicate, reorder and partition messages. There are no threads, no asyncio and
no clocks; the network advances only when a test calls :meth:`SimulatedNetwork.deliver_one`
or :meth:`SimulatedNetwork.deliver_all`, and every random choice comes from one
``random.Random(seed)``. The same seed and the same sequence of calls therefore
always produce the same delivery sequence, so a failing Hypothesis example or a
fuzzing seed replays exactly.

The module is deliberately generic: it knows nothing about CRDTs, only about
nodes (any hashable names) and byte strings.

Example:
    >>> net = SimulatedNetwork(["a", "b", "c"], seed=7)
    >>> net.broadcast("a", b"hello")
    >>> inbox: list[tuple[str, str, bytes]] = []
    >>> net.deliver_all(lambda src, dst, msg: inbox.append((src, dst, msg)))
    2
    >>> sorted(inbox)
    [('a', 'b', b'hello'), ('a', 'c', b'hello')]
    >>> net.stats
    NetworkStats(sent=2, dropped=0, duplicated=0, delivered=2)
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from convergent.errors import ConvergentError

__all__ = [
    "Faults",
    "NetworkDidNotSettle",
    "NetworkStats",
    "SimulatedNetwork",
]

N = TypeVar("N", bound=Hashable)


# The name is part of the agreed API, so it keeps no "Error" suffix.
class NetworkDidNotSettle(ConvergentError):  # noqa: N818
    """Raised by :meth:`SimulatedNetwork.deliver_all` when traffic never goes quiet.

    A handler that answers every message with another message (an echo loop, a
    gossip protocol that never converges) would otherwise spin forever; the step
    budget turns that livelock into a test failure that names the problem.

    Attributes:
        steps: Deliveries made before giving up.
        pending: Messages still in flight when it gave up.

    Example:
        >>> net = SimulatedNetwork([0, 1], seed=0)
        >>> net.send(0, 1, b"ping")
        >>> try:
        ...     net.deliver_all(lambda src, dst, msg: net.send(dst, src, msg), max_steps=10)
        ... except NetworkDidNotSettle as exc:
        ...     (exc.steps, exc.pending)
        (10, 1)
    """

    def __init__(self, steps: int, pending: int) -> None:
        super().__init__(
            f"network did not settle after {steps} deliveries; {pending} message(s) still in flight"
        )
        self.steps = steps
        self.pending = pending


@dataclass(frozen=True)
class Faults:
    """Fault settings for a :class:`SimulatedNetwork`.

    Attributes:
        drop: Probability in ``[0, 1]`` that a sent message is lost on the wire.
        duplicate: Probability in ``[0, 1]`` that a delivered message is delivered
            a second time later. The extra copy is never duplicated again, so
            ``duplicate=1.0`` means "exactly twice", not "forever".
        reorder: If true, each delivery picks a random in-flight message; if
            false, messages are delivered oldest first (FIFO on every link).

    Example:
        >>> Faults(drop=0.1, duplicate=0.05)
        Faults(drop=0.1, duplicate=0.05, reorder=True)
        >>> Faults(drop=1.5)
        Traceback (most recent call last):
            ...
        ValueError: drop must be a probability in [0, 1], got 1.5
    """

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: bool = True

    def __post_init__(self) -> None:
        # Checked up front because an out-of-range probability would silently act
        # like 0 or 1 and make a test pass for the wrong reason. NaN fails too.
        for name in ("drop", "duplicate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class NetworkStats:
    """Counters of what a :class:`SimulatedNetwork` has done so far (a snapshot).

    Every message copy that ever existed is accounted for exactly once, which
    gives the conservation law::

        sent + duplicated == delivered + dropped + pending()

    or, equivalently, ``sent == delivered_unique + dropped + pending()`` with
    ``delivered_unique == delivered - duplicated``.

    Attributes:
        sent: Calls to ``send`` (``broadcast`` counts once per recipient),
            including messages lost on the way.
        dropped: Copies lost: at send time (drop fault or partition) or at
            delivery time (the link was cut while they were in flight).
        duplicated: Extra copies created by the duplicate fault.
        delivered: Copies handed out by ``deliver_one``, duplicates included.

    Example:
        >>> NetworkStats(sent=3, dropped=1, duplicated=1, delivered=3).delivered_unique
        2
    """

    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    delivered: int = 0

    @property
    def delivered_unique(self) -> int:
        """Deliveries not counting duplicate copies (``delivered - duplicated``)."""
        return self.delivered - self.duplicated


@dataclass(frozen=True, slots=True)
class _Envelope(Generic[N]):
    """One copy of a message on the wire."""

    src: N
    dst: N
    message: bytes
    # Copies made by the duplicate fault are marked so they are not duplicated
    # again; otherwise duplicate=1.0 would never let the network go quiet.
    is_copy: bool = False


class SimulatedNetwork(Generic[N]):
    """A deterministic, fault-injecting message network between named nodes.

    Sending only enqueues a message; nothing is delivered until the test asks.
    :meth:`deliver_one` hands back one ``(src, dst, message)`` triple for the
    test to apply to ``dst``; :meth:`deliver_all` does that in a loop through a
    handler until nothing is left in flight.

    A partition is modelled like a real one: a message sent across a cut is
    lost, and so is a message already in flight when a cut appears between its
    endpoints (it is dropped when it would have been delivered). Healing does
    not resurrect lost messages; replicas must resynchronise themselves, which
    is exactly the behaviour such tests want to exercise.

    Args:
        nodes: Distinct hashable node names (ints or strs, typically).
        seed: Seed of the only source of randomness, ``random.Random(seed)``.
        faults: Fault settings; the default is a reliable network that delivers
            in random order.

    Raises:
        ValueError: If ``nodes`` contains a name twice.

    Example:
        >>> net = SimulatedNetwork([1, 2, 3], seed=42, faults=Faults(reorder=False))
        >>> net.partition([1, 2])  # 3 is isolated
        >>> net.broadcast(1, b"x")
        >>> net.deliver_one()
        (1, 2, b'x')
        >>> net.deliver_one() is None
        True
        >>> net.heal()
        >>> net.connected(1, 3)
        True
    """

    def __init__(self, nodes: Iterable[N], *, seed: int, faults: Faults = Faults()) -> None:
        self.nodes: tuple[N, ...] = tuple(nodes)
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"node names must be distinct, got {self.nodes!r}")
        self.faults = faults
        self._rng = random.Random(seed)
        # Reachability as "group id per node": two nodes are connected iff their
        # ids match. O(1) per check and trivially reset by heal().
        self._group: dict[N, int] = dict.fromkeys(self.nodes, 0)
        # FIFO mode needs popleft/appendleft; random mode needs O(1) removal at
        # any index (swap with the last element, then pop). One structure each.
        self._fifo: deque[_Envelope[N]] = deque()
        self._pool: list[_Envelope[N]] = []
        self._sent = 0
        self._dropped = 0
        self._duplicated = 0
        self._delivered = 0

    def __repr__(self) -> str:
        return (
            f"SimulatedNetwork(nodes={self.nodes!r}, faults={self.faults!r}, "
            f"pending={self.pending()}, stats={self.stats!r})"
        )

    @property
    def stats(self) -> NetworkStats:
        """A snapshot of the traffic counters; see :class:`NetworkStats`."""
        return NetworkStats(
            sent=self._sent,
            dropped=self._dropped,
            duplicated=self._duplicated,
            delivered=self._delivered,
        )

    def _check_node(self, node: N) -> None:
        if node not in self._group:
            raise ValueError(f"unknown node {node!r}; nodes are {self.nodes!r}")

    def _enqueue(self, envelope: _Envelope[N], *, front: bool = False) -> None:
        if self.faults.reorder:
            self._pool.append(envelope)
        elif front:
            self._fifo.appendleft(envelope)
        else:
            self._fifo.append(envelope)

    def _take(self) -> _Envelope[N] | None:
        if self.faults.reorder:
            if not self._pool:
                return None
            index = self._rng.randrange(len(self._pool))
            pool = self._pool
            pool[index], pool[-1] = pool[-1], pool[index]
            return pool.pop()
        return self._fifo.popleft() if self._fifo else None

    def _in_flight(self) -> Iterable[_Envelope[N]]:
        return self._pool if self.faults.reorder else self._fifo

    def send(self, src: N, dst: N, message: bytes) -> None:
        """Put one message on the wire from ``src`` to ``dst``.

        The message is lost immediately if ``src`` cannot reach ``dst`` or if the
        drop fault strikes; either way it counts as sent and dropped.

        Args:
            src: Sending node.
            dst: Receiving node (may equal ``src``; a node always reaches itself).
            message: Payload; copied to ``bytes`` so later mutation of a
                ``bytearray`` by the caller cannot change what is delivered.

        Raises:
            ValueError: If ``src`` or ``dst`` is not a node of this network.

        Example:
            >>> net = SimulatedNetwork("ab", seed=1, faults=Faults(drop=1.0))
            >>> net.send("a", "b", b"lost")
            >>> (net.pending(), net.stats.dropped)
            (0, 1)
        """
        self._check_node(src)
        self._check_node(dst)
        payload = bytes(message)
        self._sent += 1
        if not self.connected(src, dst):
            self._dropped += 1
            return
        # Draw only when the fault is enabled so that a fault-free network does
        # not consume randomness and its ordering depends on deliveries alone.
        if self.faults.drop and self._rng.random() < self.faults.drop:
            self._dropped += 1
            return
        self._enqueue(_Envelope(src, dst, payload))

    def broadcast(self, src: N, message: bytes) -> None:
        """Send ``message`` from ``src`` to every other node, in ``nodes`` order.

        Each copy is an independent :meth:`send`, subject to its own faults.

        Args:
            src: Sending node.
            message: Payload.

        Raises:
            ValueError: If ``src`` is not a node of this network.

        Example:
            >>> net = SimulatedNetwork(range(4), seed=0)
            >>> net.broadcast(0, b"hi")
            >>> net.pending()
            3
        """
        self._check_node(src)
        for dst in self.nodes:
            if dst != src:
                self.send(src, dst, message)

    def partition(self, *groups: Iterable[N]) -> None:
        """Cut the network so that only nodes in the same group reach each other.

        Nodes named in no group are isolated (each reaches only itself). This
        replaces any earlier partition rather than refining it. Messages already
        in flight across the new cuts will be dropped when picked for delivery.

        Args:
            *groups: Disjoint collections of node names.

        Raises:
            ValueError: If a name is unknown or appears in two groups; the
                current partition is left unchanged.

        Example:
            >>> net = SimulatedNetwork("abcd", seed=0)
            >>> net.partition("ab", "c")
            >>> (net.connected("a", "b"), net.connected("a", "c"), net.connected("d", "d"))
            (True, False, True)
        """
        # Build the new map fully before installing it so a bad argument leaves
        # the network in its previous, consistent state.
        new_group: dict[N, int] = {}
        for group_id, group in enumerate(groups):
            for node in group:
                self._check_node(node)
                if node in new_group:
                    raise ValueError(f"node {node!r} appears in more than one group")
                new_group[node] = group_id
        isolated_id = len(groups)
        for node in self.nodes:
            if node not in new_group:
                new_group[node] = isolated_id
                isolated_id += 1
        self._group = new_group

    def heal(self) -> None:
        """Remove every partition; messages lost to earlier cuts stay lost.

        Example:
            >>> net = SimulatedNetwork([0, 1], seed=0)
            >>> net.partition()
            >>> net.heal()
            >>> net.connected(0, 1)
            True
        """
        self._group = dict.fromkeys(self.nodes, 0)

    def connected(self, a: N, b: N) -> bool:
        """Return whether a message from ``a`` can currently reach ``b``.

        Args:
            a: One node.
            b: Another node (or the same one: a node always reaches itself).

        Raises:
            ValueError: If either node is not a node of this network.

        Example:
            >>> SimulatedNetwork([0, 1], seed=0).connected(0, 1)
            True
        """
        self._check_node(a)
        self._check_node(b)
        # Every node has a group id (isolated ones get a unique id of their
        # own), so a node is always in its own group and reaches itself.
        return self._group[a] == self._group[b]

    def pending(self) -> int:
        """Return how many message copies are in flight (duplicates included).

        Some of them may still be dropped at delivery time if a partition now
        separates their endpoints.

        Example:
            >>> net = SimulatedNetwork([0, 1], seed=0)
            >>> net.send(0, 1, b"a")
            >>> net.pending()
            1
        """
        return len(self._pool) + len(self._fifo)

    def deliver_one(self) -> tuple[N, N, bytes] | None:
        """Take one in-flight message off the wire and return it for delivery.

        The message is chosen at random (seeded) when ``faults.reorder`` is set,
        otherwise the oldest one. Messages whose link has been cut since they
        were sent are dropped and the choice repeats. The duplicate fault may
        put a second copy of the returned message back on the wire; in FIFO
        mode that copy comes next, so per-link order is still preserved.

        Returns:
            ``(src, dst, message)`` for the caller to apply to ``dst``, or
            ``None`` if nothing deliverable is in flight.

        Example:
            >>> net = SimulatedNetwork([0, 1], seed=0, faults=Faults(duplicate=1.0))
            >>> net.send(0, 1, b"m")
            >>> [net.deliver_one(), net.deliver_one(), net.deliver_one()]
            [(0, 1, b'm'), (0, 1, b'm'), None]
        """
        while (envelope := self._take()) is not None:
            if not self.connected(envelope.src, envelope.dst):
                self._dropped += 1
                continue
            self._delivered += 1
            if (
                not envelope.is_copy
                and self.faults.duplicate
                and self._rng.random() < self.faults.duplicate
            ):
                self._duplicated += 1
                self._enqueue(
                    _Envelope(envelope.src, envelope.dst, envelope.message, is_copy=True),
                    front=True,
                )
            return envelope.src, envelope.dst, envelope.message
        return None

    def _has_deliverable(self) -> bool:
        return any(self.connected(e.src, e.dst) for e in self._in_flight())

    def deliver_all(
        self, handler: Callable[[N, N, bytes], None], max_steps: int = 1_000_000
    ) -> int:
        """Deliver messages through ``handler`` until nothing is in flight.

        ``handler(src, dst, message)`` is called once per delivery and may send
        more messages or change the partition; those are honoured in the same
        loop. An exception from the handler propagates, with that message
        already counted as delivered.

        Args:
            handler: Applies one message to its destination node.
            max_steps: Most deliveries to make before declaring a livelock.
                Messages that would only be dropped do not count, so reaching
                exactly ``max_steps`` and then going quiet is not an error.

        Returns:
            The number of messages handed to ``handler``.

        Raises:
            NetworkDidNotSettle: If a deliverable message is still in flight
                after ``max_steps`` deliveries.
            ValueError: If ``max_steps`` is negative.

        Example:
            >>> net = SimulatedNetwork("abc", seed=3)
            >>> net.broadcast("a", b"x")
            >>> net.deliver_all(lambda src, dst, msg: None)
            2
        """
        if max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}")
        count = 0
        while True:
            # Checked before taking a message so that hitting the limit never
            # removes one from the wire without handing it to the handler.
            if count >= max_steps and self._has_deliverable():
                raise NetworkDidNotSettle(count, self.pending())
            item = self.deliver_one()
            if item is None:
                return count
            handler(*item)
            count += 1
