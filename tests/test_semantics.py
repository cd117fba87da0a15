"""Pinned behaviour: what each type means, in small, hand-written scenarios.

The laws (test_laws.py) say join is a semilattice; they do not say *which* semilattice. These
tests say it: add wins, removes are observed-removes, conflicts are surfaced, clocks survive
skew, values keep their exact type and bits, bulk edits are one dot range, lists converge.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convergent.codec import decode_as, encode
from convergent.crdt import (
    RGA,
    Actor,
    AppendLog,
    AWSet,
    CausalContext,
    Change,
    Crdt,
    Dot,
    HybridLogicalClock,
    LWWRegister,
    MVRegister,
    ORMap,
    Replica,
    ReplicaId,
)
from convergent.crdt.clock import pack, wall_ms
from convergent.testing.strategies import HOUR_MS, START_MS

T = START_MS
C = TypeVar("C", bound=Crdt)


def actor(rid: int, wall: int = T) -> Actor:
    """A writer whose wall clock stands still at ``wall`` (ms): its HLC counts logically."""
    return Actor(ReplicaId(rid), HybridLogicalClock(wall=lambda: wall))


def wire(state: C) -> C:
    """``state`` after a trip through the codec."""
    return decode_as(encode(state), type(state))


def round_trip(state: C) -> C:
    """``wire(state)``, checked to be equal and of the same type."""
    back = wire(state)
    assert type(back) is type(state)
    assert back == state
    return back


def shipped(replica: Replica[C]) -> C:
    """The replica's outbox, through the codec."""
    group = replica.take_outbox()
    assert group is not None
    return wire(group)


def joined(first: C, *rest: C) -> C:
    out = first.copy()
    for s in rest:
        out.join_inplace(s)
    return out


def float_bits(x: float) -> int:
    return int.from_bytes(struct.pack(">d", x), "big")


def float_from_bits(bits: int) -> float:
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


ALICE, BOB, CAROL = 1, 2, 3


# -- add wins, observed remove ----------------------------------------------------------------


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_awset_add_wins_over_a_concurrent_remove(bulk: bool) -> None:
    alice, bob = actor(ALICE), actor(BOB)
    s = AWSet.initial()
    s.join_inplace(s.add_many(["x"], by=alice) if bulk else s.add("x", by=alice))
    bobs = s.copy()  # bob has seen alice's add
    removed = s.remove_many(["x"], by=alice) if bulk else s.remove("x", by=alice)
    re_added = bobs.add_many(["x"], by=bob) if bulk else bobs.add("x", by=bob)
    for merged in (
        joined(s, removed, re_added),
        joined(s, re_added, removed),
        joined(bobs, re_added, removed),
        joined(AWSet.initial(), removed, re_added, s),
    ):
        assert merged.value() == {"x"}
        # Only bob's add survives: alice's remove forgot the dot it saw.
        assert merged.dots_of("x") == {Dot(BOB, 1)}


def test_ormap_a_concurrent_set_under_a_removed_key_survives() -> None:
    alice, bob = actor(ALICE), actor(BOB, T + 10)
    m = ORMap.initial()
    m.join_inplace(m.set("lr", 0.1, by=alice))
    bobs = m.copy()
    removed = m.remove("lr", by=alice)
    edited = bobs.set("lr", 0.02, by=bob)
    for merged in (joined(m, removed, edited), joined(m, edited, removed)):
        assert merged.value() == {"lr": (0.02,)}
        assert not merged["lr"].is_conflict


def test_ormap_of_sets_a_remove_keeps_what_it_did_not_see() -> None:
    alice, bob = actor(ALICE), actor(BOB)
    m = ORMap.of(AWSet).initial()
    m.join_inplace(m.apply("tags", lambda s: s.add("blurry", by=alice), by=alice))
    bobs = m.copy()
    removed = m.remove("tags", by=alice)
    added = bobs.apply("tags", lambda s: s.add("dark", by=bob), by=bob)
    for merged in (joined(m, removed, added), joined(m, added, removed)):
        assert merged.value() == {"tags": {"dark"}}


