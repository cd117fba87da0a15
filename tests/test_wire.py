"""Tests for ``convergent.codec.wire`` (and the error tree it raises from)."""

from __future__ import annotations

import pickle
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from convergent.codec import wire
from convergent.codec.wire import (
    MAX_UVARINT,
    Reader,
    Writer,
    decode_bytes_column,
    decode_deltas,
    decode_f64s,
    decode_strings,
    decode_uvarints,
    encode_bytes_column,
    encode_deltas,
    encode_f64s,
    encode_strings,
    encode_uvarints,
    unzigzag,
    zigzag,
)
from convergent.errors import (
    AuthError,
    ConvergentError,
    DecodeError,
    InvalidError,
    ProtocolError,
    SchemaError,
    StorageError,
    TruncatedError,
    UnsupportedVersionError,
)

# numpy work can be slow on a loaded CI box; correctness, not latency, is tested here.
numpy_settings = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def enc(fn: Callable[[Writer], None]) -> bytes:
    w = Writer()
    fn(w)
    return w.getvalue()


def scalar_uvarints(values: list[int]) -> bytes:
    w = Writer()
    for v in values:
        w.uvarint(v)
    return w.getvalue()


def f64_from_bits(bits: int) -> float:
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


def bits_of(x: float) -> int:
    return int.from_bytes(struct.pack(">d", x), "big")


# Magnitudes spread over every varint length, not just the (mostly huge) uniform draw.
u64_values = st.one_of(
    st.integers(0, 127),
    st.integers(0, 2**14),
    st.integers(0, 2**35),
    st.integers(0, U64_MAX),
    st.sampled_from([0, 127, 128, 2**56 - 1, 2**56, 2**63 - 1, 2**63, U64_MAX]),
)
i64_values = st.one_of(
    st.integers(-64, 64),
    st.integers(-(2**40), 2**40),
    st.integers(I64_MIN, I64_MAX),
    st.sampled_from([I64_MIN, I64_MIN + 1, -1, 0, 1, I64_MAX - 1, I64_MAX]),
)
u64_arrays = hnp.arrays(np.uint64, st.integers(0, 60), elements=u64_values)
i64_arrays = hnp.arrays(np.int64, st.integers(0, 60), elements=i64_values)
texts = st.text(st.characters(codec="utf-8"), max_size=12)


# --------------------------------------------------------------------------- errors


def test_error_tree() -> None:
    assert issubclass(DecodeError, ConvergentError)
    assert issubclass(TruncatedError, DecodeError)
    assert issubclass(InvalidError, DecodeError)
    assert issubclass(UnsupportedVersionError, InvalidError)
    for cls in (ProtocolError, SchemaError, AuthError, StorageError):
        assert issubclass(cls, ConvergentError)
        assert not issubclass(cls, DecodeError)
    assert not issubclass(TruncatedError, InvalidError)


def test_truncated_error_needed_and_pickle() -> None:
    err = TruncatedError("ran out", needed=3)
    assert err.needed == 3
    assert "ran out" in str(err)
    assert "3" in str(err)
    assert TruncatedError().needed is None
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is TruncatedError
    assert (str(back), back.needed) == (str(err), 3)


def test_unsupported_version_message() -> None:
    err = UnsupportedVersionError("snapshot format version", 7, range(1, 4))
    assert str(err) == "unsupported snapshot format version 7; this build supports 1-3"
    assert (err.found, err.supported) == (7, (1, 2, 3))
    assert "supports 2" in str(UnsupportedVersionError("tag", 9, 2))
    assert "supports 1, 4" in str(UnsupportedVersionError("tag", 9, [4, 1]))
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err)
    free = UnsupportedVersionError("tag 0x42 is newer than this build (knows 0x01-0x07)")
    assert str(free) == "tag 0x42 is newer than this build (knows 0x01-0x07)"
    assert str(pickle.loads(pickle.dumps(free))) == str(free)


