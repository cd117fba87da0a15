"""Tests for the seeded simulated network in ``convergent.testing.network``."""

from __future__ import annotations

import doctest
from collections import Counter
from typing import Any, TypeVar, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convergent.testing.network as network_module
from convergent.errors import ConvergentError
from convergent.testing.network import (
    Faults,
    NetworkDidNotSettle,
    NetworkStats,
    SimulatedNetwork,
)

Delivery = tuple[int, int, bytes]
T = TypeVar("T")


def _assert_conserved(net: SimulatedNetwork[Any]) -> None:
    """Every message copy is delivered, dropped or still pending, exactly once."""
    s = net.stats
    assert s.sent + s.duplicated == s.delivered + s.dropped + net.pending()
    assert s.sent == s.delivered_unique + s.dropped + net.pending()
    assert min(s.sent, s.dropped, s.duplicated, s.delivered) >= 0


def _drain(net: SimulatedNetwork[T], limit: int = 10_000) -> list[tuple[T, T, bytes]]:
    """Deliver everything via ``deliver_one``; bounded so a runaway fails, not hangs."""
    out: list[tuple[T, T, bytes]] = []
    while (item := net.deliver_one()) is not None:
        out.append(item)
        assert len(out) <= limit, "network kept producing messages"
    return out


def _scenario(seed: int, faults: Faults) -> tuple[list[Delivery], NetworkStats]:
    """A fixed script mixing sends, partitions and deliveries."""
    net = SimulatedNetwork(range(5), seed=seed, faults=faults)
    log: list[Delivery] = []
    for i in range(30):
        net.send(i % 5, (i * 3 + 1) % 5, f"m{i}".encode())
    net.broadcast(2, b"b")
    for _ in range(10):
        if (item := net.deliver_one()) is not None:
            log.append(item)
    net.partition([0, 1], [2, 3])
    net.broadcast(0, b"cut")

    def reply(src: int, dst: int, msg: bytes) -> None:
        log.append((src, dst, msg))
        if not msg.startswith(b"re:"):
            net.send(dst, src, b"re:" + msg)

    net.deliver_all(reply, max_steps=10_000)
    net.heal()
    net.broadcast(4, b"healed")
    net.deliver_all(reply, max_steps=10_000)
    return log, net.stats


# --- determinism -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(reorder=False), Faults(drop=0.3, duplicate=0.3), Faults(drop=0.5)],
)
def test_same_seed_same_calls_give_identical_deliveries(faults: Faults) -> None:
    first = _scenario(1234, faults)
    second = _scenario(1234, faults)
    assert first == second
    assert len(first[0]) > 0


def test_different_seeds_change_the_random_order() -> None:
    # Guards against the seed being ignored (e.g. an unseeded global RNG).
    a, _ = _scenario(1, Faults(drop=0.2, duplicate=0.2))
    b, _ = _scenario(2, Faults(drop=0.2, duplicate=0.2))
    assert a != b


def test_fault_free_fifo_ignores_the_seed() -> None:
    # With no random faults the seed has nothing to decide, so runs agree.
    assert _scenario(1, Faults(reorder=False)) == _scenario(99, Faults(reorder=False))


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**64),
    drop=st.floats(0, 1),
    duplicate=st.floats(0, 1),
    reorder=st.booleans(),
)
def test_determinism_property(seed: int, drop: float, duplicate: float, reorder: bool) -> None:
    faults = Faults(drop=drop, duplicate=duplicate, reorder=reorder)
    assert _scenario(seed, faults) == _scenario(seed, faults)


# --- individual faults -----------------------------------------------------------------


@pytest.mark.parametrize("reorder", [True, False])
def test_drop_one_delivers_nothing(reorder: bool) -> None:
    net = SimulatedNetwork(range(4), seed=5, faults=Faults(drop=1.0, reorder=reorder))
    for src in range(4):
        net.broadcast(src, b"x")
        net.send(src, src, b"self")
    assert net.pending() == 0
    assert net.deliver_one() is None
    assert net.deliver_all(lambda *_: pytest.fail("nothing should arrive")) == 0
    assert net.stats == NetworkStats(sent=16, dropped=16, duplicated=0, delivered=0)