def test_nested_ormap_a_remove_keeps_a_concurrent_inner_write() -> None:
    alice, bob = actor(ALICE), actor(BOB)
    m = ORMap.of(ORMap.of(MVRegister)).initial()
    m.join_inplace(m.apply("s1", lambda x: x.set("label", 3, by=alice), by=alice))
    bobs = m.copy()
    removed = m.remove("s1", by=alice)
    edited = bobs.apply("s1", lambda x: x.set("weight", 0.5, by=bob), by=bob)
    for merged in (joined(m, removed, edited), joined(m, edited, removed)):
        assert merged.value() == {"s1": {"weight": (0.5,)}}


def test_a_remove_only_removes_what_it_observed() -> None:
    alice, bob = actor(ALICE), actor(BOB)
    s = AWSet.initial()
    mine = s.add("x", by=alice)
    theirs = s.add("x", by=bob)  # concurrent: alice has not seen it
    alices = joined(s, mine)
    removed = alices.remove("x", by=alice)
    assert list(removed.context.dots()) == [Dot(ALICE, 1)]
    merged = joined(alices, removed, theirs)
    assert merged.value() == {"x"}
    assert merged.dots_of("x") == {Dot(BOB, 1)}
    # Removing what one has never seen is a no-op, even for an element that exists elsewhere.
    nothing = s.remove("y", by=alice)
    later = joined(s, s.add("y", by=bob))
    assert joined(later, nothing) == later


# -- registers ----------------------------------------------------------------------------


def test_mvregister_surfaces_concurrent_writes_until_a_write_that_saw_both() -> None:
    alice, bob = actor(ALICE), actor(BOB)
    r = MVRegister.initial()
    a, b = r.set("a", by=alice), r.set("b", by=bob)
    both = joined(r, a, b)
    assert both.is_conflict
    assert sorted(both.value()) == ["a", "b"]
    assert joined(r, b, a) == both
    # A write that saw only one of them replaces only that one.
    partial = joined(r, a)
    still = joined(both, partial.set("a2", by=alice))
    assert sorted(still.value()) == ["a2", "b"]
    # A write that saw both replaces both.
    fixed = joined(both, both.set("c", by=bob))
    assert fixed.value() == ("c",)
    assert not fixed.is_conflict
    assert joined(fixed, a, b) == fixed  # late duplicates change nothing


def test_ormap_surfaces_concurrent_writes_to_one_key() -> None:
    alice, bob = actor(ALICE), actor(BOB)
    m = ORMap.initial()
    merged = joined(m, m.set("lr", 0.1, by=alice), m.set("lr", 0.02, by=bob))
    assert merged["lr"].is_conflict
    assert sorted(merged.value()["lr"]) == [0.02, 0.1]


@pytest.mark.parametrize(
    ("walls", "winner"),
    [
        ({9: T, 3: T}, 9),  # equal HLCs: the higher replica id wins
        ({9: T, 3: T + 5}, 3),  # a later HLC wins whatever the ids
        ({2**64 - 1: T, 2**63: T, 1: T}, 2**64 - 1),  # ids compare as unsigned 64-bit
    ],
)
def test_mvregister_resolved_is_the_same_everywhere(walls: dict[int, int], winner: int) -> None:
    r = MVRegister.initial()
    deltas = {rid: r.set(f"by {rid}", by=actor(rid, wall)) for rid, wall in walls.items()}
    results = []
    for order in itertools.permutations(deltas.values()):
        merged = joined(r, *order)
        results.append((merged.resolved(), merged.value()))
        assert merged.is_conflict
    assert all(res == results[0] for res in results)
    assert results[0][0] == f"by {winner}"
    assert wire(joined(r, *deltas.values())).resolved() == f"by {winner}"


@pytest.mark.parametrize(("low", "high"), [(1, 2), (7, 2**64 - 1), (2**63, 2**63 + 1)])
def test_lww_ties_are_broken_by_replica_id(low: int, high: int) -> None:
    r = LWWRegister.initial()
    a, b = r.set("low", by=actor(low)), r.set("high", by=actor(high))
    assert a.timestamp == b.timestamp  # same wall, same logical: a true tie
    assert joined(r, a, b).value() == "high"
    assert joined(r, b, a).value() == "high"
    assert joined(r, a, b) == joined(r, b, a)


