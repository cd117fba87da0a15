"""Canonical, bounded byte primitives shared by every encoder in convergent.

Two promises hold for everything in this module:

* **Canonical**: each value has exactly one encoding. Writers emit only the
  shortest form and readers reject every other form (overlong varints,
  non-maximal front-coding prefixes, out-of-range values), so equal values are
  equal as bytes. State digests and deduplication rely on that.
* **Bounded**: readers never trust a length they read. Before allocating for
  ``n`` items they check that the remaining input could hold them, and the only
  exceptions bad input can raise are :class:`~convergent.errors.DecodeError`
  subclasses. :class:`~convergent.errors.TruncatedError` means "more bytes could
  make this valid"; :class:`~convergent.errors.InvalidError` means they never will.

Scalars go through :class:`Writer` and :class:`Reader`. Whole columns go through
the vectorised ``encode_*``/``decode_*`` functions, which loop over byte
positions or blocks, never over elements in Python. The one exception is the
front-coded column decoder: each item's offset depends on the previous item's
varints, so that walk is inherently sequential.

Varints are unsigned LEB128 (7 bits per byte, least significant group first,
high bit set on every byte but the last); signed values are zigzag-mapped first
(0, -1, 1, -2, ... -> 0, 1, 2, 3, ...). Floats are big-endian IEEE-754 binary64.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from convergent.errors import DecodeError, InvalidError, TruncatedError

__all__ = [
    "DEFAULT_LIMIT_ITEMS",
    "DEFAULT_MAX_COLUMN_BYTES",
    "MAX_SVARINT",
    "MAX_UVARINT",
    "MAX_VARINT_BYTES",
    "MIN_SVARINT",
    "Buffer",
    "DecodeError",
    "InvalidError",
    "Reader",
    "TruncatedError",
    "Writer",
    "decode_bytes_column",
    "decode_deltas",
    "decode_deltas_list",
    "decode_f64s",
    "decode_f64s_list",
    "decode_strings",
    "decode_uvarints",
    "encode_bytes_column",
    "encode_deltas",
    "encode_f64s",
    "encode_strings",
    "encode_uvarints",
    "unzigzag",
    "zigzag",
]

MAX_UVARINT: Final = 2**128 - 1
"""Largest value :meth:`Writer.uvarint` accepts and :meth:`Reader.uvarint` returns."""
MIN_SVARINT: Final = -(2**127)
"""Smallest value :meth:`Writer.svarint` accepts."""
MAX_SVARINT: Final = 2**127 - 1
"""Largest value :meth:`Writer.svarint` accepts."""
MAX_VARINT_BYTES: Final = 19
"""Longest scalar varint: ceil(128 / 7) bytes."""
DEFAULT_LIMIT_ITEMS: Final = 10_000_000
"""Default cap on any element count a :class:`Reader` accepts."""
DEFAULT_MAX_COLUMN_BYTES: Final = 1 << 28
"""Default cap on the decoded size of a front-coded column (256 MiB).

Front coding lets a 2-byte item repeat a long prefix of its predecessor, so
without a cap a few kilobytes could expand to gigabytes.
"""

# A uint64 needs at most ceil(64 / 7) = 10 LEB128 bytes; the 10th may only hold bit 63.
_U64_VARINT_BYTES: Final = 10
# A value needs k + 1 bytes or more iff it is >= 2**(7k).
_GROUP_THRESHOLDS: Final = tuple(1 << (7 * k) for k in range(1, _U64_VARINT_BYTES))
# Indexed by varint length: the continuation bits (0x80) it has among its
# first eight bytes, and the 7-bit payload mask of its first eight bytes.
_CONT_WORDS: Final = tuple(
    int.from_bytes(b"\x80" * min(max(n - 1, 0), 8), "little") for n in range(_U64_VARINT_BYTES + 1)
)
_KEEP_WORDS: Final = tuple(
    int.from_bytes(b"\x7f" * min(n, 8), "little") for n in range(_U64_VARINT_BYTES + 1)
)
# Indexed by varint length: which of bytes 0-7 and 8-15 of a 16-byte row are
# part of the varint, as 0x01 flags (so the words view as numpy bools).
_KEEP_LO_FLAGS: Final = tuple(
    int.from_bytes(b"\x01" * min(n, 8), "little") for n in range(_U64_VARINT_BYTES + 1)
)
_KEEP_HI_FLAGS: Final = tuple(
    int.from_bytes(b"\x01" * max(n - 8, 0), "little") for n in range(_U64_VARINT_BYTES + 1)
)
# (lane bits, low mask, high mask, shift) for moving 7-bit groups apart: each
# step splits every lane of `bits` bits into two half-lanes of `bits // 2`.
_M56: Final = np.uint64((1 << 56) - 1)
_SPREAD_STEPS: Final = (
    (56, np.uint64(0x000000000FFFFFFF), np.uint64(0x00FFFFFFF0000000), np.uint64(4)),
    (28, np.uint64(0x00003FFF00003FFF), np.uint64(0x0FFFC0000FFFC000), np.uint64(2)),
    (14, np.uint64(0x007F007F007F007F), np.uint64(0x3F803F803F803F80), np.uint64(1)),
)
_F64: Final = struct.Struct(">d")
# Bounds the (rows x width) index blocks built while comparing neighbouring items.
_PREFIX_BLOCK_ELEMS: Final = 1 << 20

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Anything the readers accept as input."""

_View: TypeAlias = bytes | memoryview


def _byteview(data: Buffer) -> _View:
    """Return ``data`` as something indexable by byte, without copying it."""
    if isinstance(data, bytes):
        return data
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _u8(data: Buffer) -> NDArray[np.uint8]:
    """Zero-copy uint8 array over ``data``."""
    return np.frombuffer(_byteview(data), dtype=np.uint8)