# -------------------------------------------------------------------- golden bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16384, b"\x80\x80\x01"),
        (2**63, b"\x80" * 9 + b"\x01"),
        (U64_MAX, b"\xff" * 9 + b"\x01"),
        (MAX_UVARINT, b"\xff" * 18 + b"\x03"),
    ],
)
def test_uvarint_golden(value: int, expected: bytes) -> None:
    assert enc(lambda w: w.uvarint(value)) == expected
    if value <= U64_MAX:
        assert encode_uvarints(np.array([value], dtype=np.uint64)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, b"\x00"),
        (-1, b"\x01"),
        (1, b"\x02"),
        (-2, b"\x03"),
        (63, b"\x7e"),
        (-64, b"\x7f"),
        (64, b"\x80\x01"),
        (2**127 - 1, b"\xfe" + b"\xff" * 17 + b"\x03"),  # zigzag: 2**128 - 2
        (-(2**127), b"\xff" * 18 + b"\x03"),  # zigzag: 2**128 - 1
    ],
)
def test_svarint_golden(value: int, expected: bytes) -> None:
    assert enc(lambda w: w.svarint(value)) == expected


def test_other_golden() -> None:
    assert enc(lambda w: w.f64(1.0)) == bytes.fromhex("3ff0000000000000")
    assert enc(lambda w: w.f64(-0.0)) == bytes.fromhex("8000000000000000")
    assert enc(lambda w: w.text("é")) == b"\x02\xc3\xa9"
    assert enc(lambda w: w.text("")) == b"\x00"
    assert enc(lambda w: w.blob(b"ab")) == b"\x02ab"
    assert enc(lambda w: w.byte(255)) == b"\xff"
    assert enc(lambda w: w.raw(b"xyz")) == b"xyz"
    assert encode_strings(["a", "ab", "b"]) == b"\x00\x01a\x01\x01b\x00\x01b"
    assert encode_strings([]) == b""
    assert encode_bytes_column([b"ab", b"ab", b""]) == b"\x00\x02ab\x02\x00\x00\x00"
    # zigzag deltas: 5, +1, +1, -3 -> 10, 2, 2, 5
    assert encode_deltas(np.array([5, 6, 7, 4])) == b"\x0a\x02\x02\x05"
    assert encode_f64s(np.array([1.0, -2.0])) == bytes.fromhex("3ff0000000000000c000000000000000")


def test_svarint_bytes_match_zigzag_then_uvarint() -> None:
    values = [0, -1, 1, -2, I64_MAX, I64_MIN, 12345, -12345]
    z = zigzag(np.array(values, dtype=np.int64))
    assert z.tolist() == [0, 1, 2, 3, U64_MAX - 1, U64_MAX, 24690, 24689]
    w = Writer()
    for v in values:
        w.svarint(v)
    assert encode_uvarints(z) == w.getvalue()
    assert unzigzag(z).tolist() == values


# --------------------------------------------------------------------- round-trips


@given(st.integers(0, MAX_UVARINT))
def test_uvarint_roundtrip(n: int) -> None:
    r = Reader(enc(lambda w: w.uvarint(n)))
    assert r.uvarint() == n
    r.done()


@given(st.integers(-(2**127), 2**127 - 1))
def test_svarint_roundtrip(n: int) -> None:
    r = Reader(enc(lambda w: w.svarint(n)))
    assert r.svarint() == n
    r.done()


@pytest.mark.parametrize("n", [0, 1, 2**62, 2**63 - 1, 2**63, U64_MAX, 2**100, MAX_UVARINT])
def test_uvarint_edges(n: int) -> None:
    assert Reader(enc(lambda w: w.uvarint(n))).uvarint() == n


@pytest.mark.parametrize("n", [0, -1, 1, I64_MIN, I64_MAX, -(2**127), 2**127 - 1])
def test_svarint_edges(n: int) -> None:
    assert Reader(enc(lambda w: w.svarint(n))).svarint() == n


