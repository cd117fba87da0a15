"""The weights CRDT: one read on every replica, whatever the delivery (DESIGN.md section 5).

The lattice laws over random operation sequences run in tests/test_laws.py with every other
type; here are the properties specific to decided-round training: contributions merged in any
order, duplicated and relayed give one digest; a timed-out slot is skipped the same way
everywhere; compaction never changes the read; the codec refuses what it cannot trust.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convergent.codec import DecodeError, TruncatedError, decode, decode_as, encode
from convergent.crdt import Actor, ReplicaId, Weights
from convergent.crdt.weights import (
    FEDAVG,
    SKIP,
    Contribution,
    dequantize,
    flatten,
    quantize,
)

SIZES = (6, 3, 2)
P = sum(SIZES)
PROPS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Played:
    """An honest run: every delta each worker made, and the state holding all of them."""

    deltas: list[Weights]
    final: Weights


def play_rounds(
    seed: int,
    *,
    workers: int = 3,
    rounds: int = 4,
    codec: str = "fp16",
    skip_prob: float = 0.0,
    churn: bool = False,
) -> Played:
    """Workers train ``rounds`` rounds from the decided fold, as the worker loop does.

    With ``churn`` the last worker leaves after round 2 and a new one joins at round 3.
    """
    rng = np.random.default_rng(seed)
    actors = [Actor(ReplicaId(10 + i)) for i in range(workers + 1)]
    truth = Weights.initial()
    deltas: list[Weights] = []

    def apply(delta: Weights) -> None:
        truth.join_inplace(delta)
        deltas.append(delta)

    apply(truth.initialize(rng.normal(size=P), SIZES, by=actors[0]))
    active = actors[:workers]
    for a in active:
        apply(truth.enroll(1, by=a))
    if churn:
        apply(truth.leave(3, by=active[-1]))
        apply(truth.enroll(3, by=actors[workers]))
    for r in range(1, rounds + 1):
        base = truth.fold(r - 1).digest
        for a in truth.expected(r):
            actor = next(x for x in actors if x.replica == a)
            if rng.random() < skip_prob:
                apply(truth.skip(r, a, by=actors[0]))
                continue
            pseudo = rng.normal(scale=0.1, size=P)
            payload = quantize(pseudo, SIZES, codec)
            n = int(rng.integers(8, 64))
            apply(truth.contribute(r, payload, n_samples=n, codec=codec, base=base, by=actor))
        assert truth.decided_round() == r
    return Played(deltas, truth)


def deliver(deltas: list[Weights], rng: random.Random, replicas: int = 3) -> list[Weights]:
    """Each replica gets every delta, shuffled, some twice, some relayed by another replica."""
    states = [Weights.initial() for _ in range(replicas)]
    for i, s in enumerate(states):
        order = deltas + rng.sample(deltas, k=len(deltas) // 3)  # duplicates
        rng.shuffle(order)
        for j, d in enumerate(order):
            s.join_inplace(d)
            if j % 5 == 4:  # relay a partial state through another replica
                states[(i + 1) % replicas].join_inplace(s.copy())
    for s in states:  # and a last relay pass: a state is also a delta
        s.join_inplace(states[0])
    return states


# -- convergence: commutative, associative, idempotent -------------------------------------


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    codec=st.sampled_from(["fp32", "fp16", "int8"]),
    skip_prob=st.sampled_from([0.0, 0.3]),
    churn=st.booleans(),
)
def test_any_delivery_gives_one_digest(
    seed: int, codec: str, skip_prob: float, churn: bool
) -> None:
    played = play_rounds(seed, codec=codec, skip_prob=skip_prob, churn=churn)
    rng = random.Random(seed)
    digests = set()
    for _ in range(4):
        for s in deliver(played.deltas, rng):
            assert s == played.final
            digests.add((s.value().digest, encode(s)))
    assert len(digests) == 1
    model = played.final.value()
    assert model.round == 4 and model.weights.dtype == np.float32


def test_float_order_matters_so_the_fold_fixes_it() -> None:
    """Why the fold sums in sorted worker order in float64: float32 sums depend on order."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(8, 1000)).astype(np.float32)
    sums = {
        np.sum(vectors[rng.permutation(8)], axis=0, dtype=np.float32).tobytes() for _ in range(20)
    }
    assert len(sums) > 1
    played = play_rounds(1, workers=8, rounds=1)
    assert len({s.value().digest for s in deliver(played.deltas, random.Random(1))}) == 1


