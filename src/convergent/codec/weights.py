"""The encoding of a `Weights` state (tag ``WEIGHTS``), canonical and bounded.

    body       = checkpoint members slots settings
    checkpoint = 0x00 | 0x01 round:uvarint n:uvarint size:uvarint{n} weights:f64{P} momentum:f64{P}
    members    = n:uvarint (worker:u64be join:uvarint leave:uvarint){n}        0 = never
    slots      = n:uvarint (round:uvarint worker:u64be (0x01 contribution | 0x02)){n}
    contribution = n_samples:uvarint codec:u8 base:16 bytes payload:blob
    settings   = n:uvarint (key:text round:uvarint hlc:uvarint writer:u64be value:f64){n}

``P`` is the sum of the sizes. Members are sorted by worker, slots by (round, worker), settings
by (key, round, hlc, writer), each strictly increasing; slots lie after the checkpoint's round.
A decoder checks all of it and checks every claimed count against the bytes left before it
allocates anything.
"""

from __future__ import annotations

import math

from convergent.codec import wire
from convergent.codec.wire import Reader, Writer
from convergent.crdt.weights import (
    DIGEST_SIZE,
    MAX_ROUND,
    NEVER,
    SKIP,
    Checkpoint,
    Codec,
    Contribution,
    FoldState,
    SettingKey,
    Slot,
    Weights,
)
from convergent.errors import InvalidError, TruncatedError

_CONTRIBUTION, _SKIP = 1, 2


def write_weights(w: Writer, s: Weights) -> None:
    """The body of a `Weights` state."""
    ck = s.checkpoint
    if ck is None:
        w.byte(0)
    else:
        w.byte(1)
        w.uvarint(ck.round)
        w.uvarint(len(ck.sizes))
        for n in ck.sizes:
            w.uvarint(n)
        w.raw(wire.encode_f64s(ck.state.weights))
        w.raw(wire.encode_f64s(ck.state.momentum))
    w.uvarint(len(s.members))
    for rid in sorted(s.members):
        j, left = s.members[rid]
        w.raw(rid.to_bytes(8, "big"))
        w.uvarint(0 if j == NEVER else j)
        w.uvarint(0 if left == NEVER else left)
    w.uvarint(len(s.slots))
    for (r, rid), slot in sorted(s.slots.items(), key=lambda kv: kv[0]):
        w.uvarint(r)
        w.raw(rid.to_bytes(8, "big"))
        if isinstance(slot, Contribution):
            w.byte(_CONTRIBUTION)
            w.uvarint(slot.n_samples)
            w.byte(slot.codec)
            w.raw(slot.base)
            w.blob(slot.payload)
        else:
            w.byte(_SKIP)
    w.uvarint(len(s.settings))
    for key in sorted(s.settings):
        name, r, hlc, rid = key
        w.text(name)
        w.uvarint(r)
        w.uvarint(hlc)
        w.raw(rid.to_bytes(8, "big"))
        w.f64(s.settings[key])


def _round(r: Reader, what: str, *, never: bool = False) -> int:
    at = r.pos
    v = r.uvarint()
    if never and v == 0:
        return NEVER
    if v > MAX_ROUND:
        raise InvalidError(f"{what} {v} at offset {at} is beyond round {MAX_ROUND}")
    return v


def _read_checkpoint(r: Reader) -> Checkpoint | None:
    at = r.pos
    flag = r.byte()
    if flag == 0:
        return None
    if flag != 1:
        raise InvalidError(f"checkpoint flag {flag} at offset {at} is neither 0 nor 1")
    rnd = _round(r, "checkpoint round")
    sizes = tuple(r.uvarint() for _ in range(r.count(1)))
    total = sum(sizes)
    if total > r.limit_items:
        raise InvalidError(f"a checkpoint of {total} parameters exceeds {r.limit_items} items")
    if 16 * total > r.remaining:
        raise TruncatedError(
            f"a checkpoint of {total} parameters needs {16 * total} bytes, {r.remaining} left",
            needed=16 * total - r.remaining,
        )
    weights, r.pos = wire.decode_f64s(r.buffer, r.pos, total)
    momentum, r.pos = wire.decode_f64s(r.buffer, r.pos, total)
    weights.flags.writeable = False
    momentum.flags.writeable = False
    return Checkpoint(FoldState(rnd, weights, momentum), sizes)


def _read_slot(r: Reader) -> Slot:
    at = r.pos
    kind = r.byte()
    if kind == _SKIP:
        return SKIP
    if kind != _CONTRIBUTION:
        raise InvalidError(f"slot kind {kind} at offset {at} is neither contribution nor skip")
    n = r.uvarint()
    if not 1 <= n <= MAX_ROUND:
        raise InvalidError(f"a contribution of {n} samples at offset {at}")
    code = r.byte()
    try:
        codec = Codec(code)
    except ValueError:
        raise InvalidError(f"unknown contribution codec {code} at offset {at}") from None
    base = r.raw(DIGEST_SIZE)
    return Contribution(n, codec, base, r.blob())


def read_weights(r: Reader) -> Weights:
    """Inverse of `write_weights`."""
    ck = _read_checkpoint(r)
    members: dict[int, tuple[int, int]] = {}
    prev = -1
    for _ in range(r.count(10)):
        rid = int.from_bytes(r.raw(8), "big")
        j, left = _round(r, "join round", never=True), _round(r, "leave round", never=True)
        if rid <= prev:
            raise InvalidError("members must be sorted by worker, each once")
        if j == NEVER and left == NEVER:
            raise InvalidError(f"member {rid:016x} has neither a join nor a leave round")
        members[rid] = (j, left)
        prev = rid
    slots: dict[tuple[int, int], Slot] = {}
    floor = ck.round if ck is not None else 0
    last = (floor, -1)
    for _ in range(r.count(10)):
        rnd = _round(r, "slot round")
        rid = int.from_bytes(r.raw(8), "big")
        if (rnd, rid) <= last or rnd <= floor:
            raise InvalidError("slots must be sorted by (round, worker), after the checkpoint")
        slots[(rnd, rid)] = _read_slot(r)
        last = (rnd, rid)
    settings: dict[SettingKey, float] = {}
    prev_key: SettingKey | None = None
    for _ in range(r.count(19)):
        name = r.text()
        rnd = _round(r, "setting round")
        hlc = r.uvarint()
        rid = int.from_bytes(r.raw(8), "big")
        value = r.f64()
        key = (name, rnd, hlc, rid)
        if not name or rnd < 1 or (prev_key is not None and key <= prev_key):
            raise InvalidError("settings must be named, from round 1 on, sorted and unique")
        if not math.isfinite(value) or hlc >= 1 << 64:
            raise InvalidError(f"setting {name!r} has a non-finite value or a bad timestamp")
        settings[key] = value
        prev_key = key
    return Weights(members, slots, ck, settings)