def _check_span(size: int, pos: int, n: int) -> None:
    """Reject caller bugs (not input errors) in ``(pos, n)`` arguments."""
    if n < 0:
        raise ValueError(f"item count must be >= 0, got {n}")
    if not 0 <= pos <= size:
        raise ValueError(f"position {pos} is outside the {size}-byte buffer")


def _read_uvarint(buf: _View, pos: int) -> tuple[int, int]:
    """Decode one scalar varint at ``pos``; return ``(value, new_pos)``."""
    end = len(buf)
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise TruncatedError(f"varint at offset {start} is cut off", needed=1)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift == 7 * MAX_VARINT_BYTES:
            raise InvalidError(f"varint at offset {start} is longer than {MAX_VARINT_BYTES} bytes")
    # A zero final group after other groups means a shorter form existed.
    if b == 0 and pos - start > 1:
        raise InvalidError(f"non-canonical varint at offset {start}")
    if result > MAX_UVARINT:
        raise InvalidError(f"varint at offset {start} exceeds 2**128-1")
    return result, pos


class Writer:
    """Append-only builder of canonical encodings over a ``bytearray``.

    Args:
        buf: Buffer to append to; a fresh one if omitted.
    """

    __slots__ = ("_buf",)

    def __init__(self, buf: bytearray | None = None) -> None:
        self._buf = bytearray() if buf is None else buf

    def __len__(self) -> int:
        return len(self._buf)

    def uvarint(self, n: int) -> None:
        """Append ``n`` as an unsigned LEB128 varint.

        Raises:
            ValueError: If ``n`` is outside ``[0, 2**128 - 1]``.
        """
        if n.__class__ is not int:
            n = operator.index(n)  # accept numpy integers, reject floats
        if 0 <= n < 0x80:
            self._buf.append(n)
            return
        if n < 0 or n > MAX_UVARINT:
            raise ValueError(f"uvarint out of range [0, 2**128-1]: {n}")
        out = bytearray()
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        self._buf += out

    def svarint(self, n: int) -> None:
        """Append ``n`` zigzag-mapped, as a varint.

        Raises:
            ValueError: If ``n`` is outside ``[-2**127, 2**127 - 1]``.
        """
        if n.__class__ is not int:
            n = operator.index(n)
        if not MIN_SVARINT <= n <= MAX_SVARINT:
            raise ValueError(f"svarint out of range [-2**127, 2**127-1]: {n}")
        self.uvarint(2 * n if n >= 0 else -2 * n - 1)

    def byte(self, n: int) -> None:
        """Append one byte.

        Raises:
            ValueError: If ``n`` is outside ``[0, 255]``.
        """
        if not 0 <= n <= 0xFF:
            raise ValueError(f"byte out of range [0, 255]: {n}")
        self._buf.append(n)

    def raw(self, b: Buffer) -> None:
        """Append bytes verbatim (the reader must know their length)."""
        self._buf += b

    def blob(self, b: Buffer) -> None:
        """Append a byte string prefixed with its length."""
        b = _byteview(b)
        self.uvarint(len(b))
        self._buf += b

    def text(self, s: str) -> None:
        """Append a string as length-prefixed UTF-8.

        Raises:
            ValueError: If ``s`` contains a lone surrogate (not encodable as UTF-8).
        """
        try:
            data = s.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"string has a lone surrogate {s[exc.start]!r} at index {exc.start}; "
                "it cannot be encoded as UTF-8"
            ) from exc
        self.uvarint(len(data))
        self._buf += data

    def f64(self, x: float) -> None:
        """Append 8 big-endian IEEE-754 bytes; NaN payloads and -0.0 are kept."""
        self._buf += _F64.pack(x)

    def getvalue(self) -> bytes:
        """Return everything written so far."""
        return bytes(self._buf)


class Reader:
    """Cursor that decodes canonical encodings and rejects everything else.

    Input errors raise only :class:`~convergent.errors.DecodeError` subclasses.
    A ``bytearray`` or ``memoryview`` is read in place, so it must not be
    resized while the reader is alive.

    Args:
        data: Bytes to decode.
        limit_items: Largest element count :meth:`count` accepts.
    """

    __slots__ = ("_buf", "_end", "_pos", "limit_items")

    def __init__(self, data: Buffer, limit_items: int = DEFAULT_LIMIT_ITEMS) -> None:
        if limit_items < 0:
            raise ValueError(f"limit_items must be >= 0, got {limit_items}")
        self._buf = _byteview(data)
        self._end = len(self._buf)
        self._pos = 0
        self.limit_items = limit_items

    @property
    def buffer(self) -> bytes | memoryview:
        """The input, for handing to the column decoders together with :attr:`pos`."""
        return self._buf

    @property
    def pos(self) -> int:
        """Offset of the next unread byte; assign to skip past a column."""
        return self._pos

    @pos.setter
    def pos(self, value: int) -> None:
        if not 0 <= value <= self._end:
            raise ValueError(f"position {value} is outside the {self._end}-byte buffer")
        self._pos = value

    @property
    def remaining(self) -> int:
        """Number of unread bytes."""
        return self._end - self._pos

    def _take(self, n: int) -> int:
        """Consume ``n`` bytes and return where they start."""
        pos = self._pos
        left = self._end - pos
        if n > left:
            raise TruncatedError(
                f"need {n} bytes at offset {pos}, only {left} left", needed=n - left
            )
        self._pos = pos + n
        return pos

    def uvarint(self) -> int:
        """Read an unsigned varint (at most 2**128 - 1)."""
        pos = self._pos
        # Fast path: most varints on the wire are a single byte.
        if pos < self._end:
            b = self._buf[pos]
            if b < 0x80:
                self._pos = pos + 1
                return b
        value, self._pos = _read_uvarint(self._buf, pos)
        return value

    def svarint(self) -> int:
        """Read a zigzag-mapped signed varint."""
        u = self.uvarint()
        return (u >> 1) ^ -(u & 1)

    def byte(self) -> int:
        """Read one byte."""
        return self._buf[self._take(1)]

    def raw(self, n: int) -> bytes:
        """Read exactly ``n`` bytes.

        Raises:
            ValueError: If ``n`` is negative (a caller bug, not an input error).
        """
        if n < 0:
            raise ValueError(f"byte count must be >= 0, got {n}")
        start = self._take(n)
        return bytes(self._buf[start : start + n])

    def blob(self) -> bytes:
        """Read a length-prefixed byte string."""
        return self.raw(self.uvarint())

    def text(self) -> str:
        """Read a length-prefixed UTF-8 string."""
        at = self._pos
        data = self.blob()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidError(f"invalid UTF-8 in text at offset {at}: {exc.reason}") from None

    def f64(self) -> float:
        """Read 8 big-endian IEEE-754 bytes, bit-exact."""
        value: float = _F64.unpack_from(self._buf, self._take(8))[0]
        return value

    def count(self, min_bytes_each: int = 1, *, max_items: int | None = None) -> int:
        """Read an element count and check it is plausible before anyone allocates.

        Args:
            min_bytes_each: Fewest bytes each element occupies on the wire;
                ``count * min_bytes_each`` must fit in :attr:`remaining`.
            max_items: Optional tighter cap than :attr:`limit_items` for this call.

        Returns:
            The count.

        Raises:
            InvalidError: If the count exceeds the item limit. This is checked
                first: more bytes can never fix it, so a streaming caller must
                not be told to wait for them.
            TruncatedError: If the remaining bytes cannot hold that many elements.
        """
        if min_bytes_each < 0:
            raise ValueError(f"min_bytes_each must be >= 0, got {min_bytes_each}")
        limit = self.limit_items if max_items is None else min(max_items, self.limit_items)
        at = self._pos
        n = self.uvarint()
        if n > limit:
            raise InvalidError(f"count {n} at offset {at} exceeds the limit of {limit} items")
        need = n * min_bytes_each
        left = self._end - self._pos
        if need > left:
            raise TruncatedError(
                f"count {n} at offset {at} needs at least {need} bytes, only {left} left",
                needed=need - left,
            )
        return n

    def done(self) -> None:
        """Assert the input is fully consumed.

        Raises:
            InvalidError: If any bytes remain.
        """
        left = self._end - self._pos
        if left:
            raise InvalidError(f"{left} trailing bytes at offset {self._pos}")