def test_a_partial_round_is_never_read() -> None:
    played = play_rounds(2, rounds=3)
    last_round = [d for d in played.deltas if any(r == 3 for r, _ in d.slots)]
    partial = Weights.initial()
    for d in played.deltas:
        if d is not last_round[-1]:
            partial.join_inplace(d)
    assert partial.decided_round() == 2
    assert partial.missing(3) == [sorted(played.final.expected(3))[-1]]
    assert partial.value().digest == played.final.fold(2).digest


# -- the fold -------------------------------------------------------------------------------


def test_fedavg_with_one_inner_step_is_the_weighted_mean() -> None:
    """The exactness anchor: outer lr 1, momentum 0 is the sample-weighted mean of locals."""
    a, b = Actor(ReplicaId(1)), Actor(ReplicaId(2))
    s = Weights.initial()
    start = np.array([1.0, 2.0, 3.0])
    for delta in (
        s.initialize(start, by=a),
        s.enroll(1, by=a),
        s.enroll(1, by=b),
        s.configure("outer_lr", FEDAVG["outer_lr"], 1, by=a),
        s.configure("outer_momentum", FEDAVG["outer_momentum"], 1, by=a),
    ):
        s.join_inplace(delta)
    base = s.fold().digest
    local_a, local_b = np.array([0.0, 2.0, 4.0]), np.array([1.0, 1.0, 1.0])
    for who, local, n in ((a, local_a, 30), (b, local_b, 10)):
        payload = quantize(start - local, (3,), "fp32")
        s.join_inplace(s.contribute(1, payload, n_samples=n, codec="fp32", base=base, by=who))
    expected = (30 * local_a + 10 * local_b) / 40
    assert np.array_equal(s.value().weights, expected.astype(np.float32))


def test_diloco_nesterov_by_default() -> None:
    a = Actor(ReplicaId(1))
    s = Weights.initial()
    s.join_inplace(s.initialize(np.zeros(2), by=a))
    s.join_inplace(s.enroll(1, by=a))
    g = np.array([1.0, -2.0])
    for r in (1, 2):
        base = s.fold().digest
        payload = quantize(g, (2,), "fp32")
        s.join_inplace(s.contribute(r, payload, n_samples=1, codec="fp32", base=base, by=a))
    m1 = g
    w1 = -0.7 * (g + 0.9 * m1)
    m2 = 0.9 * m1 + g
    w2 = w1 - 0.7 * (g + 0.9 * m2)
    assert np.array_equal(s.fold(1).weights, w1)
    assert np.array_equal(s.fold(2).weights, w2)


def test_contributions_that_do_not_count_are_ignored_alike() -> None:
    """A stale base, a writer not expected in the round, or a payload of the wrong size."""
    a, b, c = (Actor(ReplicaId(i)) for i in (1, 2, 3))
    s = Weights.initial()
    for d in (s.initialize(np.zeros(3), by=a), s.enroll(1, by=a), s.enroll(1, by=b)):
        s.join_inplace(d)
    base = s.fold().digest
    good = quantize(np.ones(3), (3,), "fp32")
    s.join_inplace(s.contribute(1, good, n_samples=5, codec="fp32", base=base, by=a))
    alone = s.copy()
    alone.join_inplace(alone.skip(1, 2, by=a))
    for bad in (
        s.contribute(1, good, n_samples=5, codec="fp32", base=bytes(16), by=b),  # stale base
        s.contribute(1, good[:4], n_samples=5, codec="fp32", base=base, by=b),  # wrong size
    ):
        t = s.join(bad)
        assert t.decided_round() == 1
        assert t.value().digest == alone.value().digest
    outsider = alone.join(alone.contribute(1, good, n_samples=99, codec="fp32", base=base, by=c))
    assert outsider.value().digest == alone.value().digest


def test_a_round_with_no_contribution_keeps_the_weights() -> None:
    a = Actor(ReplicaId(1))
    s = Weights.initial()
    for d in (s.initialize(np.ones(2), by=a), s.enroll(1, by=a)):
        s.join_inplace(d)
    s.join_inplace(s.skip(1, 1, by=a))
    assert s.decided_round() == 1
    assert np.array_equal(s.fold(1).weights, s.fold(0).weights)
    assert s.fold(1).digest != s.fold(0).digest  # the round is part of the digest


