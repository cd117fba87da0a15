"""The Run byte formats (op, snapshot, bundle, version): golden bytes, truncation vs invalid,
malformed parts, fuzzing, and merges that refuse bad input without storing any of it."""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convergent.codec import (
    VERSIONS,
    DecodeError,
    InvalidError,
    Tag,
    TruncatedError,
    UnsupportedVersionError,
    encode,
)
from convergent.codec.states import write_context
from convergent.codec.wire import Writer
from convergent.crdt import (
    RGA,
    Actor,
    AppendLog,
    AWSet,
    CausalContext,
    Crdt,
    HybridLogicalClock,
    MVRegister,
    ORMap,
    ReplicaId,
)
from convergent.run import Float, Run
from convergent.run.dataset import sample_id
from convergent.run.document import digest_of
from convergent.run.ops import (
    INITIAL,
    METRIC_FIELDS,
    Bundle,
    Op,
    Part,
    decode_bundle,
    decode_op,
    decode_snapshot,
    decode_version,
    encode_bundle,
    encode_op,
    encode_snapshot,
    encode_version,
)
from convergent.storage import MemoryStore

CRASHERS = Path(__file__).parent / "fuzz-crashers"
MS = 1_700_000_000_000
RUN_ID = "golden-run"
BLOB = b"\x02a sample payload"  # encode_payload("a sample payload"): kind TEXT, then UTF-8


def actor(rid: int) -> Actor:
    return Actor(ReplicaId(rid), HybridLogicalClock(wall=lambda: MS))


def examples() -> dict[str, Any]:
    """One value of every Run format, built from real mutators with fixed clocks."""
    a, b = actor(1), actor(2)
    clock = HybridLogicalClock(wall=lambda: MS)
    config = ORMap().set("lr", 0.05, by=a)
    ids = np.array([11, 22, 33])
    samples = AWSet().add_many(ids, by=a)
    labels = ORMap().set_many(ids, np.array([0, 1, 0]), by=a)
    tags = ORMap.of(AWSet).initial()
    tags = tags.apply(22, lambda s: s.add("blurry", by=a), by=a)
    metrics = AppendLog(METRIC_FIELDS)
    rows = {"step": [0, 1], "time": [MS, MS + 5], "metric": [0, 0], "value": [2.5, 1.25]}
    metrics = metrics.append_many(rows, by=b)

    out: dict[str, Any] = {}
    out["op_config"] = Op(1, 1, int(clock.now()), {Part.CONFIG: config})
    out["op_parts"] = Op(
        1, 2, int(clock.now()), {Part.SAMPLES: samples, Part.LABELS: labels, Part.TAGS: tags}
    )
    version = CausalContext.of_dots([(1, 1), (1, 2), (2, 1)])
    out["snapshot"] = (
        version,
        int(clock.last),  # the clock when taken (reading it does not advance it)
        {
            Part.CONFIG: config,
            Part.SAMPLES: samples,
            Part.LABELS: labels,
            Part.TAGS: tags,
            Part.METRICS: metrics,
        },
    )
    # One op adding one sample, carrying the blob its id comes from.
    digest = digest_of(BLOB)
    sid = sample_id(digest)
    payloads = ORMap().set(sid, "text", by=a)
    added = AWSet().add(sid, by=a)
    sample_op = encode_op(1, 3, int(clock.now()), {Part.SAMPLES: added, Part.PAYLOADS: payloads})
    out["bundle"] = Bundle(RUN_ID, ((sample_op, {digest: BLOB}),))
    out["version"] = CausalContext.of_dots([(1, 1), (1, 2), (1, 3), (2, 1), (9, 4), (9, 5)])
    return out


def encode_any(name: str, value: Any) -> bytes:
    kind = name.split("_", maxsplit=1)[0]
    if kind == "op":
        return encode_op(value.origin, value.seq, value.hlc, value.deltas)
    if kind == "snapshot":
        return encode_snapshot(*value)
    if kind == "bundle":
        return encode_bundle(value)
    return encode_version(value)


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "op": decode_op,
    "snapshot": decode_snapshot,
    "bundle": decode_bundle,
    "version": decode_version,
}