@given(st.integers(0, U64_MAX))
def test_f64_bits_roundtrip(bits: int) -> None:
    x = f64_from_bits(bits)
    data = enc(lambda w: w.f64(x))
    assert data == bits.to_bytes(8, "big")
    assert bits_of(Reader(data).f64()) == bits


@pytest.mark.parametrize(
    "bits",
    [
        0x8000000000000000,
        0x7FF8000000000000,
        0x7FF8000000000123,
        0xFFF0000000000001,
        0x7FF0000000000001,
    ],
)
def test_f64_special_bits(bits: int) -> None:
    x = f64_from_bits(bits)
    assert bits_of(Reader(enc(lambda w: w.f64(x))).f64()) == bits
    arr = np.array([bits], dtype=np.uint64).view(np.float64)
    back, _ = decode_f64s(encode_f64s(arr), 0, 1)
    assert int(back.view(np.uint64)[0]) == bits


@given(st.lists(st.integers(0, U64_MAX), max_size=wire.SMALL))
def test_small_f64_list_path_matches_numpy(bits: list[int]) -> None:
    """The list encoder (one edit's values) writes the numpy encoder's bytes, NaN payloads
    and negative zero included, and the list decoder reads them back bit for bit."""
    arr = np.array(bits, dtype=np.uint64).view(np.float64)
    data = wire.encode_f64s_list(arr.tolist())
    assert data == encode_f64s(arr)
    back, end = wire.decode_f64s_list(data, 0, len(bits))
    assert [bits_of(x) for x in back] == bits
    assert end == len(data)


@given(st.lists(st.integers(I64_MIN, I64_MAX), max_size=wire.SMALL))
def test_small_deltas_list_path_matches_numpy(values: list[int]) -> None:
    data = wire.encode_deltas_list(values)
    assert data == encode_deltas(np.array(values, dtype=np.int64))
    assert wire.decode_deltas_list(data, 0, len(values)) == (values, len(data))


@given(st.text(), st.binary())
def test_text_blob_roundtrip(s: str, b: bytes) -> None:
    w = Writer()
    w.text(s)
    w.blob(b)
    w.byte(7)
    r = Reader(w.getvalue())
    assert (r.text(), r.blob(), r.byte()) == (s, b, 7)
    r.done()


@pytest.mark.parametrize("s", ["", "a", "é", "€", "😀", "𝄞x\U0010ffff", "\x00", "a\u0300"])
def test_text_edges(s: str) -> None:
    assert Reader(enc(lambda w: w.text(s))).text() == s


def test_reader_accepts_memoryview_and_bytearray() -> None:
    w = Writer()
    w.uvarint(300)
    w.text("hi")
    data = b"junk" + w.getvalue()
    for buf in (bytearray(data), memoryview(data), memoryview(bytearray(data))):
        r = Reader(buf)
        r.pos = 4
        assert (r.uvarint(), r.text()) == (300, "hi")
        r.done()
    # A 2-D or non-byte memoryview is read as its raw bytes.
    words = np.arange(4, dtype="<u4")
    assert Reader(memoryview(words)).raw(4) == b"\x00\x00\x00\x00"


# ---------------------------------------------------------------- writer rejects


def test_writer_rejects_out_of_range() -> None:
    w = Writer()
    for bad in (-1, MAX_UVARINT + 1):
        with pytest.raises(ValueError, match="uvarint"):
            w.uvarint(bad)
    for bad in (2**127, -(2**127) - 1):
        with pytest.raises(ValueError, match="svarint"):
            w.svarint(bad)
    for bad in (-1, 256):
        with pytest.raises(ValueError, match="byte"):
            w.byte(bad)
    with pytest.raises(TypeError):
        w.uvarint(1.5)  # type: ignore[arg-type]
    assert w.getvalue() == b""
    w.uvarint(np.uint64(300))  # type: ignore[arg-type]
    w.svarint(np.int64(-1))  # type: ignore[arg-type]
    assert w.getvalue() == b"\xac\x02\x01"