# --------------------------------------------------------------------------- arrays


def _as_u64(a: npt.ArrayLike, what: str) -> NDArray[np.uint64]:
    """Coerce to a 1-D uint64 array, refusing negatives and non-integers."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{what} needs a 1-D array, got shape {arr.shape}")
    if arr.dtype == np.uint64:
        return arr
    if arr.size == 0:  # np.asarray([]) is float64; an empty column is still fine
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype.kind == "u":
        return arr.astype(np.uint64)
    if arr.dtype.kind == "i":
        if int(arr.min()) < 0:
            raise ValueError(f"{what} needs non-negative integers")
        return arr.astype(np.uint64)
    raise TypeError(f"{what} needs an integer array, got dtype {arr.dtype}")


def _as_i64(a: npt.ArrayLike, what: str) -> NDArray[np.int64]:
    """Coerce to a 1-D int64 array, refusing values int64 cannot hold."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{what} needs a 1-D array, got shape {arr.shape}")
    if arr.dtype == np.int64:
        return arr
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "i":
        return arr.astype(np.int64)
    if arr.dtype.kind == "u":
        if int(arr.max()) > 2**63 - 1:
            raise ValueError(f"{what} got a value above 2**63-1")
        return arr.astype(np.int64)
    raise TypeError(f"{what} needs an integer array, got dtype {arr.dtype}")


def _varint_lengths(u: NDArray[np.uint64], top: int | None = None) -> NDArray[np.uint8]:
    """LEB128 length of each value; ``top`` is ``u.max()`` if already known."""
    lengths = np.ones(u.shape, dtype=np.uint8)
    if u.size == 0:
        return lengths
    if top is None:
        top = int(u.max())
    # One comparison pass per 7-bit group in use, summed into uint8: several
    # times cheaper than a binary search or int64 sums over the same values.
    hit = np.empty(u.shape, dtype=np.bool_)
    for threshold in _GROUP_THRESHOLDS:
        if threshold > top:
            break
        np.greater_equal(u, np.uint64(threshold), out=hit)
        np.add(lengths, hit, out=lengths, casting="unsafe")
    return lengths


def _scatter_varints(
    out: NDArray[np.uint8],
    starts: NDArray[np.int64],
    u: NDArray[np.uint64],
    lengths: NDArray[np.uint8],
) -> None:
    """Write LEB128 of ``u[i]`` at ``out[starts[i]:starts[i] + lengths[i]]``.

    Byte k of every varint at once, dropping rows as their varints end: cheap
    when most varints are one byte long, and valid for any layout of ``starts``.
    """
    idx, vals, lens = starts, u, lengths
    k = 1
    while idx.size:
        more = lens > k
        out[idx] = (vals.astype(np.uint8) & np.uint8(0x7F)) | (more.view(np.uint8) << np.uint8(7))
        if not more.any():
            break
        idx = idx[more] + 1
        vals = vals[more] >> np.uint64(7)
        lens = lens[more]
        k += 1


def _spread7(u: NDArray[np.uint64], longest: int) -> NDArray[np.uint64]:
    """Move the low 56 bits of each value into eight 7-bit groups, one per byte.

    Three doubling steps (28 -> 14 -> 7 bits per lane) instead of eight
    shifts, skipping steps the ``longest`` varint does not need, in place to
    spare allocations.
    """
    x = u & _M56
    tmp = np.empty_like(x)
    for bits, lo_mask, hi_mask, shift in _SPREAD_STEPS:
        if longest > bits // 14:  # values reach the upper half-lane
            np.bitwise_and(x, hi_mask, out=tmp)
            np.left_shift(tmp, shift, out=tmp)
            np.bitwise_and(x, lo_mask, out=x)
            np.bitwise_or(x, tmp, out=x)
    return x