def test_folds_are_memoized_and_a_late_skip_invalidates_them() -> None:
    played = play_rounds(3, rounds=3)
    s = played.final.copy()
    first = s.fold()
    assert s.fold() is first
    late = s.join(s.skip(2, s.expected(2)[0], by=Actor(ReplicaId(99))))
    assert late.fold(1) is s.fold(1)  # rounds before the change are reused
    assert late.fold().digest != first.digest
    assert s.fold() is first  # the original is untouched


def test_settings_take_effect_at_their_round() -> None:
    a, b = Actor(ReplicaId(1)), Actor(ReplicaId(2))
    s = Weights.initial()
    s.join_inplace(s.configure("outer_lr", 0.5, 3, by=a))
    s.join_inplace(s.configure("outer_lr", 0.1, 5, by=b))
    assert [s.setting("outer_lr", r) for r in (1, 3, 4, 5, 9)] == [0.7, 0.5, 0.5, 0.1, 0.1]
    later = s.join(s.configure("outer_lr", 0.2, 3, by=b))  # a newer write for round 3
    assert later.setting("outer_lr", 4) == 0.2


# -- stragglers, leaves and joins -----------------------------------------------------------


def test_skip_after_timeout_is_deterministic() -> None:
    """Two replicas time out on one slot while the late contribution is also in flight:
    every delivery order folds the round without it (skip wins)."""
    played = play_rounds(4, rounds=2)
    late_key = (2, played.final.expected(2)[-1])
    late = [d for d in played.deltas if late_key in d.slots]
    others = [d for d in played.deltas if late_key not in d.slots]
    before = Weights.initial()
    for d in others:
        before.join_inplace(d)
    assert before.missing(2) == [late_key[1]]
    skips = [before.skip(*late_key, by=Actor(ReplicaId(rid))) for rid in (10, 11)]
    expected = before.join(skips[0])
    results = set()
    rng = random.Random(4)
    for _ in range(20):
        order = others + late + skips
        rng.shuffle(order)
        s = Weights.initial()
        for d in order:
            s.join_inplace(d)
        assert s.slots[late_key] is SKIP
        results.add(s.value().digest)
    assert results == {expected.value().digest}
    assert expected.value().digest != played.final.value().digest


def test_a_leave_stops_the_wait_and_a_join_waits_for_its_round() -> None:
    played = play_rounds(5, rounds=4, churn=True)
    s = played.final
    leaver, joiner = 12, 13
    assert leaver in s.expected(2) and leaver not in s.expected(3)
    assert joiner not in s.expected(2) and joiner in s.expected(3)
    assert s.decided_round() == 4
    assert s.join_round() >= 6  # a newcomer announces a round nobody can have decided


def test_decided_round_only_grows() -> None:
    played = play_rounds(6, rounds=4, skip_prob=0.3)
    s = Weights.initial()
    last = s.decided_round()
    for d in random.Random(6).sample(played.deltas, k=len(played.deltas)):
        s.join_inplace(d)
        assert s.decided_round() >= last
        last = s.decided_round()


# -- compaction -----------------------------------------------------------------------------