# -- hybrid logical clocks under skew ---------------------------------------------------------


def test_hlc_issues_timestamps_above_what_it_observed_even_hours_behind() -> None:
    behind = HybridLogicalClock(wall=lambda: T - 3 * HOUR_MS)
    remote = pack(T, 7)
    behind.observe(remote)
    stamps = [behind.now() for _ in range(5)]
    assert stamps[0] > remote
    assert stamps == sorted(set(stamps))  # strictly increasing
    assert wall_ms(stamps[-1]) == T  # it stays at the observed time, it does not jump ahead
    # Observing something older changes nothing.
    behind.observe(pack(T - 5 * HOUR_MS))
    assert behind.now() > stamps[-1]


def test_hlc_follows_physical_time_when_it_moves_past_the_logical_time() -> None:
    now = [T]
    clock = HybridLogicalClock(wall=lambda: now[0])
    first = clock.now()
    now[0] = T + 1_000
    assert clock.now() == pack(T + 1_000) > first


def test_a_write_after_observing_a_remote_write_wins_despite_a_slow_clock() -> None:
    def ahead() -> Actor:
        return actor(ALICE, T + HOUR_MS)

    def behind() -> Actor:
        return actor(BOB, T - 2 * HOUR_MS)

    lww = LWWRegister.initial()
    remote = lww.set("ahead", by=ahead())
    mine = joined(lww, remote).set("behind", by=behind())
    assert mine.timestamp > remote.timestamp
    assert joined(lww, remote, mine).value() == "behind"
    assert joined(lww, mine, remote).value() == "behind"

    mv = MVRegister.initial()
    remote_mv = mv.set("ahead", by=ahead())
    # A third replica, also hours behind, writes without seeing it: a conflict "ahead" resolves.
    blind = mv.set("blind", by=actor(CAROL, T - 2 * HOUR_MS))
    conflict = joined(mv, remote_mv, blind)
    assert conflict.is_conflict
    assert conflict.resolved() == "ahead"
    after = joined(mv, remote_mv).set("behind", by=behind())
    assert after.sorted_entries()[-1].timestamp > remote_mv.sorted_entries()[-1].timestamp
    assert joined(mv, remote_mv, after).value() == ("behind",)
    assert joined(mv, remote_mv, blind, after).value() == ("blind", "behind")

    m = ORMap.initial()
    remote_m = m.set("lr", 0.1, by=ahead())
    local_m = joined(m, remote_m).set("lr", 0.2, by=behind())
    assert joined(m, remote_m, local_m).value() == {"lr": (0.2,)}
    assert joined(m, remote_m, local_m)["lr"].resolved() == 0.2


# -- exact values through the codec -----------------------------------------------------------

INTS = [2**62, -(2**62), 2**63 - 1, -(2**63), 0, 1, -1]


@pytest.mark.parametrize("n", INTS)
def test_ints_stay_ints_through_the_codec(n: int) -> None:
    me = actor(ALICE)
    lww = round_trip(joined(LWWRegister.initial(), LWWRegister.initial().set(n, by=me)))
    assert type(lww.value()) is int and lww.value() == n
    mv = round_trip(joined(MVRegister.initial(), MVRegister.initial().set(n, by=me)))
    (v,) = mv.value()
    assert type(v) is int and v == n
    m = ORMap.initial()
    m = round_trip(joined(m, m.set_many(["a", "b"], np.array([n, 7], dtype=np.int64), by=me)))
    assert m.value() == {"a": (n,), "b": (7,)}
    assert all(type(x) is int for (x,) in m.value().values())


def test_bools_ints_and_floats_stay_distinct_through_the_codec() -> None:
    me = actor(ALICE)
    r = MVRegister.initial()
    for value, kind in [(True, bool), (1, int), (1.0, float), (0, int), (False, bool)]:
        back = round_trip(joined(r, r.set(value, by=me)))
        assert type(back.resolved()) is kind
    a, b = joined(r, r.set(1, by=actor(ALICE))), joined(r, r.set(True, by=actor(ALICE)))
    assert a != b
    assert encode(a) != encode(b)


NAN_BITS = 0x7FF8_0000_0000_ABCD  # a quiet NaN with a payload