def test_writer_rejects_lone_surrogate() -> None:
    with pytest.raises(ValueError, match=r"surrogate .* index 1"):
        Writer().text("a\ud800b")
    with pytest.raises(ValueError, match=r"item 1 .*surrogate"):
        encode_strings(["ok", "x\udfff"])


def test_array_encoders_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        encode_uvarints(np.array([1, -1]))
    with pytest.raises(TypeError):
        encode_uvarints(np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        encode_uvarints(np.zeros((2, 2), dtype=np.uint64))
    with pytest.raises(ValueError, match="2\\*\\*63"):
        encode_deltas(np.array([2**63], dtype=np.uint64))
    assert encode_uvarints(np.array([], dtype=np.int64)) == b""
    assert encode_uvarints([]) == b""
    assert encode_uvarints(np.array([1, 2], dtype=np.uint8)) == b"\x01\x02"
    assert encode_deltas(np.array([], dtype=np.int64)) == b""
    assert encode_f64s(np.array([])) == b""


# ------------------------------------------------------------- non-canonical input


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x00",  # 0 in two bytes
        b"\xff\x00",  # 127 in two bytes
        b"\x80\x80\x00",
        b"\xac\x82\x00",  # 300 with a zero extra group
        b"\x80" * 19 + b"\x01",  # 20 bytes
        b"\xff" * 18 + b"\x04",  # 19 bytes but > 2**128 - 1
    ],
)
def test_scalar_reader_rejects_bad_varints(data: bytes) -> None:
    with pytest.raises(InvalidError):
        Reader(data).uvarint()
    with pytest.raises(InvalidError):
        Reader(data).svarint()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x80\x00", "non-canonical"),
        (b"\x05\xff\x00", "non-canonical"),
        (b"\x80" * 10 + b"\x01", "longer than 10"),
        (b"\xff" * 9 + b"\x02", "overflows"),
        (b"\xff" * 9 + b"\x7f", "overflows"),
    ],
)
def test_vector_decoder_rejects_bad_varints(data: bytes, match: str) -> None:
    n = 2 if data[0] == 5 else 1
    with pytest.raises(InvalidError, match=match):
        decode_uvarints(data, 0, n)
    with pytest.raises(InvalidError, match=match):
        decode_deltas(data, 0, n)


def test_vector_decoder_reports_overlong_run_before_truncation() -> None:
    # Ten continuation bytes can never become a valid uint64 varint: invalid, not truncated.
    with pytest.raises(InvalidError):
        decode_uvarints(b"\x01" + b"\x80" * 10, 0, 2)
    with pytest.raises(TruncatedError):
        decode_uvarints(b"\x01" + b"\x80" * 9, 0, 2)


def test_reader_done_and_text_errors() -> None:
    r = Reader(b"\x01\x02\x03")
    r.uvarint()
    with pytest.raises(InvalidError, match="2 trailing bytes"):
        r.done()
    with pytest.raises(InvalidError, match="UTF-8"):
        Reader(b"\x01\xff").text()
    with pytest.raises(InvalidError, match="UTF-8"):
        Reader(b"\x03\xed\xa0\x80").text()  # an encoded surrogate is not UTF-8
    with pytest.raises(InvalidError, match="UTF-8"):
        Reader(b"\x02\xc0\x80").text()  # overlong NUL


