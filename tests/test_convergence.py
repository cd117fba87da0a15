"""Convergence under a faulty network: one state machine per type (STYLE.md, "Tests").

3-5 replicas make random edits and ship their outboxes (delta groups, encoded by the codec)
over `SimulatedNetwork`, which drops, duplicates and reorders messages and is partitioned
and healed at random. At the end the network heals, what is still in flight arrives, and
because dropped deltas are gone for good every replica sends its full state to every other
over a lossless network (anti-entropy). Then every replica must be equal: same state, same
value, same bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from convergent.codec import decode, encode
from convergent.crdt import HybridLogicalClock, Replica, ReplicaId
from convergent.testing.network import Faults, SimulatedNetwork
from convergent.testing.strategies import (
    REPLICA_IDS,
    SKEWS_MS,
    TYPES,
    SimulatedTime,
    apply_edit,
)

F = TypeVar("F", bound=Callable[..., None])


def step(method: F) -> F:
    """Mark the machine broken while ``method`` runs, so teardown skips its final check.

    Hypothesis calls ``teardown`` after a failing step too; a convergence check there would
    replace the real failure with a confusing second one.
    """

    @functools.wraps(method)
    def run(self: ConvergenceMachine, *args: Any, **kwargs: Any) -> None:
        self.broken = True
        method(self, *args, **kwargs)
        self.broken = False

    return run  # type: ignore[return-value]


class ConvergenceMachine(RuleBasedStateMachine):
    """Replicas of ``type_name`` editing through a faulty network; subclassed per type."""

    type_name = ""

    def __init__(self) -> None:
        super().__init__()
        self.crdt = TYPES[self.type_name]
        self.time = SimulatedTime()
        self.replicas: list[Replica[Any]] = []
        self.broken = False

    @initialize(
        data=st.data(),
        n=st.integers(3, 5),
        seed=st.integers(0, 2**32 - 1),
        drop=st.sampled_from([0.0, 0.1, 0.3]),
        duplicate=st.sampled_from([0.0, 0.2]),
        reorder=st.booleans(),
    )
    @step
    def start(
        self,
        data: st.DataObject,
        n: int,
        seed: int,
        drop: float,
        duplicate: float,
        reorder: bool,
    ) -> None:
        ids = data.draw(st.lists(REPLICA_IDS, min_size=n, max_size=n, unique=True), label="ids")
        skews = data.draw(st.lists(SKEWS_MS, min_size=n, max_size=n), label="skews_ms")
        self.replicas = [
            Replica(
                self.crdt.initial(),
                ReplicaId(rid),
                HybridLogicalClock(wall=self.time.wall(skew)),
            )
            for rid, skew in zip(ids, skews, strict=True)
        ]
        self.seed = seed
        self.edits = st.lists(self.crdt.edits(n), min_size=1, max_size=4)
        self.net: SimulatedNetwork[int] = SimulatedNetwork(
            range(n), seed=seed, faults=Faults(drop=drop, duplicate=duplicate, reorder=reorder)
        )

    # -- rules --------------------------------------------------------------------------

    @rule(data=st.data())
    @step
    def edit(self, data: st.DataObject) -> None:
        for e in data.draw(self.edits, label="edits"):
            self.time.advance()
            apply_edit(self.replicas[e.replica], self.crdt, e)

    @rule(data=st.data())
    @step
    def ship(self, data: st.DataObject) -> None:
        self.ship_outbox(data.draw(st.integers(0, len(self.replicas) - 1), label="from"))

    # Hypothesis switches random subsets of rules off per run (swarm testing); a second rule
    # that edits keeps most runs editing, and it is what a live client does anyway.
    @rule(data=st.data())
    @step
    def edit_and_ship(self, data: st.DataObject) -> None:
        edits = data.draw(self.edits, label="edits")
        for e in edits:
            self.time.advance()
            apply_edit(self.replicas[e.replica], self.crdt, e)
        for i in sorted({e.replica for e in edits}):
            self.ship_outbox(i)

    @rule(count=st.integers(1, 8))
    @step
    def deliver(self, count: int) -> None:
        for _ in range(count):
            item = self.net.deliver_one()
            if item is None:
                return
            self.receive(*item)

    @rule(data=st.data())
    @step
    def partition(self, data: st.DataObject) -> None:
        n = len(self.replicas)
        sides = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n), label="sides")
        groups = [[i for i in range(n) if sides[i] == g] for g in range(3)]
        self.net.partition(*[g for g in groups if g])

    @rule()
    @step
    def heal(self) -> None:
        self.net.heal()

    def ship_outbox(self, i: int) -> None:
        group = self.replicas[i].take_outbox()
        if group is not None:
            self.net.broadcast(i, encode(group))

    def receive(self, src: int, dst: int, message: bytes) -> None:
        # Received deltas are relayed: they join the outbox and travel on with the next ship.
        self.replicas[dst].receive(decode(message))

    # -- the end ------------------------------------------------------------------------

    def teardown(self) -> None:
        if self.broken or not self.replicas:
            return
        self.net.heal()
        self.net.deliver_all(self.receive)
        # Anti-entropy: full states, all sent before any arrives, over a lossless network.
        n = len(self.replicas)
        lossless: SimulatedNetwork[int] = SimulatedNetwork(range(n), seed=self.seed)
        for i, r in enumerate(self.replicas):
            lossless.broadcast(i, encode(r.state))
        lossless.deliver_all(
            lambda src, dst, msg: self.replicas[dst].receive(decode(msg), relay=False)
        )
        first = self.replicas[0].state
        for r in self.replicas[1:]:
            assert r.state == first
            assert self.crdt.observe(r.state) == self.crdt.observe(first)
            assert encode(r.state) == encode(first)


CONVERGENCE = settings(
    max_examples=35,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def identifier(type_name: str) -> str:
    """``"ORMap[AWSet]"`` -> ``"ORMap_AWSet"``."""
    return "_".join("".join(c if c.isalnum() else " " for c in type_name).split())


def machine_for(type_name: str) -> type[ConvergenceMachine]:
    """The convergence machine for one type of `TYPES`."""
    name = f"Converge{identifier(type_name)}"
    return type(name, (ConvergenceMachine,), {"type_name": type_name})


# One TestCase per type, named so that pytest collects it and -k can pick one.
for _name in TYPES:
    _case = machine_for(_name).TestCase
    _case.settings = CONVERGENCE
    globals()[f"TestConvergence_{identifier(_name)}"] = _case
del _name, _case