def test_floats_keep_their_bits_through_the_codec() -> None:
    payload_nan = float_from_bits(NAN_BITS)
    assert math.isnan(payload_nan) and float_bits(payload_nan) == NAN_BITS
    for value in [payload_nan, -0.0, 0.0, 5e-324, float("-inf")]:
        lww = round_trip(joined(LWWRegister(), LWWRegister().set(value, by=actor(ALICE))))
        mv = round_trip(joined(MVRegister(), MVRegister().set(value, by=actor(ALICE))))
        for got in (lww.value(), mv.value()[0]):
            assert type(got) is float and float_bits(got) == float_bits(value)
    # -0.0 and 0.0 are different states with different bytes; NaN equals itself.
    pos, neg = (joined(MVRegister(), MVRegister().set(v, by=actor(ALICE))) for v in (0.0, -0.0))
    assert pos != neg
    assert encode(pos) != encode(neg)
    nan = joined(MVRegister(), MVRegister().set(payload_nan, by=actor(ALICE)))
    assert nan == round_trip(nan)


def test_metric_columns_keep_exact_ints_and_float_bits() -> None:
    log = AppendLog.initial()
    rows = {"step": [2**62, -1], "time": [0, 1], "value": [float_from_bits(NAN_BITS), -0.0]}
    back = round_trip(joined(log, log.append_many(rows, by=actor(ALICE))))
    assert back.column("step").tolist() == [2**62, -1]
    assert [float_bits(x) for x in back.column("value").tolist()] == [NAN_BITS, float_bits(-0.0)]


STRINGS = ["𝄞", "e\u0301", "\u00e9", "", "a\x00", "\x00b", "日本語"]


def test_strings_keep_their_code_points_through_the_codec() -> None:
    me = actor(ALICE)
    for text in STRINGS:
        back = round_trip(joined(MVRegister.initial(), MVRegister.initial().set(text, by=me)))
        assert back.value() == (text,)
    single = AWSet.initial()
    for text in STRINGS:
        single.join_inplace(single.add(text, by=me))
    bulk = AWSet.initial()
    bulk.join_inplace(bulk.add_many(STRINGS, by=actor(BOB)))
    for s in (single, bulk):
        # "e" + combining acute and the precomposed "é" are different elements: no normalizing.
        assert round_trip(s).value() == set(STRINGS)
        assert len(s) == len(STRINGS)
    m = ORMap.initial()
    m = round_trip(joined(m, m.set_many(STRINGS, STRINGS, by=me)))
    assert m.value() == {t: (t,) for t in STRINGS}


# -- bulk edits -----------------------------------------------------------------------------


def test_awset_bulk_add_is_one_contiguous_dot_range() -> None:
    alice = actor(ALICE)
    s = AWSet.initial()
    s.join_inplace(s.add(-1, by=alice))  # dot (alice, 1) is taken
    delta = s.add_many(np.arange(10_000), by=alice)
    assert delta.context.replicas() == [ALICE]
    assert delta.context.intervals(ALICE) == ((2, 10_001),)
    block = delta.store.block
    assert block is not None
    assert not delta.store.overlay
    assert len(block.keys) == 10_000
    assert np.all(block.reps == np.uint64(ALICE))
    assert sorted(block.ctrs.tolist()) == list(range(2, 10_002))
    s.join_inplace(delta)
    assert len(s) == 10_001
    assert s.context.intervals(ALICE) == ((1, 10_001),)
    assert round_trip(delta) == delta


def test_bulk_added_element_removed_singly_then_re_added() -> None:
    alice, bob = (
        Replica(AWSet.initial(), ReplicaId(ALICE)),
        Replica(AWSet.initial(), ReplicaId(BOB)),
    )
    alice.update(AWSet.add_many, np.arange(100))
    bob.receive(shipped(alice))
    removed = alice.mutate(AWSet.remove, 42)
    assert list(removed.context.dots()) == [Dot(ALICE, 43)]  # exactly the dot it observed
    assert 42 not in alice.state and len(alice.state) == 99
    bob.receive(wire(removed))
    assert 42 not in bob.state and bob.state == alice.state
    alice.update(AWSet.add, 42)
    assert 42 in alice.state
    assert alice.state.dots_of(42) == {Dot(ALICE, 101)}
    bob.receive(shipped(alice))
    assert bob.state == alice.state
    assert bob.state.value() == set(range(100))
    # Bulk remove of some, then bulk re-add over a mix of block and dict entries.
    bob.update(AWSet.remove_many, [40, 41, 42, 43])
    bob.update(AWSet.add_many, np.array([41, 42, 500]))
    alice.receive(shipped(bob))
    assert alice.state == bob.state
    assert alice.state.value() == (set(range(100)) - {40, 43}) | {500}