def test_front_coding_rejects_bad_columns() -> None:
    with pytest.raises(InvalidError, match="predecessor"):
        decode_bytes_column(b"\x01\x00", 0, 1)
    with pytest.raises(InvalidError, match="predecessor"):
        decode_strings(b"\x00\x01a\x02\x00", 0, 2)
    # ["ab", "ac"] with a shared prefix of 0 instead of 1: same column, second encoding.
    with pytest.raises(InvalidError, match="non-canonical"):
        decode_strings(b"\x00\x02ab\x00\x02ac", 0, 2)
    assert decode_strings(b"\x00\x02ab\x01\x01c", 0, 2) == (["ab", "ac"], 7)
    with pytest.raises(InvalidError, match=r"UTF-8|invalid"):
        decode_strings(b"\x00\x01\xff", 0, 1)
    assert decode_bytes_column(b"\x00\x01\xff", 0, 1) == ([b"\xff"], 3)
    # Each item valid alone is required, even when the bytes split a code point.
    with pytest.raises(InvalidError):
        decode_strings(b"\x00\x02\xc3\xa9\x01\x00", 0, 2)
    with pytest.raises(InvalidError, match="non-canonical varint"):
        decode_strings(b"\x80\x00\x00", 0, 1)


def test_front_coding_bomb_is_capped() -> None:
    items = [b"x" * 1000] * 1000
    data = encode_bytes_column(items)
    assert len(data) == 3 + 1000 + 3 * 999
    assert decode_bytes_column(data, 0, 1000)[0] == items
    with pytest.raises(InvalidError, match="expands beyond"):
        decode_bytes_column(data, 0, 1000, max_bytes=100_000)
    with pytest.raises(InvalidError, match="expands beyond"):
        decode_strings(b"\x00" + b"\xff" * 8 + b"\x7f", 0, 1)  # absurd suffix length


# ------------------------------------------------------------------- truncation


def _write_ops(ops: list[tuple[str, Any]]) -> bytes:
    w = Writer()
    for kind, value in ops:
        if kind == "count":
            w.uvarint(value)
            w.raw(b"\x00" * value)
        else:
            getattr(w, kind)(value)
    return w.getvalue()


def _read_ops(data: bytes, ops: list[tuple[str, Any]]) -> list[Any]:
    r = Reader(data)
    out: list[Any] = []
    for kind, value in ops:
        if kind == "count":
            n = r.count(1)
            out.append(n)
            r.raw(n)
        elif kind == "raw":
            out.append(r.raw(len(value)))
        else:
            out.append(getattr(r, kind)())
    r.done()
    return out


scalar_ops = st.lists(
    st.one_of(
        st.tuples(st.just("uvarint"), st.integers(0, MAX_UVARINT)),
        st.tuples(st.just("svarint"), st.integers(-(2**127), 2**127 - 1)),
        st.tuples(st.just("byte"), st.integers(0, 255)),
        st.tuples(st.just("raw"), st.binary(max_size=5)),
        st.tuples(st.just("blob"), st.binary(max_size=5)),
        st.tuples(st.just("text"), texts),
        st.tuples(st.just("f64"), st.floats(allow_nan=False)),
        st.tuples(st.just("count"), st.integers(0, 4)),
    ),
    max_size=8,
)


@given(scalar_ops)
def test_scalar_sequence_roundtrip_and_every_prefix_truncated(ops: list[tuple[str, Any]]) -> None:
    data = _write_ops(ops)
    assert _read_ops(data, ops) == [value for _, value in ops]
    for cut in range(len(data)):
        with pytest.raises(TruncatedError):
            _read_ops(data[:cut], ops)


Column = tuple[Callable[[Any], bytes], Callable[[bytes, int, int], tuple[Any, int]], Any]

columns = st.one_of(
    st.tuples(st.just("uvarints"), u64_arrays),
    st.tuples(st.just("deltas"), i64_arrays),
    st.tuples(
        st.just("f64s"),
        hnp.arrays(np.uint64, st.integers(0, 10), elements=st.integers(0, U64_MAX)).map(
            lambda a: a.view(np.float64)
        ),
    ),
    st.tuples(st.just("strings"), st.lists(texts, max_size=12)),
    st.tuples(st.just("strings"), st.lists(texts, max_size=12).map(sorted)),
    st.tuples(st.just("bytes_column"), st.lists(st.binary(max_size=6), max_size=12)),
)