def _gather7(x: NDArray[np.uint64], longest: int) -> NDArray[np.uint64]:
    """Invert :func:`_spread7`: pack eight 7-bit byte groups into 56 bits, in place."""
    tmp = np.empty_like(x)
    for bits, lo_mask, hi_mask, shift in reversed(_SPREAD_STEPS):
        if longest > bits // 14:  # values reach the upper half-lane
            # The spread masks shifted into place select the same bit groups.
            np.bitwise_and(x, hi_mask << shift, out=tmp)
            np.right_shift(tmp, shift, out=tmp)
            np.bitwise_and(x, lo_mask, out=x)
            np.bitwise_or(x, tmp, out=x)
    return x


def _varints_by_rows(u: NDArray[np.uint64], lengths: NDArray[np.uint8], longest: int) -> bytes:
    """Encode many multi-byte varints: build each as a fixed-width row, then compress.

    Every value becomes a little-endian row of ``width`` bytes (7-bit groups
    plus continuation bits) with a matching row of keep-flags; one boolean
    compress yields the concatenated varints in order. Rows are kept contiguous
    and as narrow as the longest varint allows, since numpy compresses
    contiguous arrays several times faster than strided views.
    """
    n = u.size
    lo = _spread7(u, longest)
    if longest <= 8:
        width = 2 if longest <= 2 else 4 if longest <= 4 else 8
        kind = f"<u{width}"
        rows = (lo | np.array(_CONT_WORDS, dtype=np.uint64)[lengths]).astype(kind)
        # Entries past `width` wrap when narrowed; no length here reaches them.
        flags = np.array(_KEEP_LO_FLAGS, dtype=np.uint64).astype(kind)[lengths]
        return rows.view(np.uint8)[flags.view(np.bool_)].tobytes()
    pair = np.empty((n, 2), dtype="<u8")
    keep = np.empty((n, 2), dtype="<u8")
    np.bitwise_or(lo, np.array(_CONT_WORDS, dtype=np.uint64)[lengths], out=pair[:, 0])
    np.take(np.array(_KEEP_LO_FLAGS, dtype="<u8"), lengths, out=keep[:, 0])
    np.take(np.array(_KEEP_HI_FLAGS, dtype="<u8"), lengths, out=keep[:, 1])
    # Byte 8 holds bits 56..62; a value >= 2**63 also sets byte 8's
    # continuation bit (0x80) and has a 10th byte of 0x01, hence the 0x180.
    high = u >> np.uint64(56)
    top_bit = high >> np.uint64(7)
    top_bit *= np.uint64(0x180)
    np.bitwise_and(high, np.uint64(0x7F), out=high)
    np.bitwise_or(high, top_bit, out=pair[:, 1])
    return pair.view(np.uint8)[keep.view(np.bool_)].tobytes()


# Below this many values a plain loop beats numpy's per-call overhead (a metric row, one
# config edit); both paths produce the same bytes (tests/test_wire.py checks both).
SMALL = 32
_M64 = (1 << 64) - 1


def _uvarints_py(values: list[int]) -> bytes:
    out = bytearray()
    for value in values:
        n = value
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
    return bytes(out)


def encode_uvarints(a: npt.ArrayLike) -> bytes:
    """Encode non-negative integers as concatenated LEB128 varints.

    Args:
        a: 1-D array of non-negative integers (int64, uint64 or narrower).

    Returns:
        The varints, back to back, with no count prefix.

    Raises:
        ValueError: If ``a`` is not 1-D or holds a negative value.
        TypeError: If ``a`` is not an integer array.
    """
    u = _as_u64(a, "encode_uvarints")
    if u.size <= SMALL:
        return _uvarints_py(u.tolist())
    top = int(u.max())
    if top < 0x80:
        return u.astype(np.uint8).tobytes()
    lengths = _varint_lengths(u, top)
    ends = np.cumsum(lengths, dtype=np.int64)
    total = int(ends[-1])
    if total - u.size < u.size // 4:
        # Mostly single bytes: the per-byte scatter only revisits the few long ones.
        out = np.empty(total, dtype=np.uint8)
        _scatter_varints(out, ends - lengths, u, lengths)
        return out.tobytes()
    return _varints_by_rows(u, lengths, int(lengths.max()))


def _decode_uvarints_py(chunk: bytes, pos: int, n: int) -> tuple[NDArray[np.uint64], int]:
    """The loop form of `_decode_uvarints` for a few values: same results, same errors."""
    vals, end = _uvarints_list(chunk, pos, n)
    return np.array(vals, dtype=np.uint64), end


def _uvarints_list(chunk: _View, pos: int, n: int) -> tuple[list[int], int]:
    """`_decode_uvarints_py` as a list (``chunk`` holds the input from ``pos`` on)."""
    vals = []
    p = 0
    end = len(chunk)
    for i in range(n):
        start = p
        result = shift = 0
        while True:
            if p >= end:
                if p - start >= _U64_VARINT_BYTES:
                    raise InvalidError(
                        f"varint at offset {pos + start} is longer than {_U64_VARINT_BYTES} bytes"
                    )
                raise TruncatedError(
                    f"{n} varints expected at offset {pos}, input ends after {i}", needed=n - i
                )
            b = chunk[p]
            p += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if p - start == _U64_VARINT_BYTES:
                raise InvalidError(
                    f"varint at offset {pos + start} is longer than {_U64_VARINT_BYTES} bytes"
                )
        if b == 0 and p - start > 1:
            raise InvalidError(f"non-canonical varint at offset {pos + start}")
        if p - start == _U64_VARINT_BYTES and b > 1:
            raise InvalidError(f"varint at offset {pos + start} overflows uint64")
        vals.append(result)
    return vals, pos + p


