"""The Run document's parts and the byte formats of its operations.

A run is a fixed set of named parts, each one CRDT from the core (DESIGN.md section 3). One
user action (set a key, import 100,000 samples) is one **op**: the deltas it made to the parts
it touched, stamped with its origin replica, that replica's op sequence number and an HLC.
Ops are what a store logs and what replicas exchange; the set of op ids a replica holds is its
`Version` (a causal context over ``(origin, seq)``), so "what does the other side lack" is a
context difference, and applying an op twice is a join twice: harmless.

Formats (every one starts with its tag and format version, from the one tag table):

    op       = RUN_OP v origin:u64be seq:uvarint hlc:uvarint n:uvarint (part:u8 state:blob){n}
    snapshot = RUN_SNAPSHOT v hlc:uvarint context n:uvarint (part:u8 state:blob){n}
    bundle   = RUN_BUNDLE v run:text n:uvarint (op:blob m:uvarint (digest:blob data:blob){m}){n}
    version  = RUN_VERSION v context

Parts appear in increasing code order and at most once, so equal ops encode to equal bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from convergent.codec import decode, encode
from convergent.codec.states import read_context, write_context
from convergent.codec.tags import VERSIONS, Tag
from convergent.codec.wire import Reader, Writer
from convergent.crdt import (
    RGA,
    AppendLog,
    AWSet,
    CausalContext,
    Crdt,
    MVRegister,
    ORMap,
    Weights,
)
from convergent.crdt.clock import MAX_TIMESTAMP
from convergent.errors import InvalidError, TruncatedError, UnsupportedVersionError


class Part(IntEnum):
    """The parts of a run. Codes are part of the op format: never reuse one."""

    SCHEMA = 1  # config key -> Param spec (a tuple), so every replica validates alike
    CONFIG = 2  # config key -> value
    SAMPLES = 3  # AWSet of sample ids (content hashes)
    LABELS = 4  # sample id -> label
    SPLITS = 5  # sample id -> "train" | "val" | "test"
    TAGS = 6  # sample id -> AWSet of tags
    PAYLOADS = 7  # sample id -> (kind, name): what the blob holds
    METRICS = 8  # AppendLog (step, time, metric, value), one log per writer
    METRIC_NAMES = 9  # "writer:index" -> metric name: what each writer's metric column means
    COMMENTS = 10  # comment id -> {text, resolved}
    DESCRIPTION = 11  # RGA of characters
    CHECKPOINTS = 12  # checkpoint id -> (step, digest, size, metrics)
    CONTROL = 13  # "state" -> running | paused | stopped
    COMMANDS = 14  # command id -> (name, argument): one-shot requests to trainers
    MEMBERS = 15  # user -> (display name, role)
    REPLICAS = 16  # replica id -> user
    APPLIED = 17  # "replica:counter" of a config write -> training step it took effect at
    WEIGHTS = 18  # the weights CRDT: decided-round contributions of training workers

    @property
    def bit(self) -> int:
        return 1 << self.value

    @property
    def label(self) -> str:
        return self.name.lower()


METRIC_FIELDS: tuple[tuple[str, str], ...] = (
    ("step", "i8"),
    ("time", "i8"),
    ("metric", "i8"),
    ("value", "f8"),
)

INITIAL: dict[Part, Callable[[], Crdt]] = {
    Part.SCHEMA: ORMap,
    Part.CONFIG: ORMap,
    Part.SAMPLES: AWSet,
    Part.LABELS: ORMap,
    Part.SPLITS: ORMap,
    Part.TAGS: lambda: ORMap(AWSet),
    Part.PAYLOADS: ORMap,
    Part.METRICS: lambda: AppendLog(METRIC_FIELDS),
    Part.METRIC_NAMES: ORMap,
    Part.COMMENTS: lambda: ORMap(ORMap.of(MVRegister)),
    Part.DESCRIPTION: RGA,
    Part.CHECKPOINTS: ORMap,
    Part.CONTROL: ORMap,
    Part.COMMANDS: ORMap,
    Part.MEMBERS: ORMap,
    Part.REPLICAS: ORMap,
    Part.APPLIED: ORMap,
    Part.WEIGHTS: Weights,
}

ALL_PARTS = sum(p.bit for p in Part)


def _shape(state: Crdt) -> tuple[Any, ...]:
    """What a part's states must share: the type, and a map's value kind or a log's fields."""
    if isinstance(state, ORMap):
        return (ORMap, state.store.kind)
    if isinstance(state, AppendLog):
        return (AppendLog, state.fields)
    return (type(state),)