def _codec(kind: str) -> tuple[Callable[[Any], bytes], Callable[..., tuple[Any, int]]]:
    encoder: Callable[[Any], bytes] = getattr(wire, f"encode_{kind}")
    decoder: Callable[..., tuple[Any, int]] = getattr(wire, f"decode_{kind}")
    return encoder, decoder


def _same(kind: str, got: Any, want: Any) -> bool:
    if kind == "f64s":
        return bool(np.array_equal(got.view(np.uint64), want.view(np.uint64)))
    if isinstance(want, np.ndarray):
        return bool(np.array_equal(got, want)) and got.dtype == (
            np.uint64 if kind == "uvarints" else np.int64
        )
    return bool(got == want)


@numpy_settings
@given(columns, st.binary(max_size=3), st.binary(max_size=3))
def test_column_roundtrip_and_every_prefix_truncated(
    column: tuple[str, Any], before: bytes, after: bytes
) -> None:
    kind, values = column
    encoder, decoder = _codec(kind)
    body = encoder(values)
    n = len(values)
    got, pos = decoder(before + body + after, len(before), n)
    assert _same(kind, got, values)
    assert pos == len(before) + len(body)
    for cut in range(len(body)):
        with pytest.raises(TruncatedError):
            decoder(before + body[:cut], len(before), n)


def test_sorted_and_arithmetic_deltas_are_one_byte_each() -> None:
    ts = np.arange(1_700_000_000_000, 1_700_000_000_000 + 50_000 * 7, 7, dtype=np.int64)
    assert len(encode_deltas(ts)) == len(ts) + 5
    keys = [f"k{i:06d}" for i in range(1000)]
    assert len(encode_strings(keys)) < 5 * len(keys)


def test_deltas_full_int64_range() -> None:
    a = np.array([I64_MAX, I64_MIN, 0, I64_MAX, -1, I64_MIN, I64_MIN, 1], dtype=np.int64)
    back, _ = decode_deltas(encode_deltas(a), 0, a.size)
    assert back.tolist() == a.tolist()
    rng = np.random.default_rng(7)
    b = rng.integers(I64_MIN, I64_MAX, 10_000, dtype=np.int64, endpoint=True)
    assert np.array_equal(decode_deltas(encode_deltas(b), 0, b.size)[0], b)


def test_front_coding_splits_code_points_safely() -> None:
    items = ["é", "è", "ê😀", "ê😁", "", "ê"]
    data = encode_strings(items)
    assert data[:6] == b"\x00\x02\xc3\xa9\x01\x01"  # "è" shares the lead byte 0xC3
    assert decode_strings(data, 0, len(items)) == (items, len(data))


def reference_front(items: list[bytes]) -> bytes:
    """Obvious per-item front coding, to check the vectorised encoder against."""
    w = Writer()
    prev = b""
    for item in items:
        p = 0
        while p < min(len(prev), len(item)) and prev[p] == item[p]:
            p += 1
        w.uvarint(p)
        w.uvarint(len(item) - p)
        w.raw(item[p:])
        prev = item
    return w.getvalue()


# Shared runs around the 8-byte word size and far beyond it, then a short tail.
prefixed_bytes = st.builds(
    bytes.__add__,
    st.sampled_from([b"", b"x" * 7, b"x" * 8, b"x" * 9, b"x" * 17, b"x" * 40, b"x" * 300]),
    st.lists(st.sampled_from([0x00, 0x78, 0x79, 0xFF]), max_size=20).map(bytes),
)


@numpy_settings
@given(st.lists(prefixed_bytes, max_size=40), st.booleans())
def test_front_coding_matches_reference(items: list[bytes], sort: bool) -> None:
    if sort:
        items = sorted(items)
    data = encode_bytes_column(items)
    assert data == reference_front(items)
    assert decode_bytes_column(data, 0, len(items)) == (items, len(data))