def _decode_uvarints(w: NDArray[np.uint8], pos: int, n: int) -> tuple[NDArray[np.uint64], int]:
    """Core of :func:`decode_uvarints` over a uint8 view of the whole buffer."""
    _check_span(w.size, pos, n)
    if n == 0:
        return np.zeros(0, dtype=np.uint64), pos
    avail = w.size - pos
    if n > avail:  # every varint takes at least one byte
        raise TruncatedError(
            f"{n} varints at offset {pos} need at least {n} bytes, only {avail} left",
            needed=n - avail,
        )
    head = w[pos : pos + n]
    if int(head.max()) < 0x80:  # fast path: all single-byte varints
        return head.astype(np.uint64), pos + n
    if n <= SMALL:
        return _decode_uvarints_py(
            w[pos : pos + min(_U64_VARINT_BYTES * n, avail)].tobytes(), pos, n
        )

    # Find terminator bytes (< 0x80), scanning no further than n varints can
    # reach (10 bytes each) and growing the window geometrically so short
    # varints followed by unrelated data are not scanned in full.
    limit = min(_U64_VARINT_BYTES * n, avail)
    parts = [np.flatnonzero(head < 0x80)]
    found = parts[0].size
    scanned = n
    while found < n and scanned < limit:
        size = min(limit, scanned + max(n - found, scanned))
        hits = np.flatnonzero(w[pos + scanned : pos + size] < 0x80)
        if hits.size:
            parts.append(hits + scanned)
            found += hits.size
        scanned = size
    ends = (np.concatenate(parts) if len(parts) > 1 else parts[0])[:n] + pos
    count = ends.size

    # Validate the varints that did complete before deciding about truncation:
    # if something is already wrong, more bytes cannot help.
    starts = np.empty(count, dtype=np.int64)
    lengths = np.empty(count, dtype=np.int64)
    longest = 0
    if count:
        starts[0] = pos
        starts[1:] = ends[:-1] + 1
        np.subtract(ends, starts, out=lengths)
        lengths += 1
        longest = int(lengths.max())
        if longest > _U64_VARINT_BYTES:
            at = int(starts[int(np.argmax(lengths > _U64_VARINT_BYTES))])
            raise InvalidError(f"varint at offset {at} is longer than {_U64_VARINT_BYTES} bytes")
        last = w[ends]
        bad = (last == 0) & (lengths > 1)
        if bad.any():
            raise InvalidError(f"non-canonical varint at offset {starts[int(np.argmax(bad))]}")
        if longest == _U64_VARINT_BYTES:
            # The 10th byte carries only bit 63; anything more overflows uint64.
            bad = (lengths == _U64_VARINT_BYTES) & (last > 1)
            if bad.any():
                at = int(starts[int(np.argmax(bad))])
                raise InvalidError(f"varint at offset {at} overflows uint64")
    if count < n:
        tail_at = int(ends[-1]) + 1 if count else pos
        if pos + scanned - tail_at >= _U64_VARINT_BYTES:
            raise InvalidError(
                f"varint at offset {tail_at} is longer than {_U64_VARINT_BYTES} bytes"
            )
        raise TruncatedError(
            f"{n} varints expected at offset {pos}, input ends after {count}",
            needed=n - count,
        )

    stop = int(ends[-1]) + 1
    if stop - pos - n < n // 4:
        return _assemble_by_group(w, starts, lengths), stop
    return _assemble_by_word(w, starts, lengths, longest), stop


def _assemble_by_group(
    w: NDArray[np.uint8], starts: NDArray[np.int64], lengths: NDArray[np.int64]
) -> NDArray[np.uint64]:
    """Values of validated varints, one 7-bit group at a time.

    Each pass touches only the varints that still have groups left, so this is
    cheapest when most varints are a single byte.
    """
    vals = (w[starts] & np.uint8(0x7F)).astype(np.uint64)
    rows = np.flatnonzero(lengths > 1)
    k = 1
    while rows.size:
        group = (w[starts[rows] + k] & np.uint8(0x7F)).astype(np.uint64)
        vals[rows] |= group << np.uint64(7 * k)
        rows = rows[lengths[rows] > k + 1]
        k += 1
    return vals