def decoder(name: str) -> Callable[[bytes], Any]:
    return DECODERS[name.split("_", maxsplit=1)[0]]


# Pinned bytes: any change to these is a format change and needs a new format version.
GOLDEN = {
    "op_config": "1001000000000000000101808080c0d6fcf3c50101022a0601010100000000000000010100000101"
    "00000200026c7280808080adf9e78b03043fa999999999999a",
    "op_parts": "1001000000000000000102818080c0d6fcf3c501030316050101000000000000000101000203010002"
    "011616160426060101010000000000000001010002030100020116161682808080adf9e78b0300000100020106"
    "200601030201000000000000000101000001012c01010000020006626c75727279",
    "snapshot": "1101818080c0d6fcf3c501020000000000000001000000000000000201000101000005022a060101"
    "010000000000000001010000010100000200026c7280808080adf9e78b03043fa999999999999a03"
    "16050101000000000000000101000203010002011616160426060101010000000000000001010002"
    "030100020116161682808080adf9e78b030000010002010620060103020100000000000000010100"
    "0001012c01010000020006626c7572727908450701040473746570010474696d6501066d65747269"
    "63010576616c756502010000000000000002010002000280a0abfef9620a00004004000000000000"
    "3ff4000000000000",
    "bundle": "12010a676f6c64656e2d72756e01621001000000000000000103828080c0d6fcf3c50102031c05010100"
    "00000000000001010000010100000191ecbdf3c4e684914d072d06010101000000000000000101000001010000"
    "0191ecbdf3c4e684914d84808080adf9e78b03020004746578740110d96ef665d8c844f7155da98ce59fe63c11"
    "02612073616d706c65207061796c6f6164",
    "version": "130103000000000000000100000000000000020000000000000009010002010000010301",
}


def golden(name: str) -> bytes:
    return bytes.fromhex(GOLDEN[name])


def _write_raw_parts(w: Writer, parts: list[tuple[int, bytes]], count: int | None) -> bytes:
    w.uvarint(len(parts) if count is None else count)
    for code, state in parts:
        w.byte(code)
        w.blob(state)
    return bytes(w.getvalue())


def raw_op(parts: list[tuple[int, bytes]], *, seq: int = 1, count: int | None = None) -> bytes:
    """An op written by hand, so tests can put parts in any order, of any type, any count."""
    w = Writer()
    w.byte(Tag.RUN_OP)
    w.byte(VERSIONS[Tag.RUN_OP])
    w.raw((1).to_bytes(8, "big"))
    w.uvarint(seq)
    w.uvarint(MS << 16)
    return _write_raw_parts(w, parts, count)


def raw_snapshot(parts: list[tuple[int, bytes]], *, count: int | None = None) -> bytes:
    """A snapshot (at version {1: 1}) written by hand, like `raw_op`."""
    w = Writer()
    w.byte(Tag.RUN_SNAPSHOT)
    w.byte(VERSIONS[Tag.RUN_SNAPSHOT])
    w.uvarint(7)  # the clock when taken
    write_context(w, CausalContext.of_dots([(1, 1)]))
    return _write_raw_parts(w, parts, count)


def bundle_of(*ops: tuple[bytes, Mapping[bytes, bytes]], run_id: str = RUN_ID) -> bytes:
    return encode_bundle(Bundle(run_id, tuple(ops)))


def crasher_name(exc: BaseException, data: bytes) -> str:
    """The file name a crash input gets in tests/fuzz-crashers/."""
    return f"{type(exc).__name__}-{hashlib.sha1(data).hexdigest()[:10]}.bin"


def target_run() -> Run:
    """A run of the golden bundle's run that already holds a local op of its own."""
    store = MemoryStore()
    store.set_meta("run", RUN_ID)
    run = Run(store, replica_id=ReplicaId(2), clock=HybridLogicalClock(wall=lambda: MS))
    run.dataset.add("first sample", label=1)
    return run


# -- golden bytes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_bytes(name: str) -> None:
    value = examples()[name]
    assert encode_any(name, value).hex() == GOLDEN[name]
    decoded = decoder(name)(golden(name))
    assert decoded == value
    assert encode_any(name, decoded) == golden(name)


