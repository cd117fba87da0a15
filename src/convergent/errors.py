"""Exceptions raised by convergent.

Every error the package raises on purpose derives from :class:`ConvergentError`,
so callers can catch one type at the boundary::

    ConvergentError
     ├── DecodeError                  bytes could not be decoded
     │    ├── TruncatedError          input ended early; more bytes could help
     │    └── InvalidError            the bytes are wrong; more bytes never help
     │         └── UnsupportedVersionError   a tag/version from a newer build
     ├── ProtocolError                a peer broke the sync protocol
     ├── SchemaError                  a value does not fit its declared schema
     ├── AuthError                    authentication or authorisation failed
     └── StorageError                 the persistence layer failed

The Truncated/Invalid split matters to streaming readers: on
:class:`TruncatedError` they may wait for more bytes, on :class:`InvalidError`
they must drop the input (waiting would never help and is a denial-of-service
vector).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AuthError",
    "ConvergentError",
    "DecodeError",
    "InvalidError",
    "ProtocolError",
    "SchemaError",
    "StorageError",
    "TruncatedError",
    "UnsupportedVersionError",
]


class ConvergentError(Exception):
    """Base class of every error convergent raises deliberately."""


class DecodeError(ConvergentError):
    """Bytes could not be decoded."""


class TruncatedError(DecodeError):
    """The input ended early: more bytes would be needed to decode it.

    Attributes:
        needed: A lower bound on how many more bytes are needed, or ``None`` if
            unknown.
    """

    def __init__(self, message: str = "input ended early", needed: int | None = None) -> None:
        self.needed = needed
        # Kept apart from the formatted text so pickling rebuilds the same error.
        self._message = message
        text = message if needed is None else f"{message} (need {needed} more bytes)"
        super().__init__(text)

    def __reduce__(self) -> tuple[type[TruncatedError], tuple[str, int | None]]:
        return (type(self), (self._message, self.needed))


class InvalidError(DecodeError):
    """The bytes are wrong (bad tag, non-canonical form, out of range, trailing bytes...)."""


class UnsupportedVersionError(InvalidError):
    """A tag or format version newer than this build understands.

    Either pass the whole message, or pass ``what``, ``found`` and ``supported``
    to have it worded for you: ``UnsupportedVersionError("snapshot version", 7,
    range(1, 4))`` reads "unsupported snapshot version 7; this build supports 1-3".

    Attributes:
        what: What carried the number (or the whole message).
        found: The number found in the input, if given.
        supported: The numbers this build supports, ascending (may be empty).
    """

    def __init__(
        self,
        what: str,
        found: int | None = None,
        supported: int | Iterable[int] = (),
    ) -> None:
        self.what = what
        self.found = found
        self.supported: tuple[int, ...] = (
            (supported,) if isinstance(supported, int) else tuple(sorted(supported))
        )
        if found is None:
            super().__init__(what)
        else:
            super().__init__(
                f"unsupported {what} {found}; this build supports {_describe(self.supported)}"
            )

    def __reduce__(
        self,
    ) -> tuple[type[UnsupportedVersionError], tuple[str, int | None, tuple[int, ...]]]:
        return (type(self), (self.what, self.found, self.supported))


class ProtocolError(ConvergentError):
    """A peer sent a message that breaks the sync protocol."""


class SchemaError(ConvergentError):
    """A value does not match its declared schema."""


class AuthError(ConvergentError):
    """Authentication or authorisation failed."""


class StorageError(ConvergentError):
    """The persistence layer failed to read or write."""


def _describe(values: tuple[int, ...]) -> str:
    """Render supported numbers compactly: ``1``, ``1-3`` or ``1, 4``."""
    if not values:
        return "none"
    if len(values) > 2 and values == tuple(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(map(str, values))