def _unaligned_words(arr: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Little-endian uint64 view of ``arr`` at every byte offset, without copying.

    ``words[i]`` is ``arr[i:i + 8]``, so one gather reads the first eight bytes
    of every varint at once.
    """
    words: NDArray[np.uint64] = np.ndarray(
        shape=(max(arr.size - 7, 0),), dtype=np.dtype("<u8"), buffer=arr, strides=(1,)
    )
    return words


def _assemble_by_word(
    w: NDArray[np.uint8], starts: NDArray[np.int64], lengths: NDArray[np.int64], longest: int
) -> NDArray[np.uint64]:
    """Values of validated varints, reading each one's first eight bytes as a word.

    Costs the same whatever the lengths, so it wins once many varints are long.
    """
    n = starts.size
    lo = np.empty(n, dtype=np.uint64)
    # The last few varints may sit closer than 8 bytes to the end of the
    # buffer; read those from a small zero-padded copy, never past the end.
    safe = int(np.searchsorted(starts, w.size - 7))
    if safe:
        lo[:safe] = _unaligned_words(w)[starts[:safe]]
    if safe < n:
        tail_from = int(starts[safe])
        tail = np.zeros(w.size - tail_from + 8, dtype=np.uint8)
        tail[: w.size - tail_from] = w[tail_from:]
        lo[safe:] = _unaligned_words(tail)[starts[safe:] - tail_from]
    # Keep each varint's own bytes without their continuation bits, then pack.
    keep = np.array(_KEEP_WORDS, dtype=np.uint64)
    vals = _gather7(lo & keep[lengths], longest)
    if longest > 8:
        # Bytes 8 and 9 hold bits 56..62 and (validated to be exactly 0x01)
        # bit 63. Handle them row by row for the few long varints, or across
        # all rows when long ones dominate and subsetting would cost more.
        is_big = lengths > 8
        if np.count_nonzero(is_big) < n // 4:
            big = np.flatnonzero(is_big)
            big_at = starts[big]
            high = (w[big_at + 8] & np.uint8(0x7F)).astype(np.uint64) << np.uint64(56)
            high[lengths[big] > 9] |= np.uint64(1 << 63)
            vals[big] |= high
        else:
            ninth = w[np.minimum(starts + 8, w.size - 1)] & np.uint8(0x7F)
            ninth *= is_big  # rows without a 9th byte read a neighbour's: drop it
            high = ninth.astype(np.uint64) << np.uint64(56)
            high |= (lengths > 9).astype(np.uint64) << np.uint64(63)
            vals |= high
    return vals


def decode_uvarints(buf: Buffer, pos: int, n: int) -> tuple[NDArray[np.uint64], int]:
    """Decode exactly ``n`` concatenated LEB128 varints, vectorised.

    Args:
        buf: Input bytes.
        pos: Offset of the first varint.
        n: Number of varints to decode (e.g. from :meth:`Reader.count`).

    Returns:
        ``(values, new_pos)``, values as uint64.

    Raises:
        TruncatedError: If the input ends before ``n`` varints complete.
        InvalidError: On a varint longer than 10 bytes, overflowing uint64, or
            not in its shortest form.
        ValueError: If ``pos`` or ``n`` is out of range (a caller bug).
    """
    return _decode_uvarints(_u8(buf), pos, n)


def zigzag(a: npt.ArrayLike) -> NDArray[np.uint64]:
    """Map int64 to uint64 so small magnitudes stay small (0, -1, 1 -> 0, 1, 2)."""
    x = _as_i64(a, "zigzag")
    return (x.view(np.uint64) << np.uint64(1)) ^ (x >> np.int64(63)).view(np.uint64)


def unzigzag(u: npt.ArrayLike) -> NDArray[np.int64]:
    """Invert :func:`zigzag`."""
    v = _as_u64(u, "unzigzag")
    half = (v >> np.uint64(1)).view(np.int64)
    sign = -((v & np.uint64(1)).view(np.int64))
    return half ^ sign


def encode_deltas(a: npt.ArrayLike) -> bytes:
    """Encode int64 values as zigzag varints of the first value and successive differences.

    Differences wrap modulo 2**64, so every int64 array round-trips exactly even
    when a difference overflows; sorted or arithmetic runs cost about one byte
    per element.
    """
    x = _as_i64(a, "encode_deltas")
    if x.size <= SMALL:
        return encode_deltas_list(x.tolist())
    u = x.view(np.uint64)
    d = np.empty_like(u)
    d[0] = u[0]
    np.subtract(u[1:], u[:-1], out=d[1:])  # uint64 arithmetic wraps, by design
    return encode_uvarints(zigzag(d.view(np.int64)))


def encode_deltas_list(values: list[int]) -> bytes:
    """`encode_deltas` for a few Python ints in int64 range (one edit's column), without
    numpy's per-call cost: the same bytes."""
    zs, prev = [], 0
    for v in values:
        d = (v - prev) & _M64
        if d >= 1 << 63:
            d -= 1 << 64
        zs.append(((d << 1) ^ (d >> 63)) & _M64)
        prev = v
    return _uvarints_py(zs)


def decode_deltas_list(buf: Buffer, pos: int, n: int) -> tuple[list[int], int]:
    """`decode_deltas` for a few values (a single edit's column), as a Python list: the
    same results and errors without numpy's per-call cost."""
    view = _byteview(buf)
    _check_span(len(view), pos, n)
    chunk = view[pos : pos + min(_U64_VARINT_BYTES * n, len(view) - pos)]
    zs, end = _uvarints_list(chunk, pos, n)
    out, acc = [], 0
    for z in zs:
        acc = (acc + ((z >> 1) ^ -(z & 1))) & _M64
        out.append(acc - (1 << 64) if acc >= 1 << 63 else acc)
    return out, end


def decode_deltas(buf: Buffer, pos: int, n: int) -> tuple[NDArray[np.int64], int]:
    """Decode ``n`` values written by :func:`encode_deltas`; returns ``(values, new_pos)``."""
    w = _u8(buf)
    if 0 < n <= SMALL:
        _check_span(w.size, pos, n)
        chunk = w[pos : pos + min(_U64_VARINT_BYTES * n, w.size - pos)].tobytes()
        zs, end = _decode_uvarints_py(chunk, pos, n)
        out, acc = [], 0
        for z in zs.tolist():
            acc = (acc + ((z >> 1) ^ -(z & 1))) & _M64
            out.append(acc - (1 << 64) if acc >= 1 << 63 else acc)
        return np.array(out, dtype=np.int64), end
    u, pos = _decode_uvarints(w, pos, n)
    d = unzigzag(u).view(np.uint64)
    return np.cumsum(d, dtype=np.uint64).view(np.int64), pos


def encode_f64s(a: npt.ArrayLike) -> bytes:
    """Encode floats as 8 big-endian IEEE-754 bytes each, bit-exact (NaN payloads kept)."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"encode_f64s needs a 1-D array, got shape {x.shape}")
    # Go through integers so no float conversion can touch the bits.
    return x.view(np.uint64).astype(">u8").tobytes()


def encode_f64s_list(values: list[float]) -> bytes:
    """`encode_f64s` for a few Python floats: the same bytes (``struct`` packs the IEEE-754
    bits as they are, NaN payloads included)."""
    return struct.pack(f">{len(values)}d", *values)


def decode_f64s_list(buf: Buffer, pos: int, n: int) -> tuple[list[float], int]:
    """`decode_f64s` for a few values, as a Python list (bit-exact: ``struct`` copies the
    IEEE-754 bits, NaN payloads included)."""
    view = _byteview(buf)
    _check_span(len(view), pos, n)
    need = 8 * n
    avail = len(view) - pos
    if need > avail:
        raise TruncatedError(
            f"{n} floats at offset {pos} need {need} bytes, only {avail} left",
            needed=need - avail,
        )
    return list(struct.unpack_from(f">{n}d", view, pos)), pos + need


def decode_f64s(buf: Buffer, pos: int, n: int) -> tuple[NDArray[np.float64], int]:
    """Decode ``n`` floats written by :func:`encode_f64s`; returns ``(values, new_pos)``."""
    w = _u8(buf)
    _check_span(w.size, pos, n)
    need = 8 * n
    avail = w.size - pos
    if need > avail:
        raise TruncatedError(
            f"{n} floats at offset {pos} need {need} bytes, only {avail} left",
            needed=need - avail,
        )
    vals = w[pos : pos + need].view(">u8").astype(np.uint64).view(np.float64)
    return vals, pos + need


# ------------------------------------------------------------- front-coded columns


def _shared_prefixes(
    data: NDArray[np.uint8], offs: NDArray[np.int64], lens: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Length of the common prefix of each item with the one before it (0 for the first)."""
    n = lens.size
    pref = np.zeros(n, dtype=np.int64)
    if n < 2:
        return pref
    bound = np.minimum(lens[:-1], lens[1:])  # bound[i - 1] caps the prefix of item i
    active = np.flatnonzero(bound > 0) + 1
    if not active.size:
        return pref
    # Compare eight bytes at a time as little-endian words: the lowest set
    # bit of a XOR marks the first differing byte. Zero padding lets every
    # word start anywhere inside `data`.
    padded = np.zeros(data.size + 8, dtype=np.uint8)
    padded[: data.size] = data
    words = _unaligned_words(padded)
    last_word = words.size - 1
    a_at = offs[active - 1]
    b_at = offs[active]
    rem = bound[active - 1]
    done = 0
    group = 1  # words compared per unresolved pair this round
    while active.size:
        span = 8 * group
        if group == 1:
            diff = (words[a_at] ^ words[b_at]).astype(np.uint64)
            first = np.zeros(active.size, dtype=np.int64)
        else:
            # Words wholly past a pair's bound may be clipped: their bytes are
            # never counted, because the match is capped by `rem` below.
            cols = np.arange(0, span, 8, dtype=np.int64)
            ia = np.minimum(a_at[:, None] + cols, last_word)
            ib = np.minimum(b_at[:, None] + cols, last_word)
            block = (words[ia] ^ words[ib]).astype(np.uint64)
            first = np.argmax(block != 0, axis=1)
            diff = block[np.arange(active.size), first]
        lowest = diff & (~diff + np.uint64(1))
        # A power of two converts to float exactly; its exponent is the bit index.
        bit = (lowest.astype(np.float64).view(np.uint64) >> np.uint64(52)).astype(np.int64) - 1023
        match = np.where(diff == 0, span, 8 * first + (bit >> 3))
        np.minimum(match, rem, out=match)
        finished = (match < span) | (rem <= span)
        pref[active[finished]] = done + match[finished]
        going = ~finished
        active = active[going]
        a_at = a_at[going] + span
        b_at = b_at[going] + span
        rem = rem[going] - span
        done += span
        # Long shared prefixes: compare geometrically more words per round, in
        # bounded blocks, so a 1 MB prefix takes ~20 rounds rather than 2**17.
        group = max(1, min(2 * group, _PREFIX_BLOCK_ELEMS // max(active.size, 1)))
    return pref


def _front_encode(data: bytes, lens: NDArray[np.int64]) -> bytes:
    """Front-code items given as their concatenation plus byte lengths."""
    n = lens.size
    d = np.frombuffer(data, dtype=np.uint8)
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offs[1:])
    pref = _shared_prefixes(d, offs, lens)
    suf = lens - pref
    pref_u = pref.view(np.uint64)
    suf_u = suf.view(np.uint64)
    top_p = int(pref.max())
    top_s = int(suf.max())
    lp = _varint_lengths(pref_u, top_p)
    ls = _varint_lengths(suf_u, top_s)
    # Item layout: prefix varint at item_at, length varint at len_at, suffix at suf_at.
    len_at = lp.astype(np.int64)
    suf_at = len_at + ls
    out_end = np.cumsum(suf_at + suf)
    item_at = out_end - (suf_at + suf)
    len_at += item_at
    suf_at += item_at
    out = np.empty(int(out_end[-1]), dtype=np.uint8)
    _scatter_varints(out, item_at, pref_u, lp)
    _scatter_varints(out, len_at, suf_u, ls)
    total = int(suf.sum())
    if total:
        # Copy every suffix in one gather/scatter: byte j of the suffix stream
        # comes from src + j and goes to dst + j, shifted per item.
        seg = np.cumsum(suf) - suf
        j = np.arange(total, dtype=np.int64)
        dst = np.repeat(suf_at - seg, suf) + j
        src = np.repeat(offs[:-1] + pref - seg, suf) + j
        out[dst] = d[src]
    return out.tobytes()


def _front_encode_py(items: Sequence[bytes]) -> bytes:
    """The loop form of `_front_encode` for a few items (same bytes)."""
    out = bytearray()
    prev = b""
    for item in items:
        p, m = 0, min(len(prev), len(item))
        while p < m and prev[p] == item[p]:
            p += 1
        out += _uvarints_py([p, len(item) - p])
        out += item[p:]
        prev = item
    return bytes(out)


def encode_bytes_column(items: Sequence[bytes]) -> bytes:
    """Front-code byte strings: per item, varint(shared prefix), varint(suffix length), suffix.

    Any order works; sorted input compresses best. The prefix is always the
    longest one shared with the previous item, which keeps the encoding canonical.
    """
    if len(items) <= SMALL:
        return _front_encode_py(items)
    lens = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    return _front_encode(b"".join(items), lens)


def encode_strings(items: Sequence[str]) -> bytes:
    """Front-code strings like :func:`encode_bytes_column`, over their UTF-8 bytes.

    Raises:
        ValueError: If a string contains a lone surrogate.
    """
    n = len(items)
    if n == 0:
        return b""
    if n <= SMALL:
        encoded = []
        for i, s in enumerate(items):
            try:
                encoded.append(s.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"item {i} has a lone surrogate {s[exc.start]!r} at index {exc.start}; "
                    "it cannot be encoded as UTF-8"
                ) from exc
        return _front_encode_py(encoded)
    joined = "".join(items)
    try:
        data = joined.encode("utf-8")
    except UnicodeEncodeError:
        for i, s in enumerate(items):
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"item {i} has a lone surrogate {s[exc.start]!r} at index {exc.start}; "
                    "it cannot be encoded as UTF-8"
                ) from exc
        raise  # unreachable: the join of encodable strings is encodable
    char_lens = np.fromiter(map(len, items), dtype=np.int64, count=n)
    if len(data) == len(joined):  # all ASCII: byte lengths are character lengths
        return _front_encode(data, char_lens)
    # Per-code-point UTF-8 width, summed per item through a cumulative sum.
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4")
    width = np.ones(cps.size + 1, dtype=np.int64)
    width[0] = 0
    body = width[1:]
    body += cps >= 0x80
    body += cps >= 0x800
    body += cps >= 0x10000
    byte_at = np.cumsum(width)
    char_at = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(char_lens, out=char_at[1:])
    return _front_encode(data, np.diff(byte_at[char_at]))


def _front_decode(buf: Buffer, pos: int, n: int, max_bytes: int) -> tuple[list[bytes], int]:
    """Decode ``n`` front-coded items; see :func:`decode_bytes_column`."""
    view = _byteview(buf)
    end = len(view)
    _check_span(end, pos, n)
    avail = end - pos
    if 2 * n > avail:  # every item has two varints of at least one byte
        raise TruncatedError(
            f"{n} items at offset {pos} need at least {2 * n} bytes, only {avail} left",
            needed=2 * n - avail,
        )
    out: list[bytes] = []
    append = out.append
    prev = b""
    plen = 0
    total = 0
    # Hot loop for the common case: both varints one byte and the suffix in
    # range. Anything else leaves it before touching the state, and the careful
    # loop resumes at that item. Errors it can pin down it raises itself, with
    # the same precedence as the careful loop (truncation is already ruled out).
    try:
        for _ in range(n):
            p = view[pos]
            size = view[pos + 1]
            start = pos + 2
            stop = start + size
            if (p | size) >= 0x80 or stop > end:
                break
            if p > plen:
                raise _bad_prefix(pos, p, plen)
            # The prefix must be maximal, else the same column has two encodings.
            if size and p < plen and view[start] == prev[p]:
                raise InvalidError(f"non-canonical shared prefix at offset {pos}")
            plen = p + size
            total += plen
            if total > max_bytes:
                raise _too_big(pos, max_bytes)
            prev = prev[:p] + view[start:stop]
            append(prev)
            pos = stop
        else:
            return out, pos
    except IndexError:
        pass
    return _front_decode_careful(view, pos, n, max_bytes, out, total)


def _bad_prefix(at: int, p: int, plen: int) -> InvalidError:
    return InvalidError(f"item at offset {at} shares {p} bytes with a {plen}-byte predecessor")


def _too_big(at: int, max_bytes: int) -> InvalidError:
    return InvalidError(f"column at offset {at} expands beyond {max_bytes} bytes")


def _front_decode_careful(
    view: _View, pos: int, n: int, max_bytes: int, out: list[bytes], total: int
) -> tuple[list[bytes], int]:
    """Continue :func:`_front_decode` at item ``len(out)``, handling every case."""
    prev = out[-1] if out else b""
    while len(out) < n:
        at = pos
        p, pos = _read_uvarint(view, pos)
        size, pos = _read_uvarint(view, pos)
        if p > len(prev):
            raise _bad_prefix(at, p, len(prev))
        # Checked before truncation: an absurd length is invalid, and a
        # streaming caller must not be told to wait for it.
        total += p + size
        if total > max_bytes:
            raise _too_big(at, max_bytes)
        stop = pos + size
        if stop > len(view):
            raise TruncatedError(
                f"item at offset {at} needs {size} suffix bytes, only {len(view) - pos} left",
                needed=stop - len(view),
            )
        if size and p < len(prev) and view[pos] == prev[p]:
            raise InvalidError(f"non-canonical shared prefix at offset {at}")
        prev = prev[:p] + view[pos:stop]
        pos = stop
        out.append(prev)
    return out, pos


def decode_bytes_column(
    buf: Buffer, pos: int, n: int, *, max_bytes: int = DEFAULT_MAX_COLUMN_BYTES
) -> tuple[list[bytes], int]:
    """Decode ``n`` items written by :func:`encode_bytes_column`.

    Args:
        buf: Input bytes.
        pos: Offset of the first item.
        n: Number of items.
        max_bytes: Cap on the total decoded size, against prefix-repetition bombs.

    Returns:
        ``(items, new_pos)``.

    Raises:
        TruncatedError: If the input ends early.
        InvalidError: If a prefix is longer than the previous item or not
            maximal, or the column expands beyond ``max_bytes``.
    """
    return _front_decode(buf, pos, n, max_bytes)


def decode_strings(
    buf: Buffer, pos: int, n: int, *, max_bytes: int = DEFAULT_MAX_COLUMN_BYTES
) -> tuple[list[str], int]:
    """Decode ``n`` strings written by :func:`encode_strings`.

    Same contract as :func:`decode_bytes_column`; additionally raises
    :class:`~convergent.errors.InvalidError` if an item is not valid UTF-8.
    """
    raw, new_pos = _front_decode(buf, pos, n, max_bytes)
    try:
        return list(map(bytes.decode, raw)), new_pos  # UTF-8, strict
    except UnicodeDecodeError:
        for i, item in enumerate(raw):
            try:
                item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidError(f"string {i} of column at {pos}: {exc.reason}") from None
        raise InvalidError(f"invalid UTF-8 in string column at {pos}") from None