@pytest.mark.parametrize("reorder", [True, False])
def test_duplicate_one_delivers_every_message_exactly_twice(reorder: bool) -> None:
    net = SimulatedNetwork(range(3), seed=8, faults=Faults(duplicate=1.0, reorder=reorder))
    sent: list[Delivery] = []
    for i in range(20):
        src, dst = i % 3, (i + 1) % 3
        msg = f"m{i}".encode()
        net.send(src, dst, msg)
        sent.append((src, dst, msg))
    delivered = _drain(net)
    assert Counter(delivered) == Counter({d: 2 for d in sent})
    assert net.stats == NetworkStats(sent=20, dropped=0, duplicated=20, delivered=40)
    _assert_conserved(net)


def test_zero_faults_deliver_everything_once() -> None:
    net = SimulatedNetwork("abc", seed=0)
    for node in "abc":
        net.broadcast(node, node.encode())
    delivered = _drain(net)
    assert sorted(delivered) == sorted((s, d, s.encode()) for s in "abc" for d in "abc" if s != d)
    assert net.stats == NetworkStats(sent=6, dropped=0, duplicated=0, delivered=6)


def test_drop_probability_is_roughly_respected() -> None:
    net = SimulatedNetwork([0, 1], seed=11, faults=Faults(drop=0.25))
    for _ in range(4000):
        net.send(0, 1, b"")
    # Binomial(4000, 0.25): mean 1000, sd ~27; 1000 +- 150 is > 5 sd.
    assert 850 <= net.stats.dropped <= 1150
    assert net.pending() == 4000 - net.stats.dropped


# --- ordering --------------------------------------------------------------------------


def test_fifo_when_reorder_is_false() -> None:
    net = SimulatedNetwork(range(4), seed=3, faults=Faults(reorder=False))
    sent: list[Delivery] = []
    for i in range(40):
        src, dst = i % 4, (i * 7 + 1) % 4
        net.send(src, dst, i.to_bytes(2, "big"))
        sent.append((src, dst, i.to_bytes(2, "big")))
    assert _drain(net) == sent