SHAPES: dict[Part, tuple[Any, ...]] = {p: _shape(make()) for p, make in INITIAL.items()}


def decode_part(part: Part, data: bytes) -> Crdt:
    """Decode one part's state and check it has the part's type (and value kind)."""
    try:
        state = decode(data)
    except TruncatedError as err:
        # The part's length prefix was complete: more bytes can never help.
        raise InvalidError(f"part {part.label!r} is cut short inside its length: {err}") from None
    if _shape(state) != SHAPES[part]:
        raise InvalidError(f"part {part.label!r} cannot hold a {type(state).__name__}")
    return state


def _start(r: Reader, tag: Tag) -> None:
    raw_tag, version = r.byte(), r.byte()
    if raw_tag != tag:
        raise InvalidError(f"expected a {tag.name} (tag {int(tag)}), found tag {raw_tag}")
    if version != VERSIONS[tag]:
        raise UnsupportedVersionError(f"{tag.name} format version", version, VERSIONS[tag])


def _write_parts(w: Writer, parts: Mapping[Part, bytes]) -> None:
    w.uvarint(len(parts))
    for part in sorted(parts):
        w.byte(part)
        w.blob(parts[part])


def _read_parts(r: Reader) -> dict[Part, Crdt]:
    out: dict[Part, Crdt] = {}
    last = 0
    for _ in range(r.count(2, max_items=len(Part))):
        code = r.byte()
        if code <= last:
            raise InvalidError("parts must appear once each, in increasing order")
        try:
            part = Part(code)
        except ValueError:
            raise UnsupportedVersionError("run part", code, [int(p) for p in Part]) from None
        out[part] = decode_part(part, r.blob())
        last = code
    return out


@dataclass(frozen=True)
class Op:
    """One user action: the deltas it made, by whom (origin, seq) and when (hlc)."""

    origin: int
    seq: int
    hlc: int
    deltas: Mapping[Part, Crdt]

    @property
    def parts(self) -> int:
        return sum(p.bit for p in self.deltas)


def encode_op(origin: int, seq: int, hlc: int, deltas: Mapping[Part, Crdt]) -> bytes:
    w = Writer()
    w.byte(Tag.RUN_OP)
    w.byte(VERSIONS[Tag.RUN_OP])
    w.raw(origin.to_bytes(8, "big"))
    w.uvarint(seq)
    w.uvarint(hlc)
    _write_parts(w, {p: encode(d) for p, d in deltas.items()})
    return w.getvalue()


def decode_op(data: bytes) -> Op:
    """Decode one op; raises only `DecodeError` subclasses on bad input."""
    r = Reader(data)
    _start(r, Tag.RUN_OP)
    origin = int.from_bytes(r.raw(8), "big")
    seq = r.uvarint()
    if seq < 1:
        raise InvalidError("op sequence numbers start at 1")
    hlc = r.uvarint()
    if hlc > MAX_TIMESTAMP:
        raise InvalidError(f"op HLC {hlc} is beyond the largest timestamp {MAX_TIMESTAMP}")
    deltas = _read_parts(r)
    r.done()
    return Op(origin, seq, hlc, deltas)