def test_concurrent_bulk_adds_of_one_element_converge() -> None:
    s = AWSet.initial()
    a = s.add_many([0], by=actor(1))
    b = s.add_many([0], by=actor(5))
    assert a.join(b) == b.join(a)
    assert encode(a.join(b)) == encode(b.join(a))
    assert a.join(b).dots_of(0) == {Dot(1, 1), Dot(5, 1)}


# -- RGA ------------------------------------------------------------------------------------


def test_rga_concurrent_inserts_at_one_position_converge_in_any_delivery_order() -> None:
    writers = {rid: actor(rid) for rid in (ALICE, 2**63 + 5, CAROL)}
    base = RGA.initial()
    base.join_inplace(base.extend(["a", "c"], by=writers[ALICE]))
    inserts = [base.insert(1, f"x{rid}", by=w) for rid, w in writers.items()]
    chains = [base.insert_many(1, [f"{rid}.1", f"{rid}.2"], by=w) for rid, w in writers.items()]
    for deltas in (inserts, chains):
        outcomes = {tuple(joined(base, *order).value()) for order in itertools.permutations(deltas)}
        assert len(outcomes) == 1
        (value,) = outcomes
        assert value[0] == "a" and value[-1] == "c"
    # Equal Lamport times: the higher replica id goes first. A run inserted by one writer
    # stays together (no interleaving).
    assert joined(base, *inserts).value() == ["a", f"x{2**63 + 5}", f"x{CAROL}", f"x{ALICE}", "c"]
    assert joined(base, *chains).value() == [
        "a",
        *(f"{rid}.{i}" for rid in (2**63 + 5, CAROL, ALICE) for i in (1, 2)),
        "c",
    ]


def test_rga_children_arriving_before_their_origin_converge() -> None:
    alice = actor(ALICE)
    doc = RGA.initial()
    deltas: list[RGA] = []
    edits: list[Callable[[RGA], RGA]] = [
        lambda d: d.extend(["a"], by=alice),
        lambda d: d.insert(1, "b", by=alice),
        lambda d: d.insert(2, "c", by=alice),
        lambda d: d.insert(1, "z", by=alice),
        lambda d: d.delete(0, by=alice),
    ]
    for edit in edits:
        delta = edit(doc)
        deltas.append(delta)
        doc.join_inplace(delta)
    assert doc.value() == ["z", "b", "c"]
    bob = RGA.initial()
    bob.join_inplace(deltas[2])  # "c", whose origin "b" has not arrived
    bob.join_inplace(deltas[1])  # "b", whose origin "a" has not arrived
    assert bob.value() == []  # they wait for their origins
    for d in (deltas[4], deltas[3], deltas[0]):  # the delete before its target, then the rest
        bob.join_inplace(wire(d))
    assert bob.value() == doc.value()
    assert bob == doc
    for order in itertools.permutations(deltas):
        assert joined(RGA.initial(), *order).value() == ["z", "b", "c"]


# -- AppendLog ------------------------------------------------------------------------------


def test_append_log_out_of_order_segments_then_the_gap_fills() -> None:
    alice = actor(ALICE)
    log = AppendLog.initial()
    segments = []
    for rows in ([0, 1], [2, 3, 4], [5]):
        delta = log.append_many(
            {"step": rows, "time": [10 * r for r in rows], "value": [r / 2 for r in rows]},
            by=alice,
        )
        segments.append(delta)
        log.join_inplace(delta)
    bob = AppendLog.initial()
    bob.join_inplace(segments[2])
    bob.join_inplace(segments[0])
    assert bob.length(ALICE) == 2
    assert bob.column("step").tolist() == [0, 1]  # only the contiguous prefix is readable
    bob = round_trip(bob)  # the gap survives the codec
    bob.join_inplace(segments[1])
    bob.join_inplace(segments[1])  # a duplicate is harmless
    assert bob == log
    assert bob.length(ALICE) == 6
    assert bob.column("step").tolist() == [0, 1, 2, 3, 4, 5]
    assert bob.column("value").tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


