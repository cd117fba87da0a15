"""Deterministic, bounded binary encoding of every CRDT state (and, later, every message).

``encode(state)`` gives canonical bytes (equal states, equal bytes); ``decode(bytes)`` gives
the state back or raises a `DecodeError` (`TruncatedError` when more bytes would help,
`InvalidError` when they would not, `UnsupportedVersionError` for the future).
"""

from convergent.codec.states import decode, decode_as, encode
from convergent.codec.tags import VERSIONS, Tag
from convergent.errors import DecodeError, InvalidError, TruncatedError, UnsupportedVersionError

__all__ = [
    "VERSIONS",
    "DecodeError",
    "InvalidError",
    "Tag",
    "TruncatedError",
    "UnsupportedVersionError",
    "decode",
    "decode_as",
    "encode",
]
