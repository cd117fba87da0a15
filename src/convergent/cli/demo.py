"""The core demonstration behind ``make demo`` (until the live training demo replaces it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TextIO

import numpy as np

from convergent.codec import decode_as, encode
from convergent.crdt import (
    RGA,
    AppendLog,
    AWSet,
    HybridLogicalClock,
    MVRegister,
    ORMap,
    Replica,
    ReplicaId,
)
from convergent.crdt.clock import wall_ms
from convergent.crdt.ormap import MapOf

SAMPLES = ORMap.of(ORMap.of(MVRegister))


class Person:
    """One person's offline replica of a run's shared state."""

    def __init__(self, name: str, rid: int) -> None:
        clock = HybridLogicalClock()
        self.name = name
        self.config = Replica(ORMap(), ReplicaId(rid), clock)
        self.dataset = Replica(AWSet(), ReplicaId(rid), clock)
        self.labels = Replica(ORMap(MapOf(MVRegister)), ReplicaId(rid), clock)
        self.notes = Replica(RGA(), ReplicaId(rid), clock)
        self.metrics = Replica(AppendLog(), ReplicaId(rid), clock)

    def parts(self) -> list[Replica]:  # type: ignore[type-arg]
        return [self.config, self.dataset, self.labels, self.notes, self.metrics]

    def outgoing(self) -> list[bytes]:
        """Everything edited since the last exchange, as encoded delta-groups."""
        return [encode(g) if (g := r.take_outbox()) is not None else b"" for r in self.parts()]

    def incoming(self, payloads: list[bytes]) -> None:
        for replica, data in zip(self.parts(), payloads, strict=True):
            if data:
                replica.receive(decode_as(data, type(replica.state)), relay=False)


def run_demo(samples: int, out: TextIO) -> None:
    """Print the demonstration to ``out``."""

    def say(text: str = "") -> None:
        print(text, file=out)

    alice, bob = Person("alice", 0xA11CE), Person("bob", 0xB0B)
    say("convergent demo: two people, one run, no server, no locks")
    say("=" * 62)

    ids = np.arange(samples, dtype=np.int64)
    alice.dataset.update(AWSet.add_many, ids)
    alice.config.update(ORMap.set, "lr", 0.1)
    alice.config.update(ORMap.set, "batch_size", 64)
    alice.notes.update(RGA.extend, ["baseline run on digits"])
    sent = [len(p) for p in alice.outgoing()]
    bob.incoming([encode(r.state) for r in alice.parts()])
    say(f"alice creates the run: {samples} samples, lr=0.1, batch_size=64 ({sum(sent):,} bytes)")
    say("bob joins and receives it. Now both go offline and edit concurrently:")
    say()

    alice.config.update(ORMap.set, "lr", 0.02)
    alice.dataset.update(AWSet.remove, 7)
    alice.labels.update(ORMap.apply, 12, lambda m: m.set("label", 3, by=alice.config.actor))
    alice.notes.update(RGA.append, "alice: lowering lr, loss plateaued")
    alice.metrics.update(
        AppendLog.append_many, {"step": [1, 2], "time": [0, 0], "value": [2.3, 1.9]}
    )
    say("  alice: lr = 0.02, removes sample 7, relabels sample 12 -> 3, writes a note")

    bob.config.update(ORMap.set, "lr", 0.05)
    bob.config.update(ORMap.set, "momentum", 0.9)
    bob.dataset.update(AWSet.add, 7)  # bob re-adds 7 without having seen alice's remove
    bob.labels.update(ORMap.apply, 12, lambda m: m.set("label", 8, by=bob.config.actor))
    bob.notes.update(RGA.append, "bob: trying momentum")
    bob.metrics.update(AppendLog.append_many, {"step": [1], "time": [0], "value": [2.2]})
    say("  bob:   lr = 0.05, momentum = 0.9, re-adds sample 7, relabels sample 12 -> 8, a note")
    say()

    a_out, b_out = alice.outgoing(), bob.outgoing()
    say(
        f"they reconnect and swap deltas: alice sends {sum(map(len, a_out)):,} bytes, "
        f"bob sends {sum(map(len, b_out)):,} bytes"
    )
    alice.incoming(b_out)
    bob.incoming(a_out)

    same = all(
        encode(x.state) == encode(y.state) for x, y in zip(alice.parts(), bob.parts(), strict=True)
    )
    say(f"converged: {'yes, byte-identical states' if same else 'NO (this is a bug)'}")
    say()
    say("config:")
    for key, reg in alice.config.state.items():
        assert isinstance(reg, MVRegister)
        if reg.is_conflict:
            who = {alice.config.id: "alice", bob.config.id: "bob"}
            shown = ", ".join(
                f"{e.value!r} by {who.get(ReplicaId(e.dot.replica), '?')} at "
                f"{datetime.fromtimestamp(wall_ms(e.timestamp) / 1000, UTC):%H:%M:%S.%f}"[:-3]
                for e in reg.sorted_entries()
            )
            say(f"  {key!s:<11} CONFLICT: {shown}; resolves to {reg.resolved()!r} on every replica")
        else:
            say(f"  {key!s:<11} {reg.resolved()!r}")
    label = alice.labels.state[12]
    assert isinstance(label, ORMap)
    reg = label["label"]
    assert isinstance(reg, MVRegister)
    say(
        f"dataset: {len(alice.dataset.state)} samples; sample 7 present: "
        f"{7 in alice.dataset.state} (add wins over the concurrent remove)"
    )
    say(f"sample 12 label: CONFLICT {list(reg.value())} (both relabels kept for a human to pick)")
    say(f"notes: {alice.notes.state.value()}")
    say(f"metrics: {len(alice.metrics.state)} points from 2 writers, never a conflict")
    say()
    alice.config.update(ORMap.set, "lr", 0.03)
    bob.incoming(alice.outgoing())
    final = bob.config.state["lr"]
    assert isinstance(final, MVRegister)
    say(
        f"alice resolves lr to 0.03 having seen both; bob now sees {list(final.value())}, "
        f"conflict: {final.is_conflict}"
    )