# -- Replica subscriptions ------------------------------------------------------------------


def test_replica_subscribers_see_local_and_remote_changes_until_removed() -> None:
    clock = HybridLogicalClock(wall=lambda: T)
    r = Replica(AWSet.initial(), ReplicaId(ALICE), clock)
    other = Replica(AWSet.initial(), ReplicaId(BOB), HybridLogicalClock(wall=lambda: T))
    seen: list[Change[AWSet]] = []
    also: list[Change[AWSet]] = []
    sub = r.subscribe(seen.append)
    r.subscribe(also.append)

    delta = r.mutate(AWSet.add, "x")
    other.update(AWSet.add, "y")
    group = other.take_outbox()
    assert group is not None
    r.receive(group)
    assert [c.local for c in seen] == [True, False]
    assert seen[0].delta == delta
    assert seen[1].delta.value() == {"y"}

    sub.remove()
    sub.remove()  # idempotent
    r.update(AWSet.add, "z")
    assert len(seen) == 2
    assert len(also) == 3  # the other subscriber still hears everything

    with r.subscribe(seen.append):
        r.update(AWSet.remove, "z")
    r.update(AWSet.add, "w")
    assert len(seen) == 3 and seen[-1].local
    assert r.state.value() == {"x", "y", "w"}


# -- regressions found in review -------------------------------------------------------------


def test_append_log_field_spellings_are_one_schema() -> None:
    """``"int64"`` and ``"i8"`` name the same field type: equal, joinable, decodable."""
    from convergent.codec import decode, encode

    me = Actor(ReplicaId(1))
    spelled = (("step", "int64"), ("time", "<i8"), ("value", "float64"))
    log = AppendLog(spelled)
    log.join_inplace(log.append({"step": 1, "time": 2, "value": 0.5}, by=me))
    assert AppendLog(spelled) == AppendLog()
    assert decode(encode(log)) == log
    assert log.join(AppendLog()) == log


@pytest.mark.parametrize(
    "write",
    [
        lambda s, me: ORMap.set(s, "k", "bad\ud800", by=me),
        lambda s, me: ORMap.set(s, "bad\ud800", 1, by=me),
        lambda s, me: ORMap.set_many(s, ["x\udfff"], [1], by=me),
        lambda s, me: ORMap.set_many(s, ["x"], np.array(["y\udfff"]), by=me),
    ],
)
def test_text_that_is_not_unicode_is_refused_at_the_edge(write: Any) -> None:
    """Lone surrogates could be stored but never encoded: refuse them before they land."""
    with pytest.raises(TypeError, match="not valid Unicode"):
        write(ORMap.initial(), Actor(ReplicaId(1)))


def test_empty_bulk_add_leaves_no_block_behind() -> None:
    """An empty bulk write must not fix the column's key type for later str bulk writes."""
    me = Actor(ReplicaId(1))
    s = AWSet.initial()
    s.join_inplace(s.add_many([], by=me))
    assert s.store.block is None
    s.join_inplace(s.add_many([f"id{i}" for i in range(300)], by=me))
    assert s.store.block is not None and len(s) == 300


_dot_sets = st.sets(st.tuples(st.integers(1, 4), st.integers(1, 12)), max_size=30)


@given(_dot_sets, _dot_sets)
def test_replicas_beyond_names_exactly_the_replicas_with_a_dot_the_other_lacks(
    mine: set[tuple[int, int]], theirs: set[tuple[int, int]]
) -> None:
    """What `Run.export_since` asks before it reads the store: never misses a replica with
    something to send, never names one without."""
    a, b = CausalContext.of_dots(mine), CausalContext.of_dots(theirs)
    assert a.replicas_beyond(b) == sorted({r for r, c in mine if (r, c) not in theirs})
