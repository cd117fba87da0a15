"""The sync frames (PROTOCOL.md): golden bytes, truncation vs invalid, and a mutation fuzz
that only ever meets `DecodeError`s."""

from __future__ import annotations

import random

import pytest

from convergent.codec import Tag
from convergent.crdt import CausalContext
from convergent.errors import DecodeError, InvalidError, TruncatedError, UnsupportedVersionError
from convergent.run.ops import encode_version
from convergent.sync.protocol import (
    Ack,
    Code,
    Error,
    Frame,
    Hello,
    Ops,
    Presence,
    Role,
    Welcome,
    decode_frame,
    encode_frame,
)

VERSION = encode_version(CausalContext.of_dots([(1, 1), (1, 2)]))
FRAMES: dict[str, Frame] = {
    "hello": Hello("digits", 0xA11CE, "cvg_token", VERSION),
    "welcome": Welcome("run-1", Role.EDITOR, VERSION),
    "ops": Ops(3, b"\x12\x01\x05run-1\x00"),
    "ack": Ack(3),
    "presence": Presence(0xB0B, "bob", "dataset"),
    "error": Error(Code.FORBIDDEN, 3, "a viewer may not write config"),
}
GOLDEN = {
    "hello": "4001010664696769747300000000000a11ce096376675f746f6b656e0e130101"
    "000000000000000101000180808020",
    "welcome": "4101010572756e2d31020e130101000000000000000101000180808020",
    "ops": "4201030912010572756e2d3100",
    "ack": "430103",
    "presence": "44010000000000000b0b03626f620764617461736574",
    "error": "450164031d6120766965776572206d6179206e6f7420777269746520636f6e666967",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_bytes(name: str) -> None:
    assert encode_frame(FRAMES[name]).hex() == GOLDEN[name]
    assert decode_frame(bytes.fromhex(GOLDEN[name])) == FRAMES[name]


def test_every_frame_tag_has_a_golden_vector() -> None:
    assert {bytes.fromhex(h)[0] for h in GOLDEN.values()} == {t for t in Tag if t >= 0x40}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_strict_prefix_is_truncated(name: str) -> None:
    data = bytes.fromhex(GOLDEN[name])
    for cut in range(len(data)):
        with pytest.raises(TruncatedError):
            decode_frame(data[:cut])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (bytes.fromhex(GOLDEN["ack"]) + b"\x00", InvalidError),  # trailing bytes
        (b"\x43\x02\x03", UnsupportedVersionError),  # a frame version from the future
        (b"\x10\x01\x03", InvalidError),  # a run op is not a frame
        (b"\x99\x01", InvalidError),  # no such tag
        (b"\x41\x01\x01\x00\x09\x00\x00", InvalidError),  # no such role
        (b"\x45\x01\x63\x00\x00", InvalidError),  # no such error code
    ],
)
def test_invalid_frames(data: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error):
        decode_frame(data)


def test_mutated_frames_raise_only_decode_errors() -> None:
    rng = random.Random(20261126)
    seeds = [bytes.fromhex(h) for h in GOLDEN.values()]
    decoded = 0
    for _ in range(3_000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            kind = rng.randrange(3)
            if kind == 0 and at < len(data):
                data[at] ^= 1 << rng.randrange(8)
            elif kind == 1:
                data[at:at] = bytes([rng.randrange(256)])
            elif at < len(data):
                del data[at]
        try:
            frame = decode_frame(bytes(data))
        except DecodeError:
            continue
        decoded += 1
        assert encode_frame(frame) == bytes(data)  # what decodes is canonical
    assert decoded > 0
