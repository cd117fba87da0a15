"""The sync protocol's frames (PROTOCOL.md is the byte grammar; this is its one codec).

Every frame is ``tag:u8 version:u8 body`` from the one tag table. Frames carry Run formats
(versions and bundles) as length-prefixed blobs, so the protocol never re-describes them.
Decoding is bounded like every other decoder here and raises only `DecodeError`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from convergent.codec.tags import VERSIONS, Tag
from convergent.codec.wire import Reader, Writer
from convergent.errors import InvalidError, UnsupportedVersionError

PROTOCOL_VERSION = 1
# Frames above this many bytes are refused (configurable per hub and per client).
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
# Room for an OPS frame's own header around its bundle.
FRAME_OVERHEAD = 64


class Role(IntEnum):
    """What a token allows (DESIGN.md section 4)."""

    VIEWER = 1  # reads
    EDITOR = 2  # edits config, data, notes, control
    WORKER = 3  # writes metrics, checkpoints, (later) weights
    ADMIN = 4  # everything, and manages tokens

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            roles = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {name!r}; one of {roles}") from None


class Code(IntEnum):
    """Error frame codes. Codes below 100 close the connection; 100 and up refuse one frame."""

    MALFORMED = 1  # bytes that do not decode
    UNSUPPORTED = 2  # a protocol or format version this side does not speak
    AUTH = 3  # missing, unknown or revoked token
    UNKNOWN_RUN = 4  # no run by that name on this hub
    TOO_LARGE = 5  # a frame above the size limit
    OUT_OF_PROTOCOL = 6  # a frame that is not expected now (OPS before HELLO, a 2nd HELLO)
    INTERNAL = 7  # the hub failed (a store error): nothing was stored
    SLOW = 8  # the connection fell too far behind the run: reconnect to catch up
    FORBIDDEN = 100  # the token's role may not write a part these ops touch
    INVALID = 101  # a value breaks the run's schema, ops of another run, a reused op id
    SKIPPED = 102  # ops left out: each alone is larger than the receiver's frame limit

    @property
    def closes(self) -> bool:
        return self < 100


@dataclass(frozen=True)
class Hello:
    """Client -> hub, first frame: who I am, which run, what I hold."""

    run: str
    replica: int
    token: str
    version: bytes  # RUN_VERSION
    protocol: int = PROTOCOL_VERSION
    max_frame: int = DEFAULT_MAX_FRAME  # the largest frame this client accepts


@dataclass(frozen=True)
class Welcome:
    """Hub -> client: the run's id, the role granted, what the hub holds."""

    run_id: str
    role: Role
    version: bytes  # RUN_VERSION
    protocol: int = PROTOCOL_VERSION
    max_frame: int = DEFAULT_MAX_FRAME  # the largest frame this hub accepts


@dataclass(frozen=True)
class Ops:
    """Either way: ops the other side may lack.

    From a client, ``id`` numbers its OPS frames (the hub acknowledges each). From the hub,
    ``id`` counts down the frames of the catch-up (the last one is 1) and is 0 for live ops.
    """

    id: int
    bundle: bytes  # RUN_BUNDLE


@dataclass(frozen=True)
class Ack:
    """Hub -> client: every op of the client's OPS frame ``id`` is durable on the hub."""

    id: int


@dataclass(frozen=True)
class Presence:
    """Either way, never stored: who is here and what they look at."""

    replica: int
    user: str
    state: str


@dataclass(frozen=True)
class Error:
    """Either way: what went wrong. ``ref`` is the OPS id refused (0 if none)."""

    code: Code
    ref: int
    message: str


Frame = Hello | Welcome | Ops | Ack | Presence | Error


def encode_frame(frame: Frame) -> bytes:
    w = Writer()
    tag = _TAGS[type(frame)]
    w.byte(tag)
    w.byte(VERSIONS[tag])
    if isinstance(frame, Hello):
        w.uvarint(frame.protocol)
        w.text(frame.run)
        w.raw(frame.replica.to_bytes(8, "big"))
        w.text(frame.token)
        w.blob(frame.version)
        w.uvarint(frame.max_frame)
    elif isinstance(frame, Welcome):
        w.uvarint(frame.protocol)
        w.text(frame.run_id)
        w.byte(frame.role)
        w.blob(frame.version)
        w.uvarint(frame.max_frame)
    elif isinstance(frame, Ops):
        w.uvarint(frame.id)
        w.blob(frame.bundle)
    elif isinstance(frame, Ack):
        w.uvarint(frame.id)
    elif isinstance(frame, Presence):
        w.raw(frame.replica.to_bytes(8, "big"))
        w.text(frame.user)
        w.text(frame.state)
    else:
        w.uvarint(frame.code)
        w.uvarint(frame.ref)
        w.text(frame.message)
    return w.getvalue()


def decode_frame(data: bytes) -> Frame:
    """Decode one frame; raises only `DecodeError` subclasses on bad input."""
    r = Reader(data)
    raw_tag, version = r.byte(), r.byte()
    try:
        tag = Tag(raw_tag)
    except ValueError:
        raise InvalidError(f"unknown frame tag {raw_tag}") from None
    if tag not in _TYPES:
        raise InvalidError(f"tag {tag.name} is not a sync frame")
    if version != VERSIONS[tag]:
        raise UnsupportedVersionError(f"{tag.name} frame version", version, VERSIONS[tag])
    frame: Frame
    if tag is Tag.HELLO:
        protocol = r.uvarint()
        run = r.text()
        replica = int.from_bytes(r.raw(8), "big")
        token, have = r.text(), r.blob()
        frame = Hello(run, replica, token, have, protocol, r.uvarint())
    elif tag is Tag.WELCOME:
        protocol = r.uvarint()
        run_id = r.text()
        role = r.byte()
        if role not in Role._value2member_map_:
            raise InvalidError(f"unknown role {role}")
        have = r.blob()
        frame = Welcome(run_id, Role(role), have, protocol, r.uvarint())
    elif tag is Tag.OPS:
        frame = Ops(r.uvarint(), r.blob())
    elif tag is Tag.ACK:
        frame = Ack(r.uvarint())
    elif tag is Tag.PRESENCE:
        frame = Presence(int.from_bytes(r.raw(8), "big"), r.text(), r.text())
    else:
        code = r.uvarint()
        if code not in Code._value2member_map_:
            raise InvalidError(f"unknown error code {code}")
        frame = Error(Code(code), r.uvarint(), r.text())
    r.done()
    return frame


_TAGS: dict[type, Tag] = {
    Hello: Tag.HELLO,
    Welcome: Tag.WELCOME,
    Ops: Tag.OPS,
    Ack: Tag.ACK,
    Presence: Tag.PRESENCE,
    Error: Tag.ERROR,
}
_TYPES = {tag: cls for cls, tag in _TAGS.items()}