def test_every_run_format_has_a_golden_vector() -> None:
    encoded_tags = {golden(name)[0] for name in GOLDEN}
    assert encoded_tags == {t for t in Tag if 0x10 <= t < 0x40}  # frames: test_sync_protocol


def test_golden_bundle_merges_with_its_blob() -> None:
    run = Run()
    assert run.merge_bytes(golden("bundle")) == 1
    assert run.id == RUN_ID
    assert run.blob(digest_of(BLOB)) == BLOB
    assert sample_id(digest_of(BLOB)) in run.dataset.ids().tolist()
    assert run.version.to_bytes() == encode_version(CausalContext.of_dots([(1, 3)]))
    assert run.merge_bytes(golden("bundle")) == 0  # a second merge is a join twice


def test_a_run_writes_canonical_ops_in_this_format() -> None:
    run = Run(replica_id=ReplicaId(1), clock=HybridLogicalClock(wall=lambda: MS))
    run.config.declare({"lr": Float(0.1, min=0.0)})
    run.config["lr"] = 0.05
    run.dataset.add("a sample payload", label=0)
    bundle = decode_bundle(run.export_since())
    assert encode_bundle(bundle) == run.export_since()
    hlcs = []
    for seq, (raw, _) in enumerate(bundle.ops, start=1):
        op = decode_op(raw)
        assert (op.origin, op.seq) == (1, seq)
        assert encode_op(op.origin, op.seq, op.hlc, op.deltas) == raw
        hlcs.append(op.hlc)
    assert hlcs == sorted(set(hlcs))
    assert decode_op(bundle.ops[1][0]).deltas.keys() == {Part.CONFIG}
    assert bundle.ops[2][1] == {digest_of(BLOB): BLOB}
    assert decode_version(run.version.to_bytes()) == run.version.context


# -- truncated vs invalid ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_strict_prefix_is_truncated_not_invalid(name: str) -> None:
    data = golden(name)
    decode_any = decoder(name)
    for cut in range(len(data)):
        with pytest.raises(TruncatedError):
            decode_any(data[:cut])


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_trailing_bytes_are_invalid(name: str) -> None:
    with pytest.raises(InvalidError, match="trailing"):
        decoder(name)(golden(name) + b"\x00")


def test_a_truncated_state_inside_a_complete_part_is_invalid() -> None:
    state = encode(examples()["op_config"].deltas[Part.CONFIG])
    with pytest.raises(InvalidError):
        decode_op(raw_op([(Part.CONFIG, state[:-3])]))


def test_a_truncated_op_inside_a_complete_bundle_is_invalid() -> None:
    with pytest.raises(InvalidError):
        Run().merge_bytes(bundle_of((golden("op_config")[:-1], {})))


def test_claimed_huge_counts_and_lengths_are_refused_without_allocating() -> None:
    header = golden("bundle")[:2] + bytes([0])  # RUN_BUNDLE v1, run id ""
    huge = bytes([0x80] * 8 + [0x10])  # uvarint 2**60
    with pytest.raises(InvalidError, match="exceeds the limit"):
        decode_bundle(header + huge)  # 2**60 ops
    with pytest.raises(TruncatedError):
        decode_bundle(header + b"\x01" + huge)  # one op claiming 2**60 bytes
    with pytest.raises(InvalidError, match="exceeds the limit"):
        decode_version(golden("version")[:2] + huge)  # 2**60 replicas
    with pytest.raises(InvalidError, match="exceeds the limit"):
        decode_op(raw_op([], count=len(Part) + 1))  # more parts than a run has
    with pytest.raises(InvalidError, match="exceeds the limit"):
        decode_snapshot(raw_snapshot([], count=len(Part) + 1))


def test_op_sequence_numbers_start_at_one() -> None:
    with pytest.raises(InvalidError, match="start at 1"):
        decode_op(raw_op([], seq=0))


def test_run_id_must_be_utf8() -> None:
    data = bytearray(golden("bundle"))
    data[3] = 0xFF  # first byte of "golden-run"
    with pytest.raises(InvalidError, match="UTF-8"):
        decode_bundle(bytes(data))