@numpy_settings
@given(st.lists(st.text("xyé€😀", max_size=300), max_size=30))
def test_string_front_coding_matches_reference(items: list[str]) -> None:
    items.sort()
    data = encode_strings(items)
    assert data == reference_front([s.encode() for s in items])
    assert decode_strings(data, 0, len(items)) == (items, len(data))


def test_long_shared_prefixes() -> None:
    base = "p" * 3000
    items = [base + str(i) for i in range(200)] + [base * 2, base * 2, base]
    data = encode_strings(items)
    assert decode_strings(data, 0, len(items))[0] == items
    assert len(data) < 2 * 3000 + 10 * len(items)  # base stored twice, the rest ~4 B each


# ------------------------------------------------------------------ bounded counts


def test_huge_count_with_few_bytes_does_not_allocate() -> None:
    data = enc(lambda w: w.uvarint(2**60)) + b"abc"
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedError) as info:
            Reader(data, limit_items=2**62).count(8)
        with pytest.raises(TruncatedError):
            decode_uvarints(b"abc", 0, 2**60)
        with pytest.raises(TruncatedError):
            decode_deltas(b"abc", 0, 2**60)
        with pytest.raises(TruncatedError):
            decode_f64s(b"abc", 0, 2**60)
        with pytest.raises(TruncatedError):
            decode_strings(b"abc", 0, 2**60)
        with pytest.raises(TruncatedError):
            decode_bytes_column(b"abc", 0, 2**60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.needed == 2**63 - 3
    assert peak < 1_000_000


def test_count_limits() -> None:
    data = enc(lambda w: w.uvarint(2**60)) + b"abc"
    # Over the item limit: more bytes would never help, so it is invalid, not truncated.
    with pytest.raises(InvalidError, match="limit"):
        Reader(data).count()
    three = b"\x03abc"
    assert Reader(three).count() == 3
    with pytest.raises(TruncatedError) as info:
        Reader(three).count(min_bytes_each=2)
    assert info.value.needed == 3
    assert Reader(three).count(min_bytes_each=0) == 3
    with pytest.raises(InvalidError):
        Reader(three, limit_items=2).count()
    with pytest.raises(InvalidError):
        Reader(three).count(max_items=2)
    with pytest.raises(InvalidError):
        Reader(three, limit_items=2).count(max_items=5)  # can only tighten


def test_caller_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        decode_uvarints(b"\x00", 2, 1)
    with pytest.raises(ValueError):
        decode_uvarints(b"\x00", 0, -1)
    with pytest.raises(ValueError):
        Reader(b"").raw(-1)
    with pytest.raises(ValueError):
        Reader(b"ab").pos = 3


# ------------------------------------------------------------------------- fuzzing


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, value in edits:
        i = where % (len(buf) + 1)
        if op == 0 and i < len(buf):
            buf[i] = value
        elif op == 1:
            buf.insert(i, value)
        elif op == 2 and i < len(buf):
            del buf[i]
    return bytes(buf)


edits = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=3
)
fuzz_inputs = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda c, e: _mutate(_codec(c[0])[0](c[1]), e), columns, edits),
    st.builds(_mutate, st.builds(_write_ops, scalar_ops), edits),
)


@numpy_settings
@given(fuzz_inputs, st.integers(0, 20), st.integers(0, 3))
def test_fuzz_column_decoders(data: bytes, n: int, pos: int) -> None:
    pos = min(pos, len(data))
    for kind in ("uvarints", "deltas", "f64s", "strings", "bytes_column"):
        encoder, decoder = _codec(kind)
        try:
            got, end = decoder(data, pos, n)
        except DecodeError:
            continue
        # Canonical: whatever decodes re-encodes to exactly the bytes consumed.
        assert encoder(got) == data[pos:end], kind