def encode_snapshot(version: CausalContext, hlc: int, parts: Mapping[Part, Crdt]) -> bytes:
    """The joined state of the ops in ``version``; ``hlc`` is the replica's clock when taken
    (a reopened replica must never stamp an op earlier than one it already made or saw)."""
    w = Writer()
    w.byte(Tag.RUN_SNAPSHOT)
    w.byte(VERSIONS[Tag.RUN_SNAPSHOT])
    w.uvarint(hlc)
    write_context(w, version)
    _write_parts(w, {p: encode(s) for p, s in parts.items()})
    return w.getvalue()


def decode_snapshot(data: bytes) -> tuple[CausalContext, int, dict[Part, Crdt]]:
    r = Reader(data)
    _start(r, Tag.RUN_SNAPSHOT)
    hlc = r.uvarint()
    if hlc > MAX_TIMESTAMP:
        raise InvalidError(f"snapshot HLC {hlc} is beyond the largest timestamp {MAX_TIMESTAMP}")
    version, _ = read_context(r)
    parts = _read_parts(r)
    r.done()
    return version, hlc, parts


@dataclass(frozen=True)
class Bundle:
    """Ops, each with the blobs it brought, as exchanged between two replicas of one run."""

    run_id: str
    ops: tuple[tuple[bytes, Mapping[bytes, bytes]], ...]


def encode_bundle(bundle: Bundle) -> bytes:
    w = Writer()
    w.byte(Tag.RUN_BUNDLE)
    w.byte(VERSIONS[Tag.RUN_BUNDLE])
    w.text(bundle.run_id)
    w.uvarint(len(bundle.ops))
    for op, blobs in bundle.ops:
        w.blob(op)
        w.uvarint(len(blobs))
        for digest in sorted(blobs):
            w.blob(digest)
            w.blob(blobs[digest])
    return w.getvalue()


def decode_bundle(data: bytes) -> Bundle:
    r = Reader(data)
    _start(r, Tag.RUN_BUNDLE)
    run_id = r.text()
    ops = []
    for _ in range(r.count(2)):
        op = r.blob()
        blobs = {}
        for _ in range(r.count(2)):
            digest = r.blob()
            blobs[digest] = r.blob()
        ops.append((op, blobs))
    r.done()
    return Bundle(run_id, tuple(ops))


def split_bundle(data: bytes, limit: int) -> tuple[list[tuple[bytes, int]], list[tuple[int, int]]]:
    """Re-pack a bundle into bundles of at most ``limit`` bytes each, ops in order.

    Returns ``(bundle, ops in it)`` pairs and the ``(origin, seq)`` of ops too large for any
    bundle on their own (left out: the caller reports them).
    """
    if len(data) <= limit:
        return [(data, len(decode_bundle(data).ops))], []
    bundle = decode_bundle(data)
    header = len(encode_bundle(Bundle(bundle.run_id, ())))
    out: list[tuple[bytes, int]] = []
    too_big: list[tuple[int, int]] = []
    chunk: list[tuple[bytes, Mapping[bytes, bytes]]] = []
    size = header
    for raw, blobs in bundle.ops:
        one = len(encode_bundle(Bundle(bundle.run_id, ((raw, blobs),)))) - header
        if header + one > limit:
            origin, seq = int.from_bytes(raw[2:10], "big"), decode_op(raw).seq
            too_big.append((origin, seq))
            continue
        if chunk and size + one > limit:
            out.append((encode_bundle(Bundle(bundle.run_id, tuple(chunk))), len(chunk)))
            chunk, size = [], header
        chunk.append((raw, blobs))
        size += one
    if chunk or not out:
        out.append((encode_bundle(Bundle(bundle.run_id, tuple(chunk))), len(chunk)))
    return out, too_big


def encode_version(version: CausalContext) -> bytes:
    w = Writer()
    w.byte(Tag.RUN_VERSION)
    w.byte(VERSIONS[Tag.RUN_VERSION])
    write_context(w, version)
    return w.getvalue()


def decode_version(data: bytes) -> CausalContext:
    r = Reader(data)
    _start(r, Tag.RUN_VERSION)
    version, _ = read_context(r)
    r.done()
    return version