# -- tags, versions and parts --------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_wrong_tag_is_invalid(kind: str) -> None:
    decode_any = DECODERS[kind]
    others = [golden(n) for n in GOLDEN if not n.startswith(kind)]
    others += [encode(AWSet()), encode(ORMap()), b"\x7f\x01", b"\x00\x01"]
    for data in others:
        with pytest.raises(InvalidError, match=rf"expected a RUN_{kind.upper()} \(tag"):
            decode_any(data)


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_format_version_is_unsupported(name: str, version: int) -> None:
    data = bytearray(golden(name))
    tag = Tag(data[0])
    data[1] = version
    with pytest.raises(UnsupportedVersionError, match=f"{tag.name} format version {version}"):
        decoder(name)(bytes(data))


@pytest.mark.parametrize("code", [len(Part) + 1, 0x7F, 0xFF])
def test_unknown_part_code_is_unsupported(code: int) -> None:
    state = encode(ORMap())
    with pytest.raises(UnsupportedVersionError, match=f"run part {code}"):
        decode_op(raw_op([(code, state)]))
    with pytest.raises(UnsupportedVersionError, match=f"run part {code}"):
        decode_snapshot(raw_snapshot([(Part.CONFIG, state), (code, state)]))


@pytest.mark.parametrize(
    "codes",
    [[0], [Part.LABELS, Part.SAMPLES], [Part.CONFIG, Part.CONFIG], [1, 2, 3, 3]],
    ids=["code-0", "out-of-order", "repeated", "repeated-last"],
)
def test_parts_out_of_order_or_repeated_are_invalid(codes: list[int]) -> None:
    parts = [(c, encode(INITIAL[Part(c)]() if c else ORMap())) for c in codes]
    with pytest.raises(InvalidError, match="increasing order"):
        decode_op(raw_op(parts))
    with pytest.raises(InvalidError, match="increasing order"):
        decode_snapshot(raw_snapshot(parts))


def test_every_part_accepts_its_own_type() -> None:
    parts = [(p, encode(make())) for p, make in INITIAL.items()]
    op = decode_op(raw_op(parts))
    assert op.deltas == {p: make() for p, make in INITIAL.items()}
    _, _, states = decode_snapshot(raw_snapshot(parts))
    assert states == op.deltas


WRONG_TYPES: list[tuple[Part, Callable[[], Crdt]]] = [
    (Part.CONFIG, AWSet),
    (Part.CONFIG, RGA),
    (Part.SAMPLES, ORMap),
    (Part.LABELS, ORMap.of(AWSet).initial),
    (Part.LABELS, ORMap.of(ORMap.of(MVRegister)).initial),
    (Part.TAGS, ORMap),
    (Part.METRICS, AppendLog),  # the default fields, not the run's metric fields
    (Part.METRIC_NAMES, MVRegister),
    (Part.COMMENTS, ORMap),
    (Part.DESCRIPTION, AWSet),
]


@pytest.mark.parametrize(
    ("part", "make"), WRONG_TYPES, ids=[f"{p.label}-{i}" for i, (p, _) in enumerate(WRONG_TYPES)]
)
def test_part_of_the_wrong_type_is_invalid(part: Part, make: Callable[[], Crdt]) -> None:
    parts = [(part, encode(make()))]
    with pytest.raises(InvalidError, match=f"part '{part.label}' cannot hold"):
        decode_op(raw_op(parts))
    with pytest.raises(InvalidError, match=f"part '{part.label}' cannot hold"):
        decode_snapshot(raw_snapshot(parts))


def test_a_part_holding_a_run_format_is_invalid() -> None:
    with pytest.raises(InvalidError, match="not a state"):
        decode_op(raw_op([(Part.CONFIG, golden("op_config"))]))


# -- blobs and merges ----------------------------------------------------------------------


def test_blob_not_matching_its_digest_is_refused_and_nothing_is_stored() -> None:
    ((sample_op, blobs),) = examples()["bundle"].ops
    ((digest, data),) = blobs.items()
    forged = bundle_of((golden("op_config"), {}), (sample_op, {digest: data[:-1] + b"!"}))
    store = MemoryStore()
    run = Run(store)
    revision = run.revision
    with pytest.raises(InvalidError, match="does not match its digest"):
        run.merge_bytes(forged)
    assert run.version.ops == 0
    assert run.revision == revision
    assert list(store.ops_after(0)) == []
    assert store.get_blob(digest) is None
    assert store.get_meta("run") is None
    # The same ops with the right bytes go in.
    assert run.merge_bytes(bundle_of((golden("op_config"), {}), (sample_op, blobs))) == 2
    assert run.blob(digest) == BLOB


