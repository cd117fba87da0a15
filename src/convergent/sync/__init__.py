"""Sync: the protocol's frames and sans-IO sessions (and, in `convergent.sync.client`, the
WebSocket client behind `convergent.connect`)."""

from convergent.sync.protocol import (
    PROTOCOL_VERSION,
    Code,
    Role,
    decode_frame,
    encode_frame,
)
from convergent.sync.session import WRITABLE, ClientSession, HubSession, Outcome

__all__ = [
    "PROTOCOL_VERSION",
    "WRITABLE",
    "ClientSession",
    "Code",
    "HubSession",
    "Outcome",
    "Role",
    "decode_frame",
    "encode_frame",
]
