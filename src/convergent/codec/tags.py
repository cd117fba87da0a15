"""The one tag table: every encoded value starts with ``tag, format version``.

Tags are never reused. A new format of an existing type takes a new version number under the
same tag; a decoder rejects versions it does not know with `UnsupportedVersionError` rather
than guessing (the rules msgspec writes down for schema evolution, applied to bytes).
Protocol messages (issue 4) take tags from 0x40 up.
"""

from __future__ import annotations

from enum import IntEnum


class Tag(IntEnum):
    """Type tags of encoded values."""

    GCOUNTER = 0x01
    PNCOUNTER = 0x02
    LWW_REGISTER = 0x03
    MV_REGISTER = 0x04
    AWSET = 0x05
    ORMAP = 0x06
    APPEND_LOG = 0x07
    RGA = 0x08
    CAUSAL_CONTEXT = 0x09
    WEIGHTS = 0x0A  # convergent.crdt.weights, encoded by convergent.codec.weights
    # The Run document (convergent.run.ops): one operation, a snapshot of every part, a
    # bundle of ops and blobs exchanged between replicas, and a replica's version.
    RUN_OP = 0x10
    RUN_SNAPSHOT = 0x11
    RUN_BUNDLE = 0x12
    RUN_VERSION = 0x13
    # Sync protocol frames (convergent.sync.protocol, PROTOCOL.md).
    HELLO = 0x40
    WELCOME = 0x41
    OPS = 0x42
    ACK = 0x43
    PRESENCE = 0x44
    ERROR = 0x45


# The format version each tag is written in by this build; decoders accept exactly these.
VERSIONS: dict[Tag, int] = {tag: 1 for tag in Tag}


class ValueKind(IntEnum):
    """Kinds of a tagged scalar value (register contents)."""

    NONE = 0
    FALSE = 1
    TRUE = 2
    INT = 3
    FLOAT = 4
    STR = 5
    BYTES = 6
    TUPLE = 7


class Column(IntEnum):
    """How a column of keys or values is laid out; picked from the content, so canonical."""

    EMPTY = 0
    INT = 1  # delta-coded zigzag varints
    STR = 2  # front-coded UTF-8
    BYTES = 3  # front-coded bytes
    FLOAT = 4  # 8-byte IEEE, bit-exact
    BOOL = 5  # one byte each
    MIXED = 6  # one tagged value each


class LeafCode(IntEnum):
    """What an ORMap holds under each key."""

    REGISTER = 1
    SET = 2
    MAP = 3