def test_fifo_duplicates_follow_their_original() -> None:
    net = SimulatedNetwork([0, 1], seed=3, faults=Faults(duplicate=1.0, reorder=False))
    for i in range(5):
        net.send(0, 1, bytes([i]))
    assert [m for _, _, m in _drain(net)] == [bytes([i // 2]) for i in range(10)]


def test_reorder_true_actually_reorders() -> None:
    net = SimulatedNetwork([0, 1], seed=3)
    msgs = [bytes([i]) for i in range(30)]
    for m in msgs:
        net.send(0, 1, m)
    delivered = [m for _, _, m in _drain(net)]
    assert sorted(delivered) == msgs
    assert delivered != msgs


# --- partitions ------------------------------------------------------------------------


def test_partition_blocks_cross_group_sends_and_heal_restores() -> None:
    net = SimulatedNetwork(range(5), seed=0, faults=Faults(reorder=False))
    net.partition([0, 1], [2, 3])
    assert net.connected(0, 1)
    assert net.connected(2, 3)
    assert not net.connected(1, 2)
    assert not net.connected(4, 0)  # not named => isolated
    assert net.connected(4, 4)

    net.send(0, 2, b"cross")
    net.send(4, 0, b"isolated")
    assert net.pending() == 0
    assert net.stats.dropped == 2

    net.send(0, 1, b"same")
    assert _drain(net) == [(0, 1, b"same")]

    net.heal()
    assert all(net.connected(a, b) for a in range(5) for b in range(5))
    net.send(0, 2, b"cross")
    assert _drain(net) == [(0, 2, b"cross")]
    _assert_conserved(net)


def test_partition_drops_messages_already_in_flight() -> None:
    net = SimulatedNetwork(range(3), seed=0)
    net.send(0, 1, b"survives")
    net.send(0, 2, b"cut")
    net.partition([0, 1], [2])
    assert net.pending() == 2  # loss is discovered at delivery time
    assert _drain(net) == [(0, 1, b"survives")]
    assert net.stats.dropped == 1
    net.heal()
    assert net.deliver_one() is None  # healing does not resurrect lost messages
    _assert_conserved(net)


def test_message_in_flight_survives_a_cut_healed_before_delivery() -> None:
    net = SimulatedNetwork(range(2), seed=0)
    net.send(0, 1, b"m")
    net.partition([0], [1])
    net.heal()
    assert net.deliver_one() == (0, 1, b"m")


def test_duplicate_copy_is_dropped_if_cut_appears_before_it_arrives() -> None:
    net = SimulatedNetwork([0, 1], seed=0, faults=Faults(duplicate=1.0, reorder=False))
    net.send(0, 1, b"m")
    assert net.deliver_one() == (0, 1, b"m")
    assert net.pending() == 1
    net.partition()
    assert net.deliver_one() is None
    assert net.stats == NetworkStats(sent=1, dropped=1, duplicated=1, delivered=1)
    _assert_conserved(net)


def test_bad_partition_is_rejected_and_leaves_state_unchanged() -> None:
    net = SimulatedNetwork(range(3), seed=0)
    net.partition([0, 1], [2])
    with pytest.raises(ValueError, match="more than one group"):
        net.partition([0, 1], [1, 2])
    with pytest.raises(ValueError, match="unknown node"):
        net.partition([0, 7])
    assert net.connected(0, 1)
    assert not net.connected(1, 2)


# --- deliver_all -----------------------------------------------------------------------


def test_deliver_all_terminates_and_counts_handler_sends() -> None:
    # Each message carries a hop budget; the handler forwards it until spent,
    # so the exact delivery count is known in advance: 3 * (1 + 2 + 3 + 4).
    net = SimulatedNetwork(range(3), seed=9)
    received: list[Delivery] = []

    def forward(src: int, dst: int, msg: bytes) -> None:
        received.append((src, dst, msg))
        if msg[0] > 1:
            net.send(dst, (dst + 1) % 3, bytes([msg[0] - 1]))

    for hops in range(1, 5):
        for src in range(3):
            net.send(src, (src + 1) % 3, bytes([hops]))
    count = net.deliver_all(forward)
    assert count == 30
    assert len(received) == 30
    assert net.pending() == 0
    assert net.stats == NetworkStats(sent=30, dropped=0, duplicated=0, delivered=30)


def test_deliver_all_raises_on_livelock() -> None:
    net = SimulatedNetwork([0, 1], seed=0)
    net.send(0, 1, b"ping")
    calls = 0

    def echo(src: int, dst: int, msg: bytes) -> None:
        nonlocal calls
        calls += 1
        assert calls <= 1000, "max_steps was not enforced"
        net.send(dst, src, msg)

    with pytest.raises(NetworkDidNotSettle) as info:
        net.deliver_all(echo, max_steps=50)
    assert isinstance(info.value, ConvergentError)
    assert (info.value.steps, info.value.pending, calls) == (50, 1, 50)
    _assert_conserved(net)  # the limit never swallows a message


def test_deliver_all_exact_budget_is_not_an_error() -> None:
    net = SimulatedNetwork(range(4), seed=0)
    net.broadcast(0, b"x")
    assert net.deliver_all(lambda *_: None, max_steps=3) == 3


def test_deliver_all_budget_ignores_messages_that_would_be_dropped() -> None:
    # FIFO so the doomed message is the one left on the wire when the budget is spent.
    net = SimulatedNetwork(range(3), seed=0, faults=Faults(reorder=False))
    net.send(0, 1, b"ok")
    net.send(0, 2, b"doomed")
    net.partition([0, 1])
    # One real delivery fits the budget; the doomed message is dropped, not an error.
    assert net.deliver_all(lambda *_: None, max_steps=1) == 1
    assert net.pending() == 0
    assert net.stats.dropped == 1


def test_deliver_all_rejects_negative_budget() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        SimulatedNetwork([0], seed=0).deliver_all(lambda *_: None, max_steps=-1)


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"drop": -0.1}, {"drop": 1.01}, {"duplicate": 2.0}, {"drop": float("nan")}],
)
def test_faults_reject_non_probabilities(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="probability"):
        Faults(**kwargs)