@PROPS
@given(seed=st.integers(0, 2**32 - 1), through=st.integers(1, 4), churn=st.booleans())
def test_compaction_never_changes_the_read(seed: int, through: int, churn: bool) -> None:
    played = play_rounds(seed, churn=churn, skip_prob=0.2)
    s = played.final
    compacted = s.join(s.compact(through, by=Actor(ReplicaId(1))))
    assert compacted.checkpoint is not None and compacted.checkpoint.round == through
    assert all(r > through for r, _ in compacted.slots)
    assert compacted.value().digest == s.value().digest
    assert np.array_equal(compacted.value().weights, s.value().weights)
    # A replica that compacted still converges with one that did not, in any order.
    rng = random.Random(seed)
    partial = Weights.initial()
    for d in rng.sample(played.deltas, k=len(played.deltas) // 2):
        partial.join_inplace(d)
    assert compacted.join(partial) == partial.join(compacted) == compacted
    assert encode(decode(encode(compacted))) == encode(compacted)


def test_stable_round_needs_every_next_worker_to_have_built_on_it() -> None:
    played = play_rounds(7, rounds=4)
    s = played.final
    assert s.stable_round() == 3  # round 4 has no round 5 built on it yet
    behind = s.join(s.skip(4, s.expected(4)[0], by=Actor(ReplicaId(1))))
    assert behind.stable_round() == 2  # a Skip is no evidence that its worker saw round 3
    assert Weights.initial().stable_round() == -1


# -- quantization ---------------------------------------------------------------------------


@PROPS
@given(seed=st.integers(0, 2**32 - 1), codec=st.sampled_from(["fp32", "fp16", "int8"]))
def test_quantization_error_is_bounded_and_feedback_recovers_it(seed: int, codec: str) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.05, size=P)
    got = dequantize(quantize(x, SIZES, codec), SIZES, codec)
    assert got is not None
    bound = np.empty(P)
    start = 0
    for n in SIZES:  # int8: half a step of the tensor's own scale
        part = x[start : start + n]
        steps = {"fp32": 1e-7, "fp16": 1e-4, "int8": np.abs(part).max() / 127 / 2}
        bound[start : start + n] = steps[codec]
        start += n
    assert np.all(np.abs(got - x) <= bound + 1e-12)
    # Error feedback: what one round loses, the next round sends, so the error of the sum
    # over two rounds stays the error of one round instead of doubling.
    twice = dequantize(quantize(x + (x - got), SIZES, codec), SIZES, codec)
    assert twice is not None
    assert np.all(np.abs(got + twice - 2 * x) <= 1.05 * bound + 1e-12)


def test_payload_sizes() -> None:
    x = np.zeros(P)
    assert [len(quantize(x, SIZES, c)) for c in ("fp32", "fp16", "int8")] == [
        4 * P,
        2 * P,
        4 * len(SIZES) + P,
    ]
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.full(P, np.nan), SIZES, "fp16")
    with pytest.raises(ValueError, match="codec"):
        quantize(x, SIZES, "int4")  # type: ignore[arg-type]


def test_flatten_concatenates_in_order() -> None:
    vec, sizes = flatten([np.ones((2, 3)), np.arange(2)])
    assert sizes == (6, 2) and vec.tolist() == [1.0] * 6 + [0.0, 1.0]


# -- the codec ------------------------------------------------------------------------------


def _small_state() -> Weights:
    a, b = Actor(ReplicaId(1)), Actor(ReplicaId(2**63 + 5))
    s = Weights.initial()
    for d in (
        s.initialize(np.array([0.5, -1.0]), (1, 1), by=a),
        s.enroll(1, by=a),
        s.enroll(2, by=b),
        s.leave(3, by=a),
    ):
        s.join_inplace(d)
    base = s.fold().digest
    s.join_inplace(s.contribute(1, b"\x00\x3c\x00\xbc", n_samples=7, codec="fp16", base=base, by=a))
    s.join_inplace(s.skip(2, 1, by=b))
    s.slots  # noqa: B018
    return s


GOLDEN = (
    "0a01"  # tag WEIGHTS, version 1
    "01"
    "00"
    "02"
    "01"
    "01"  # checkpoint: round 0, sizes (1, 1)
    "3fe0000000000000"
    "bff0000000000000"  # weights 0.5, -1.0
    "0000000000000000"
    "0000000000000000"  # momentum 0, 0
    "02"  # two members
    "0000000000000001"
    "01"
    "03"  # worker 1: join 1, leave 3
    "8000000000000005"
    "02"
    "00"  # worker 2**63+5: join 2, never leaves
    "02"  # two slots
    "01"
    "0000000000000001"
    "01"
    "07"
    "02"  # (1, worker 1): contribution, 7 samples, fp16
)


def test_golden_bytes() -> None:
    s = _small_state()
    data = encode(s)
    assert data.hex().startswith(GOLDEN)
    base = s.fold(0).digest
    rest = base.hex() + "04003c00bc" + "02" + "0000000000000001" + "02" + "00"
    assert data.hex() == GOLDEN + rest
    assert decode_as(data, Weights) == s


def test_truncated_input_asks_for_more_bytes() -> None:
    data = encode(play_rounds(8, rounds=2).final)
    for n in range(len(data)):
        with pytest.raises(DecodeError) as info:
            decode(data[:n])
        # Cut short anywhere, the input is either known incomplete or already invalid.
        assert isinstance(info.value, DecodeError)
    assert sum(_is_truncated(data[:n]) for n in range(len(data))) > len(data) // 2


