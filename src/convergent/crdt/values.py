"""The values a CRDT may hold, and one total order over them.

Registers hold `Value`s: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` and
tuples of values. Map keys and set elements are `Key`s: ``int``, ``str`` or ``bytes``.

Python's ``==`` says ``1 == 1.0 == True`` and ``nan != nan``; a replicated state must not:
an int written as 1 stays an int, and a float keeps its exact bits. `value_key` maps every
value to a tuple that compares by kind first and by exact content second, so sorting with
it is total and deterministic on every replica, and equality through it is structural.
"""

from __future__ import annotations

import struct
from typing import Any, TypeAlias

Value: TypeAlias = "bool | int | float | str | bytes | tuple[Value, ...] | None"
Key: TypeAlias = int | str | bytes

# Kind ranks: the first element of every sort key. Part of the canonical encoding order.
RANK_NONE, RANK_BOOL, RANK_INT, RANK_FLOAT, RANK_BYTES, RANK_STR, RANK_TUPLE = range(7)


def _float_bits(x: float) -> int:
    return int.from_bytes(struct.pack(">d", x), "big")


def value_key(v: Any) -> tuple[Any, ...]:
    """A sort/equality key that separates kinds and compares floats by their bits."""
    t = type(v)
    if t is int:
        return (RANK_INT, v)
    if t is str:
        return (RANK_STR, v)
    if t is float:
        return (RANK_FLOAT, _float_bits(v))
    if t is bool:
        return (RANK_BOOL, v)
    if v is None:
        return (RANK_NONE,)
    if t is bytes:
        return (RANK_BYTES, v)
    if t is tuple:
        return (RANK_TUPLE, tuple(value_key(x) for x in v))
    raise TypeError(f"unsupported value {v!r} of type {t.__name__}")


def key_order(k: Key) -> tuple[int, Key]:
    """Sort key for map keys and set elements: ints, then bytes, then strings."""
    t = type(k)
    if t is int:
        return (RANK_INT, k)
    if t is str:
        return (RANK_STR, k)
    if t is bytes:
        return (RANK_BYTES, k)
    raise TypeError(f"a key must be int, str or bytes, not {t.__name__}")


def _check_text(s: str, what: str) -> None:
    # Lone surrogates are valid Python but not Unicode text: no codec or column can hold them.
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise TypeError(f"{what} {s!r} is not valid Unicode text (lone surrogate)") from None


def check_value(v: Any) -> Value:
    """Return ``v`` if it is a storable value, else raise `TypeError` naming what is wrong.

    Lists are accepted and frozen into tuples, so a stored value can never change under a
    replica's feet.
    """
    t = type(v)
    if v is None or t in (bool, int, float, str, bytes):
        if t is int and not -(1 << 127) <= v < (1 << 127):
            raise TypeError(f"integer {v} is outside the storable range [-2**127, 2**127)")
        if t is str:
            _check_text(v, "string")
        return v  # type: ignore[no-any-return]
    if t in (tuple, list):
        return tuple(check_value(x) for x in v)
    raise TypeError(
        f"cannot store {v!r}: values are None, bool, int, float, str, bytes or lists of these"
    )


def check_key(k: Any) -> Key:
    """Return ``k`` if it is a valid key, else raise `TypeError`."""
    if type(k) in (int, str, bytes):
        if type(k) is int and not -(1 << 63) <= k < (1 << 63):
            raise TypeError(f"integer key {k} is outside the 64-bit range")
        if type(k) is str:
            _check_text(k, "key")
        return k  # type: ignore[no-any-return]
    raise TypeError(f"a key must be int, str or bytes, not {type(k).__name__} ({k!r})")