def test_unknown_and_duplicate_nodes_are_rejected() -> None:
    with pytest.raises(ValueError, match="distinct"):
        SimulatedNetwork([1, 2, 1], seed=0)
    net = SimulatedNetwork([1, 2], seed=0)
    with pytest.raises(ValueError, match="unknown node"):
        net.send(1, 3, b"")
    with pytest.raises(ValueError, match="unknown node"):
        net.broadcast(3, b"")
    with pytest.raises(ValueError, match="unknown node"):
        net.connected(0, 1)
    assert net.stats.sent == 0


def test_nodes_are_kept_in_order_and_payload_is_snapshotted() -> None:
    net = SimulatedNetwork(iter(["x", "y"]), seed=0)
    assert net.nodes == ("x", "y")
    buf = bytearray(b"before")
    # A caller holding a mutable buffer (outside the annotated type) must not be
    # able to change a message after sending it.
    net.send("x", "y", cast(bytes, buf))
    buf[:] = b"after!"
    assert net.deliver_one() == ("x", "y", b"before")


def test_docstring_examples() -> None:
    result = doctest.testmod(network_module)
    assert result.attempted > 0
    assert result.failed == 0


# --- stats invariant under random operations ---------------------------------------------

NODES = range(4)
node = st.sampled_from(list(NODES))
operation = st.one_of(
    st.tuples(st.just("send"), node, node, st.binary(max_size=4)),
    st.tuples(st.just("broadcast"), node, st.binary(max_size=4)),
    # One group label per node; None leaves the node out, i.e. isolated.
    st.tuples(
        st.just("partition"),
        st.lists(st.sampled_from([0, 1, 2, None]), min_size=len(NODES), max_size=len(NODES)),
    ),
    st.tuples(st.just("heal")),
    st.tuples(st.just("deliver_one")),
    st.tuples(st.just("deliver_all"), st.integers(0, 3)),
)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0),
    drop=st.floats(0, 1),
    duplicate=st.floats(0, 1),
    reorder=st.booleans(),
    ops=st.lists(operation, max_size=40),
)
def test_stats_invariant_under_random_operations(
    seed: int, drop: float, duplicate: float, reorder: bool, ops: list[tuple[Any, ...]]
) -> None:
    net = SimulatedNetwork(NODES, seed=seed, faults=Faults(drop, duplicate, reorder))
    handled = 0

    def make_handler(fanout: int) -> Any:
        # Replies shrink the payload so every chain of replies ends.
        def handler(src: int, dst: int, msg: bytes) -> None:
            nonlocal handled
            handled += 1
            if msg:
                for k in range(fanout):
                    net.send(dst, (dst + k) % 4, msg[1:])

        return handler

    for op in ops:
        before = net.stats
        pending_before = net.pending()
        match op:
            case ("send", src, dst, msg):
                net.send(src, dst, msg)
                assert net.stats.sent == before.sent + 1
            case ("broadcast", src, msg):
                net.broadcast(src, msg)
                assert net.stats.sent == before.sent + len(NODES) - 1
            case ("partition", labels):
                groups = [
                    [n for n, g in zip(NODES, labels, strict=True) if g == label]
                    for label in (0, 1, 2)
                ]
                net.partition(*groups)
                assert net.pending() == pending_before
            case ("heal",):
                net.heal()
            case ("deliver_one",):
                item = net.deliver_one()
                if item is None:
                    assert net.pending() == 0
                else:
                    handled += 1
                    assert net.stats.delivered == before.delivered + 1
            case ("deliver_all", fanout):
                count = net.deliver_all(make_handler(fanout))
                assert net.pending() == 0
                assert net.stats.delivered == before.delivered + count
            case _:
                pytest.fail(f"unexpected op {op!r}")
        _assert_conserved(net)
        # Counters only ever grow.
        after = net.stats
        assert after.sent >= before.sent
        assert after.dropped >= before.dropped
        assert after.duplicated >= before.duplicated
        assert after.delivered >= before.delivered
        assert after.duplicated <= after.delivered
    assert handled == net.stats.delivered
    if drop == 1.0:
        assert net.stats.delivered == 0
    if duplicate == 0.0:
        assert net.stats.duplicated == 0