def _is_truncated(data: bytes) -> bool:
    try:
        decode(data)
    except TruncatedError:
        return True
    except DecodeError:
        return False
    return False


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_bytes_raise_only_decode_errors(data: st.DataObject) -> None:
    raw = bytearray(encode(_small_state()))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(2, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        s = decode(bytes(raw))
    except DecodeError:
        return
    assert isinstance(s, Weights)
    assert encode(s) == bytes(raw)  # whatever decodes is canonical


def test_claimed_sizes_are_not_trusted() -> None:
    huge = bytes.fromhex("0a01010001ffffffff0f")  # 2**32-1 parameters, no bytes
    with pytest.raises(DecodeError):
        decode(huge)
    with pytest.raises(TruncatedError):
        decode(bytes.fromhex("0a0101000110"))  # 16 parameters, no bytes


def test_non_canonical_order_is_refused() -> None:
    s = Weights.initial()
    s.join_inplace(s.enroll(1, by=Actor(ReplicaId(1))))
    s.join_inplace(s.enroll(1, by=Actor(ReplicaId(2))))
    data = bytearray(encode(s))
    one, two = (1).to_bytes(8, "big"), (2).to_bytes(8, "big")
    i, j = data.index(one), data.index(two)
    data[i : i + 8], data[j : j + 8] = two, one
    with pytest.raises(DecodeError, match="sorted"):
        decode(bytes(data))


def test_contribution_digest_covers_everything() -> None:
    base = bytes(16)
    c = Contribution(3, 1, base, b"abcd")  # type: ignore[arg-type]
    assert c.digest != Contribution(4, 1, base, b"abcd").digest  # type: ignore[arg-type]
    assert c.digest != Contribution(3, 2, base, b"abcd").digest  # type: ignore[arg-type]
    assert c.digest != Contribution(3, 1, b"\1" * 16, b"abcd").digest  # type: ignore[arg-type]
    assert SKIP.digest > c.digest


def test_docstring_examples_run() -> None:
    import doctest

    import convergent.crdt.weights
    import convergent.run.weights

    for module in (convergent.crdt.weights, convergent.run.weights):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


# -- in a run -------------------------------------------------------------------------------


def test_weights_travel_between_runs_as_ops(tmp_path: Path) -> None:
    import convergent
    from convergent.run import Run

    alice = convergent.open(tmp_path / "alice.db")
    bob = Run(join=alice.export_since())
    alice.weights.initialize(np.arange(4.0), (3, 1))
    bob.merge_bytes(alice.export_since(bob.version))
    assert alice.weights.enroll(1) == 1 and bob.weights.enroll(1) == 1
    for r in (1, 2, 3):
        for run in (alice, bob):  # each trains from its own read of round r - 1
            run.merge_bytes((bob if run is alice else alice).export_since(run.version))
            assert run.weights.decided_round() == r - 1
            base = run.weights.fold(r - 1).digest
            step = np.full(4, 0.1 * r if run is alice else -0.05)
            run.weights.contribute(r, step, n_samples=16, base=base, codec="int8")
    alice.merge_bytes(bob.export_since(alice.version))
    bob.merge_bytes(alice.export_since(bob.version))
    assert alice.weights.model().digest == bob.weights.model().digest
    assert alice.weights.model().round == 3
    assert alice.weights.compact() == 2  # round 3 has no round 4 built on it
    assert alice.weights.model().digest == bob.weights.model().digest
    digest = alice.weights.model().digest
    alice.compact()
    alice.close()
    again = convergent.open(tmp_path / "alice.db")
    assert again.weights.model().digest == digest
    assert again.weights.state().checkpoint is not None
    again.close()


def test_time_out_skips_the_missing_and_drops_a_worker_that_missed_twice() -> None:
    played = play_rounds(9, rounds=2)
    s = played.final.copy()
    late = s.expected(3)[-1]
    a = Actor(ReplicaId(10))
    others = [rid for rid in s.expected(3) if rid != late]

    def others_train(state: Weights, round: int) -> None:
        base = state.fold(round - 1).digest
        for rid in others:
            zeros = quantize(np.zeros(P), SIZES, "fp16")
            by = Actor(ReplicaId(rid))
            state.join_inplace(
                state.contribute(round, zeros, n_samples=1, codec="fp16", base=base, by=by)
            )

    others_train(s, 3)  # everyone but ``late`` trains round 3 ...
    once = s.join(s.time_out(3, by=a))
    assert once.slots[(3, late)] is SKIP and late in once.expected(4)  # one miss: still in
    others_train(once, 4)
    twice = once.join(once.time_out(4, by=a))
    assert late not in twice.expected(5)  # two misses in a row: tombstoned
    # Two replicas timing out concurrently write the same delta: one outcome.
    b = Actor(ReplicaId(11))
    assert once.join(once.time_out(4, by=b)) == twice
    assert s.time_out(1, by=a) == Weights.initial()  # nothing missing, nothing written


def test_the_hub_takes_a_workers_weights_and_refuses_a_forged_slot() -> None:
    from convergent.run.ops import Part
    from convergent.sync import Code, Role
    from convergent.sync.session import WRITABLE
    from test_sync_session import Sim

    assert Part.WEIGHTS in WRITABLE[Role.WORKER] and Part.WEIGHTS not in WRITABLE[Role.EDITOR]
    sim = Sim({"w": "work", "v": "view"})
    sim.settle()
    worker, viewer = sim.runs["w"], sim.runs["v"]
    worker.weights.initialize(np.zeros(3))
    worker.weights.enroll(1)
    worker.weights.contribute(1, np.ones(3), n_samples=8, base=worker.weights.fold(0).digest)
    sim.push("w")
    sim.settle()
    assert viewer.weights.decided_round() == 1
    assert viewer.weights.model().digest == worker.weights.model().digest
    # A contribution in another worker's slot: refused before it is stored or forwarded.
    with worker.transaction():
        worker._replicas[Part.WEIGHTS].mutate(
            lambda s, *, by: s.contribute(
                2,
                quantize(np.ones(3), (3,), "fp16"),
                n_samples=8,
                codec="fp16",
                base=bytes(16),
                by=Actor(ReplicaId(999)),
            )
        )
        worker._touched.add(Part.WEIGHTS)
    sim.push("w")
    sim.settle()
    refused = sim.clients["w"].refused
    assert [e.code for e in refused] == [Code.INVALID]
    assert "may not contribute" in refused[0].message
    assert (2, 999) not in sim.hub.weights.state().slots
    assert (2, 999) not in viewer.weights.state().slots


def test_forty_contributions_twenty_orders_one_result() -> None:
    """The prototype's check, as written in the reference: 40 contributions merged in 20
    random orders, with duplicates and through an intermediate replica, give one result."""
    played = play_rounds(40, workers=5, rounds=8, codec="int8", skip_prob=0.1)
    contributions = sum(isinstance(s, Contribution) for s in played.final.slots.values())
    assert contributions + sum(s is SKIP for s in played.final.slots.values()) == 40
    rng = random.Random(40)
    results = set()
    for _ in range(20):
        order = played.deltas + rng.choices(played.deltas, k=10)
        rng.shuffle(order)
        relay, replica = Weights.initial(), Weights.initial()
        for i, d in enumerate(order):
            (relay if i % 2 else replica).join_inplace(d)
            if i % 7 == 0:
                replica.join_inplace(relay)  # through the intermediate replica
        replica.join_inplace(relay)
        results.add((replica.value().digest, encode(replica)))
    assert len(results) == 1


def test_the_hub_folds_stable_rounds_so_its_state_stays_small() -> None:
    from test_sync_session import Sim

    sim = Sim({"w": "work", "v": "view"})
    sim.settle()
    worker, viewer = sim.runs["w"], sim.runs["v"]
    worker.weights.initialize(np.zeros(3))
    worker.weights.enroll(1)
    for r in range(1, 6):  # one worker: round r is stable once round r + 1 is built on it
        base = worker.weights.fold(r - 1).digest
        worker.weights.contribute(r, np.full(3, 0.1), n_samples=8, base=base, codec="fp32")
        sim.push("w")
        sim.settle()
    hub = sim.hub.weights.state()
    assert hub.checkpoint is not None and hub.checkpoint.round == 4
    assert sorted(r for r, _ in hub.slots) == [5]  # rounds 1-4 folded away
    assert worker.weights.state().checkpoint.round == 0  # the worker compacts on its own
    digest = worker.weights.model().digest
    assert sim.hub.weights.model().digest == viewer.weights.model().digest == digest
