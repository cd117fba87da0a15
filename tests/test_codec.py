"""The codec: golden bytes, truncation vs invalid, fuzzing, crash inputs, future tags."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convergent.codec import (
    DecodeError,
    InvalidError,
    Tag,
    TruncatedError,
    UnsupportedVersionError,
    decode,
    decode_as,
    encode,
)
from convergent.crdt import (
    RGA,
    Actor,
    AppendLog,
    AWSet,
    Crdt,
    GCounter,
    HybridLogicalClock,
    LWWRegister,
    MVRegister,
    ORMap,
    PNCounter,
    ReplicaId,
    Weights,
)

CRASHERS = Path(__file__).parent / "fuzz-crashers"


def actor(rid: int, ms: int = 1_700_000_000_000) -> Actor:
    return Actor(ReplicaId(rid), HybridLogicalClock(wall=lambda: ms))


def examples() -> dict[str, Crdt]:
    """One small state of every type, built from real operations with fixed clocks."""
    a, b = actor(1), actor(2)
    out: dict[str, Crdt] = {}
    g = GCounter()
    g.join_inplace(g.increment(5, by=a))
    g.join_inplace(g.increment(2, by=b))
    out["gcounter"] = g
    p = PNCounter()
    p.join_inplace(p.increment(5, by=a))
    p.join_inplace(p.decrement(7, by=b))
    out["pncounter"] = p
    lww = LWWRegister()
    lww.join_inplace(lww.set(2**62, by=a))
    out["lww"] = lww
    m = MVRegister()
    m.join_inplace(m.set(0.1, by=a))
    m.join_inplace(MVRegister().set("é🙂", by=b))
    out["mvregister"] = m
    s = AWSet()
    s.join_inplace(s.add("cat", by=a))
    s.join_inplace(s.add_many(np.array(["dog", "eel", "fox"]), by=b))
    s.join_inplace(s.remove("eel", by=a))
    out["awset"] = s
    o = ORMap()
    o.join_inplace(o.set("lr", 0.02, by=a))
    o.join_inplace(o.set("batch_size", 64, by=a))
    o.join_inplace(o.remove("batch_size", by=a))
    out["ormap"] = o
    n = ORMap.of(ORMap.of(MVRegister)).initial()
    n.join_inplace(n.apply("s1", lambda x: x.set("label", 3, by=a), by=a))
    out["ormap_nested"] = n
    t = ORMap.of(AWSet).initial()
    t.join_inplace(t.apply(7, lambda x: x.add("blurry", by=b), by=b))
    out["ormap_awset"] = t
    al = AppendLog()
    rows = {"step": [1, 2], "time": [10, 20], "value": [0.5, -0.0]}
    al.join_inplace(al.append_many(rows, by=a))
    out["appendlog"] = al
    r = RGA()
    r.join_inplace(r.extend(["a", "b", "c"], by=a))
    r.join_inplace(r.delete(1, by=b))
    out["rga"] = r
    w = Weights()
    w.join_inplace(w.initialize(np.array([0.5, -1.0]), by=a))
    w.join_inplace(w.enroll(1, by=a))
    w.join_inplace(w.skip(1, 1, by=b))
    w.join_inplace(w.configure("outer_lr", 1.0, 2, by=b))
    out["weights"] = w
    return out


# Pinned bytes: any change to these is a format change and needs a new format version.
GOLDEN = {
    "gcounter": "010102000000000000000105000000000000000202",
    "pncounter": "02010100000000000000010501000000000000000207",
    "lww": "0301808080c0d6fcf3c50100000000000000010380808080808080808001",
    "mvregister": "040102000000000000000100000000000000020100000100000201000001000082808080adf9e78b"
    "030106043fb999999999999a0506c3a9f09f9982",
    "awset": "050102000000000000000100000000000000020100000100020301000002000000000200036361740003"
    "646f670003666f78",
    "ormap": "060101010000000000000001010001010100000200026c7284808080adf9e78b03043f947ae147ae147b",
    "ormap_nested": "06010301010000000000000001010000010200027331010100000200056c6162656c"
    "88808080adf9e78b030106",
    "ormap_awset": "0601030201000000000000000201000001010e01010000020006626c75727279",
    "appendlog": "0701030473746570010474696d65010576616c756502010000000000000001010002020214"
    "143fe00000000000008000000000000000",
    "rga": "08010100000000000000010302020200000000010102000161000162000163010400",
    "weights": "0a01010001023fe0000000000000bff000000000000000000000000000000000000000000000"
    "0100000000000000010100010100000000000000010201086f757465725f6c7202818080c0d6"
    "fcf3c50100000000000000023ff0000000000000",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_bytes(name: str) -> None:
    state = examples()[name]
    assert encode(state).hex() == GOLDEN[name]
    assert decode(bytes.fromhex(GOLDEN[name])) == state


def test_every_type_has_a_golden_vector() -> None:
    # Run formats (0x10 and up) have their golden vectors in tests/test_run_ops.py.
    encoded_tags = {bytes.fromhex(h)[0] for h in GOLDEN.values()}
    assert encoded_tags == {t for t in Tag if t < 0x10 and t is not Tag.CAUSAL_CONTEXT}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_strict_prefix_is_truncated_not_invalid(name: str) -> None:
    data = bytes.fromhex(GOLDEN[name])
    for cut in range(len(data)):
        with pytest.raises(TruncatedError):
            decode(data[:cut])


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_trailing_bytes_are_invalid(name: str) -> None:
    with pytest.raises(InvalidError, match="trailing"):
        decode(bytes.fromhex(GOLDEN[name]) + b"\x00")


def test_unknown_tag_and_future_version_are_rejected_clearly() -> None:
    with pytest.raises(UnsupportedVersionError, match="type tag 127"):
        decode(b"\x7f\x01")
    future = bytearray(bytes.fromhex(GOLDEN["gcounter"]))
    future[1] = 2
    with pytest.raises(UnsupportedVersionError, match="GCOUNTER format version 2"):
        decode(bytes(future))


def test_decode_as_checks_the_type() -> None:
    with pytest.raises(InvalidError, match="expected AWSet, got GCounter"):
        decode_as(bytes.fromhex(GOLDEN["gcounter"]), AWSet)


def test_claimed_huge_count_is_refused_without_allocating() -> None:
    # An AWSet whose context claims 2**60 replicas in a handful of bytes.
    data = bytes([Tag.AWSET, 1]) + bytes([0x80] * 8 + [0x10])
    with pytest.raises(DecodeError):
        decode(data)
    # A dot interval claiming 2**40 rows must not allocate 2**40 entries.
    s = AWSet()
    s.join_inplace(s.add(1, by=actor(1)))
    good = bytearray(encode(s))
    bomb = good[:-6] + bytes([1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]) + good[-4:]
    with pytest.raises(DecodeError):
        decode(bytes(bomb))


def test_dot_outside_context_is_invalid() -> None:
    s = AWSet()
    s.join_inplace(s.add(1, by=actor(1)))
    data = bytearray(encode(s))
    # Interval of stored dots: (gap=0, span=0) -> shift the gap so the dot is 2, unseen.
    idx = data.index(bytes([1, 0, 0]), 14)
    data[idx + 1] = 1
    with pytest.raises(InvalidError):
        decode(bytes(data))


def test_non_canonical_mixed_column_is_invalid() -> None:
    o = ORMap()
    o.join_inplace(o.set(1, "x", by=actor(1)))
    data = encode(o)
    # Key column INT (1) holding one key: rewrite as MIXED (6) with a tagged int.
    at = data.index(bytes([1, 2]), 14)  # layout INT, zigzag(1)
    forged = data[:at] + bytes([6, 3, 2]) + data[at + 2 :]
    with pytest.raises(InvalidError, match="non-canonical"):
        decode(forged)


def test_crash_inputs_only_raise_decode_errors() -> None:
    files = sorted(CRASHERS.glob("*.bin"))
    assert files, "the committed crash-input folder is empty"
    for path in files:
        with contextlib.suppress(DecodeError):
            decode(path.read_bytes())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(GOLDEN)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_encodings_only_raise_decode_errors(
    name: str, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(bytes.fromhex(GOLDEN[name]))
    for pos, byte in edits:
        data[pos % len(data)] = byte
    try:
        state = decode(bytes(data))
    except DecodeError:
        return
    # Whatever decodes must be a canonical, usable state.
    assert decode(encode(state)) == state
    assert encode(decode(encode(state))) == encode(state)


def test_seeded_mutation_sweep_over_bulk_states() -> None:
    """Bit flips in larger, columnar encodings (numpy blocks, string columns)."""
    a, b = actor(1), actor(2)
    s = AWSet()
    s.join_inplace(s.add_many(np.arange(600), by=a))
    s.join_inplace(s.add_many(np.arange(300, 900), by=b))
    o = ORMap()
    o.join_inplace(o.set_many([f"k{i}" for i in range(400)], np.arange(400) * 0.5, by=a))
    rng = random.Random(1234)
    for state in (s, o):
        good = encode(state)
        for _ in range(300):
            data = bytearray(good)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            with contextlib.suppress(DecodeError):
                decode(bytes(data))