def test_blob_mismatch_leaves_a_run_with_ops_unchanged() -> None:
    run = target_run()
    version, exported = run.version, run.export_since()
    data = bytearray(golden("bundle"))
    data[-1] ^= 1  # last byte of the blob
    with pytest.raises(InvalidError, match="does not match its digest"):
        run.merge_bytes(bytes(data))
    assert run.version == version
    assert run.export_since() == exported


# -- fuzzing -------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four byte flips, overwrites, insertions or deletions."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        what = rng.random()
        if what < 0.3 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif what < 0.55 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif what < 0.8:
            out.insert(rng.randint(0, len(out)), rng.randrange(256))
        elif out:
            del out[rng.randrange(len(out))]
    return bytes(out)


def decode_fully(kind: str, data: bytes) -> None:
    """Decode with one decoder; what it accepts must be the canonical encoding of the value."""
    value = DECODERS[kind](data)
    assert encode_any(kind, value) == data, f"non-canonical {kind} accepted: {data.hex()}"
    if kind == "bundle":
        for raw, _ in value.ops:
            with contextlib.suppress(DecodeError):
                decode_fully("op", raw)


def test_crash_inputs_only_raise_decode_errors() -> None:
    files = sorted(CRASHERS.glob("*.bin"))
    assert files, "the committed crash-input folder is empty"
    for path in files:
        data = path.read_bytes()
        for kind in DECODERS:
            with contextlib.suppress(DecodeError):
                decode_fully(kind, data)
        run = target_run()
        with contextlib.suppress(DecodeError):
            run.merge_bytes(data)


def test_seeded_mutation_fuzz_only_raises_decode_errors() -> None:
    rng = random.Random(20240611)
    names = sorted(GOLDEN)
    crashes: dict[str, str] = {}
    decoded = 0
    for _ in range(2000):
        data = mutate(rng, golden(rng.choice(names)))
        for kind in DECODERS:
            try:
                decode_fully(kind, data)
                decoded += 1
            except DecodeError:
                pass
            except AssertionError:  # a non-canonical input accepted: not a crash, a failure
                raise
            except Exception as exc:  # anything else is a decoder bug
                crashes[crasher_name(exc, data)] = data.hex()
    assert not crashes, f"save these under tests/fuzz-crashers/: {crashes}"
    assert decoded > 0  # some mutations (a flipped float bit, say) must still decode


def test_merging_mutated_bundles_is_all_or_nothing() -> None:
    """A mutated bundle (or a valid bundle around a mutated op) either merges or raises a
    DecodeError and leaves the run exactly as it was."""
    rng = random.Random(7)
    good_bundle = golden("bundle")
    ops = [golden("op_config"), golden("op_parts"), examples()["bundle"].ops[0][0]]
    crashes: dict[str, str] = {}
    merged = refused = 0
    run = target_run()
    for i in range(400):
        # Odd cases mutate the bundle; even ones wrap a mutated op in a well-formed bundle.
        op = mutate(rng, rng.choice(ops))
        data = mutate(rng, good_bundle) if i % 2 else bundle_of((op, {}))
        version, exported, revision = run.version, run.export_since(), run.revision
        try:
            run.merge_bytes(data)
        except DecodeError:
            refused += 1
            assert run.version == version, data.hex()
            assert run.export_since() == exported, data.hex()
            assert run.revision == revision, data.hex()
            continue
        except Exception as exc:  # anything else is a bug
            crashes[crasher_name(exc, data)] = data.hex()
        else:
            merged += 1
            Run().merge_bytes(run.export_since())  # what was merged can be passed on
        run = target_run()
    assert not crashes, f"save these under tests/fuzz-crashers/: {crashes}"
    assert merged > 0 and refused > 0, (merged, refused)
