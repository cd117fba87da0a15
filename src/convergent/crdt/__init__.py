"""The pure CRDT core: clocks, causality, the state types and the `Replica` wrapper.

No I/O, no asyncio, no torch: everything here is a value and a function on values, so it
runs the same in a hub, a trainer, a browser bridge and a property test.
"""

from convergent.crdt.applog import AppendLog
from convergent.crdt.awset import AWSet
from convergent.crdt.base import Actor, CausalCrdt, Crdt
from convergent.crdt.causal import CausalContext, Dot, ReplicaId, new_replica_id
from convergent.crdt.clock import HybridLogicalClock, Timestamp
from convergent.crdt.counter import GCounter, PNCounter
from convergent.crdt.ormap import MapOf, ORMap
from convergent.crdt.register import LWWRegister, MVRegister
from convergent.crdt.replica import Change, Replica, Subscription
from convergent.crdt.rga import RGA
from convergent.crdt.weights import Weights

__all__ = [
    "RGA",
    "AWSet",
    "Actor",
    "AppendLog",
    "CausalContext",
    "CausalCrdt",
    "Change",
    "Crdt",
    "Dot",
    "GCounter",
    "HybridLogicalClock",
    "LWWRegister",
    "MVRegister",
    "MapOf",
    "ORMap",
    "PNCounter",
    "Replica",
    "ReplicaId",
    "Subscription",
    "Timestamp",
    "Weights",
    "new_replica_id",
]