@given(
    fuzz_inputs,
    st.lists(
        st.sampled_from(["uvarint", "svarint", "byte", "blob", "text", "f64", "count"]), max_size=6
    ),
)
def test_fuzz_scalar_reader(data: bytes, kinds: list[str]) -> None:
    r = Reader(data, limit_items=100)
    w = Writer()
    try:
        for kind in kinds:
            if kind == "count":
                w.uvarint(r.count(2))
            else:
                getattr(w, kind)(getattr(r, kind)())
        r.done()
    except DecodeError:
        return
    assert w.getvalue() == data  # canonical: one value, one encoding


# ------------------------------------------------------- vectorised == scalar


@numpy_settings
@given(u64_arrays)
def test_vector_uvarints_match_scalar(a: NDArray[np.uint64]) -> None:
    values = [int(v) for v in a]
    data = scalar_uvarints(values)
    assert encode_uvarints(a) == data
    got, pos = decode_uvarints(data, 0, len(values))
    assert got.dtype == np.uint64
    assert got.tolist() == values
    assert pos == len(data)
    r = Reader(data)
    assert [r.uvarint() for _ in values] == values


@numpy_settings
@given(i64_arrays)
def test_vector_deltas_match_scalar(a: NDArray[np.int64]) -> None:
    values = [int(v) for v in a]
    # Reference: wrap-around differences, zigzagged, as scalar svarints.
    w = Writer()
    prev = 0
    for v in values:
        d = (v - prev + 2**63) % 2**64 - 2**63
        w.svarint(d)
        prev = v
    assert encode_deltas(a) == w.getvalue()
    got, _ = decode_deltas(w.getvalue(), 0, len(values))
    assert got.dtype == np.int64
    assert got.tolist() == values


@pytest.mark.parametrize(
    "make",
    [
        lambda g: g.integers(0, 128, 5000),
        lambda g: g.integers(0, 2**14, 5000),
        lambda g: g.integers(0, 2**21, 5000),
        lambda g: g.integers(0, 2**56, 5000),
        lambda g: g.integers(0, 2**64, 5000, dtype=np.uint64),
        lambda g: g.integers(0, 2**63, 5000) >> g.integers(0, 63, 5000),
        lambda g: np.where(g.random(5000) < 0.05, g.integers(0, 2**64, 5000, dtype=np.uint64), 3),
    ],
    ids=["1B", "2B", "3B", "8B", "full", "geometric", "rare-big"],
)
def test_vector_uvarints_match_scalar_large(make: Callable[[np.random.Generator], Any]) -> None:
    a = np.asarray(make(np.random.default_rng(11))).astype(np.uint64)
    values = [int(v) for v in a]
    data = scalar_uvarints(values)
    assert encode_uvarints(a) == data
    for pad in (b"", b"\x80\x80"):
        got, pos = decode_uvarints(b"\x07" + data + pad, 1, a.size)
        assert got.tolist() == values
        assert pos == len(data) + 1


def test_decoders_accept_memoryview_and_bytearray() -> None:
    a = np.array([1, 300, U64_MAX, 5], dtype=np.uint64)
    data = b"\x00" + encode_uvarints(a)
    for buf in (bytearray(data), memoryview(data)):
        assert decode_uvarints(buf, 1, 4)[0].tolist() == a.tolist()
    keys = ["a", "ab", "abc"]
    sdata = encode_strings(keys)
    for sbuf in (bytearray(sdata), memoryview(sdata)):
        assert decode_strings(sbuf, 0, 3) == (keys, len(sdata))


def test_reader_and_column_decoders_compose() -> None:
    w = Writer()
    w.uvarint(3)
    w.raw(encode_deltas(np.array([10, 20, 15])))
    w.uvarint(2)
    w.raw(encode_strings(["x", "xy"]))
    r = Reader(w.getvalue())
    n = r.count()
    a, r.pos = decode_deltas(r.buffer, r.pos, n)
    m = r.count(2)
    s, r.pos = decode_strings(r.buffer, r.pos, m)
    r.done()
    assert (a.tolist(), s) == ([10, 20, 15], ["x", "xy"])
