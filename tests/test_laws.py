"""The lattice laws, for every type, from one parametrized suite (STYLE.md, "Tests").

Every state is played from a random operation sequence by 2-4 replicas
(`convergent.testing.strategies`); a failing example prints a ``play(...)`` call that
rebuilds it exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convergent.codec import decode, encode
from convergent.crdt import Actor, Crdt, HybridLogicalClock, ReplicaId
from convergent.testing.strategies import (
    START_MS,
    TYPES,
    Sample,
    check_laws,
    states,
)

TYPE_NAMES = sorted(TYPES)

per_type = pytest.mark.parametrize("type_name", TYPE_NAMES)

# Eleven types times five properties: 25 examples each keeps the file well under a
# minute on a slow two-core machine. No deadline: pass/fail never depends on timing.
LAWS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def draw_sample(data: st.DataObject, type_name: str) -> Sample[Any]:
    sample: Sample[Any] = data.draw(states(type_name), label="sample")
    return sample


# -- the semilattice laws --------------------------------------------------------------------


@per_type
@LAWS
@given(data=st.data())
def test_join_is_a_semilattice_with_bottom(type_name: str, data: st.DataObject) -> None:
    """Idempotent, commutative, associative, and ``initial()`` is its identity."""
    a, b, c = draw_sample(data, type_name).states
    check_laws(a, b, c)
    crdt = TYPES[type_name]
    for s in (a, b, c):
        assert s.join(crdt.initial()) == s
        assert crdt.initial().join(s) == s
        bottom = crdt.initial()
        bottom.join_inplace(s)
        assert bottom == s
    assert crdt.initial() == crdt.initial()


@per_type
@LAWS
@given(data=st.data())
def test_join_never_changes_its_arguments(type_name: str, data: st.DataObject) -> None:
    sample = draw_sample(data, type_name)
    a, b, c = sample.states
    # Twins rebuilt from the script share no object with a, b, c, so a join that writes
    # through a shallow copy cannot change the reference we compare against.
    ta, tb, tc = sample.replay().states
    assert (a, b, c) == (ta, tb, tc), "replaying the script gave other states: nondeterminism"

    ab = a.join(b)
    assert a == ta and b == tb
    a_copy = a.copy()
    a_copy.join_inplace(b)
    assert a == ta and b == tb
    assert a_copy == ab

    # Grow the results further: if they aliased a part of a or b, that part changes now.
    for grown in (ab, a_copy):
        grown.join_inplace(c)
        for delta in sample.history.all_deltas():
            grown.join_inplace(delta)
        for replica in sample.history.replicas:
            grown.join_inplace(replica.state)
    assert (a, b, c) == (ta, tb, tc)


# -- delta mutators -------------------------------------------------------------------------


@per_type
@LAWS
@given(data=st.data())
def test_delta_joined_into_the_state_is_the_mutation(type_name: str, data: st.DataObject) -> None:
    sample = draw_sample(data, type_name)
    history = sample.history
    crdt = history.crdt
    for m in history.mutations:
        # A mutator returns a delta and leaves the state it was called on alone ...
        assert m.left_state_alone, f"{m.edit} changed the state it was called on"
        assert type(m.delta) is type(m.before)
        # ... the delta joined into the pre-mutation state is the replica's new state ...
        assert m.before.join(m.delta) == m.after, m.edit
        # ... and that state means what the operation says (its sequential specification).
        assert crdt.observe(m.after) == m.expected, m.edit
    # Deltas handed to other replicas (by reference) came back unchanged.
    made: list[list[Any]] = [[] for _ in history.replicas]
    for m in history.mutations:
        made[m.replica].append(m.delta)
    assert made == history.deltas

    # Every mutator also works on a state that is only a delta group (gaps, pending RGA
    # elements, a context without the stores it once covered), run by an outside writer (no
    # id REPLICA_IDS draws) on a simulated clock; and its delta is idempotent.
    writer = Actor(ReplicaId(1_000), HybridLogicalClock(wall=lambda: START_MS))
    base = sample.states[0]
    for op in crdt.operations:
        args = data.draw(op.args, label=op.name)
        if not op.applies(base, args):
            continue
        before = base.copy()
        delta = op.run(base, args, writer)
        assert base == before, f"{op.name} changed the state it was called on"
        assert crdt.observe(base.join(delta)) == op.expect(base, args, writer), (op.name, args)
        assert base.join(delta).join(delta) == base.join(delta)


# -- the codec ------------------------------------------------------------------------------


@per_type
@LAWS
@given(data=st.data())
def test_codec_round_trip(type_name: str, data: st.DataObject) -> None:
    sample = draw_sample(data, type_name)
    everything: list[Crdt] = [*sample.states, *sample.history.all_deltas()]
    for s in everything:
        encoded = encode(s)
        back = decode(encoded)
        assert type(back) is type(s)
        assert back == s
        assert encode(back) == encoded


@per_type
@LAWS
@given(data=st.data())
def test_codec_is_canonical(type_name: str, data: st.DataObject) -> None:
    sample = draw_sample(data, type_name)
    a, b, _ = sample.states
    assert encode(a.join(b)) == encode(b.join(a))

    # Equal states reached along different paths (each replica its own history, then one
    # round of anti-entropy) encode to equal bytes.
    history = sample.history
    history.sync_all()
    encoded = {encode(s) for s in history.states()}
    assert len(encoded) == 1
    first = history.states()[0]
    assert all(s == first for s in history.states())
    assert all(history.crdt.observe(s) == history.crdt.observe(first) for s in history.states())

    # The same deltas joined in two different orders: equal states, equal bytes.
    deltas = history.all_deltas()
    order = data.draw(st.permutations(range(len(deltas))), label="order")
    forward, shuffled = history.crdt.initial(), history.crdt.initial()
    for d in deltas:
        forward.join_inplace(d)
    for i in order:
        shuffled.join_inplace(deltas[i])
    assert forward == shuffled
    assert encode(forward) == encode(shuffled)
    # And every replica's state is exactly the join of all deltas made.
    assert forward == first
    assert encode(forward) == encode(first)


@pytest.mark.parametrize("type_name", ["AWSet", "ORMap[MVRegister]"])
@LAWS
@given(data=st.data())
def test_small_stores_encode_like_columnar_ones(type_name: str, data: st.DataObject) -> None:
    """A store of a few rows is written from its dict entries without numpy (one edit's
    delta); the same rows moved into numpy columns must give the same bytes."""
    sample = draw_sample(data, type_name)
    for state in [*sample.states, *sample.history.all_deltas()]:
        columnar = state.copy()
        if columnar.store.flush():
            assert columnar.store.block is not None and not columnar.store.overlay
            assert encode(columnar) == encode(state)


# -- the law checker itself -----------------------------------------------------------------


class _KeepLeft(Crdt):
    """Not a CRDT: "join" keeps the left value, so it is not commutative."""

    __slots__ = ("v",)
    type_name = "KeepLeft"

    def __init__(self, v: int = 0) -> None:
        self.v = v

    @classmethod
    def initial(cls) -> _KeepLeft:
        return cls()

    def join_inplace(self, other: _KeepLeft) -> None:
        if not self.v:
            self.v = other.v

    def copy(self) -> _KeepLeft:
        return type(self)(self.v)

    def value(self) -> int:
        return self.v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _KeepLeft) and self.v == other.v


class _Sum(_KeepLeft):
    """Not a CRDT: "join" adds, so it is not idempotent."""

    def join_inplace(self, other: _KeepLeft) -> None:
        self.v += other.v


def test_check_laws_rejects_what_is_not_a_semilattice() -> None:
    with pytest.raises(AssertionError, match="commutative"):
        check_laws(_KeepLeft(1), _KeepLeft(2), _KeepLeft(3))
    with pytest.raises(AssertionError, match="idempotent"):
        check_laws(_Sum(1), _Sum(2), _Sum(3))


def test_every_type_is_covered() -> None:
    assert set(TYPES) == {
        "GCounter",
        "PNCounter",
        "LWWRegister",
        "MVRegister",
        "AWSet",
        "ORMap[MVRegister]",
        "ORMap[AWSet]",
        "ORMap[ORMap[MVRegister]]",
        "AppendLog",
        "RGA",
        "Weights",
    }
