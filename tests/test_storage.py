"""The `Store` contract, run against every backend (automerge-repo's `runStorageAdapterTests`),
then what only a file can get wrong: reopening, locking, and damaged or foreign files.

A damaged store must raise `StorageError` naming the damage; it must never open as a smaller
store that silently lost ops.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from convergent.errors import StorageError
from convergent.storage import MemoryStore, Snapshot, SQLiteStore, Store, StoredOp

ANY = -1  # the parts mask that matches every op


def make_op(origin: int, seq: int, parts: int = 1, hlc: int | None = None) -> StoredOp:
    return StoredOp(
        origin, seq, seq * 10 if hlc is None else hlc, parts, f"{origin}:{seq}".encode()
    )


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def blob(text: str) -> tuple[bytes, bytes]:
    data = text.encode()
    return digest(data), data


def keys(ops: Iterator[StoredOp]) -> list[tuple[int, int]]:
    return [(op.origin, op.seq) for op in ops]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = (
        MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.convergent")
    )
    yield s
    s.close()


# -- the contract, for every backend ---------------------------------------------------------
def test_meta_reads_none_until_set_and_set_replaces(store: Store) -> None:
    assert store.get_meta("run") is None
    store.set_meta("run", "abc")
    store.set_meta("replica", "42")
    assert store.get_meta("run") == "abc"
    store.set_meta("run", "def")
    assert (store.get_meta("run"), store.get_meta("replica")) == ("def", "42")


def test_append_returns_positions_of_new_ops_only(store: Store) -> None:
    assert store.append([]) == []
    first = store.append([(make_op(1, 1), {}), (make_op(1, 2), {})])
    assert len(first) == 2 and first[0] < first[1]
    # One op already held, one new: only the new one gets a position, after the others.
    second = store.append([(make_op(1, 2), {}), (make_op(2, 1), {})])
    assert len(second) == 1 and second[0] > first[1]
    assert store.append([(make_op(1, 1), {}), (make_op(2, 1), {})]) == []


def test_append_is_idempotent(store: Store) -> None:
    op = make_op(7, 1)
    store.append([(op, {})])
    store.append([(op, {})])
    # The same (origin, seq) twice in one batch is stored once too.
    assert len(store.append([(make_op(7, 2), {}), (make_op(7, 2), {})])) == 1
    # A different op with a (origin, seq) already held is a duplicate, not an update.
    store.append([(StoredOp(7, 1, 999, 1, b"other"), {})])
    assert [(o.seq, o.data) for _, o in store.ops_after(0)] == [(1, b"7:1"), (2, b"7:2")]
    assert [o.data for o in store.ops_of(7, 0)] == [b"7:1", b"7:2"]


def test_ops_after_lists_ops_in_log_order_from_a_position(store: Store) -> None:
    ops = [make_op(3, 1), make_op(1, 1), make_op(2, 1), make_op(1, 2), make_op(3, 2)]
    positions = store.append([(op, {}) for op in ops])
    listed = list(store.ops_after(0))
    assert [p for p, _ in listed] == positions
    assert [op for _, op in listed] == ops  # every field round-trips
    assert [op for _, op in store.ops_after(positions[2])] == ops[3:]
    assert list(store.ops_after(positions[-1])) == []


def test_ops_after_keeps_only_ops_touching_the_parts_mask(store: Store) -> None:
    a, b, c = 1 << 1, 1 << 2, 1 << 17
    store.append(
        [
            (make_op(1, 1, parts=a), {}),
            (make_op(1, 2, parts=b), {}),
            (make_op(1, 3, parts=a | c), {}),
            (make_op(1, 4, parts=b | c), {}),
        ]
    )

    def seqs(mask: int, after: int = 0) -> list[int]:
        return [op.seq for _, op in store.ops_after(after, mask)]

    assert seqs(ANY) == [1, 2, 3, 4]
    assert seqs(a) == [1, 3]
    assert seqs(b) == [2, 4]
    assert seqs(c) == [3, 4]
    assert seqs(a | b) == [1, 2, 3, 4]
    assert seqs(1 << 5) == []
    position_of_2 = next(p for p, op in store.ops_after(0) if op.seq == 2)
    assert seqs(a, after=position_of_2) == [3]


def test_ops_of_lists_one_origin_in_seq_order_after_a_seq(store: Store) -> None:
    # Delivered out of order (a relay may do that): listed by seq all the same.
    store.append([(make_op(5, s), {}) for s in (3, 1, 4)])
    store.append([(make_op(6, 2), {}), (make_op(5, 2), {})])
    assert keys(store.ops_of(5, 0)) == [(5, 1), (5, 2), (5, 3), (5, 4)]
    assert keys(store.ops_of(5, 2)) == [(5, 3), (5, 4)]
    assert keys(store.ops_of(5, 4)) == []
    assert keys(store.ops_of(6, 0)) == [(6, 2)]
    assert keys(store.ops_of(8, 0)) == []


def test_get_op_finds_one_op_by_its_id(store: Store) -> None:
    store.append([(make_op(5, s), {}) for s in (3, 1, 4)])
    store.append([(make_op(2**64 - 1, 7), {})])
    found = store.get_op(5, 4)
    assert found is not None and (found.origin, found.seq) == (5, 4)
    assert found == next(op for op in store.ops_of(5, 3))
    high = store.get_op(2**64 - 1, 7)
    assert high is not None and high.origin == 2**64 - 1
    assert store.get_op(5, 2) is None and store.get_op(9, 1) is None


def test_replica_ids_above_two_to_the_63_round_trip(store: Store) -> None:
    # SQLite integers are signed 64-bit: these ids are stored in two's complement.
    origins = [2**63, 2**64 - 1, 2**63 - 1, 0xDEADBEEF_00000001]
    d, data = blob("high")
    store.append([(make_op(o, 1), {d: data} if o == 2**64 - 1 else {}) for o in origins])
    assert [op.origin for _, op in store.ops_after(0)] == origins
    for origin in origins:
        assert keys(store.ops_of(origin, 0)) == [(origin, 1)]
    assert list(store.blobs_of(2**64 - 1, 0)) == [(1, d, data)]
    assert list(store.blobs_of(2**63, 0)) == []


def test_blobs_of_returns_blobs_brought_by_that_origin_after_seq(store: Store) -> None:
    b1, b2, b3, b4 = (blob(f"payload {i}") for i in range(1, 5))
    store.append(
        [
            (make_op(1, 1), dict([b1])),
            (make_op(1, 2), dict([b2, b3])),
            (make_op(2, 1), dict([b4])),
            (make_op(1, 3), {}),
        ]
    )
    assert sorted(store.blobs_of(1, 0)) == sorted([(1, *b1), (2, *b2), (2, *b3)])
    assert sorted(store.blobs_of(1, 1)) == sorted([(2, *b2), (2, *b3)])
    assert list(store.blobs_of(1, 2)) == []
    assert list(store.blobs_of(2, 0)) == [(1, *b4)]
    assert list(store.blobs_of(3, 0)) == []


def test_a_blob_brought_again_keeps_its_first_owner(store: Store) -> None:
    shared = blob("shared payload")
    store.append([(make_op(1, 1), dict([shared]))])
    store.append([(make_op(2, 1), dict([shared])), (make_op(1, 2), dict([shared]))])
    assert list(store.blobs_of(1, 0)) == [(1, *shared)]
    assert list(store.blobs_of(1, 1)) == []
    assert list(store.blobs_of(2, 0)) == []
    assert store.get_blob(shared[0]) == shared[1]


def test_get_blob_and_missing_blobs(store: Store) -> None:
    held = [blob(f"held {i}") for i in range(1200)]  # more than one query's worth in SQLite
    absent = [digest(f"absent {i}".encode()) for i in range(700)]
    store.append([(make_op(1, i + 1), dict(held[i : i + 100])) for i in range(0, 1200, 100)])
    assert all(store.get_blob(d) == data for d, data in held)
    assert store.get_blob(absent[0]) is None
    assert store.missing_blobs([]) == set()
    assert store.missing_blobs(d for d, _ in held) == set()
    assert store.missing_blobs([*absent, *(d for d, _ in held), absent[0]]) == set(absent)


def test_find_blob_by_prefix_finds_none_one_or_two(store: Store) -> None:
    base = bytes(range(1, 17))
    a = (b"\xaa" * 3 + base[3:], b"A")
    b = (b"\xaa" * 3 + b"\x00" + base[4:], b"B")
    c = (b"\xaa" * 3 + b"\xff" + base[4:], b"C")
    lone = (b"\x01\x02" + b"\x00" * 14, b"L")
    store.append([(make_op(1, 1), dict([a, b, lone])), (make_op(1, 2), dict([c]))])
    assert store.find_blob(b"\x55") == []
    assert store.find_blob(b"\x01") == [lone]
    assert store.find_blob(lone[0]) == [lone]
    assert store.find_blob(a[0]) == [a]
    assert store.find_blob(a[0][:8]) == [a]  # a longer prefix tells a from b and c
    # An ambiguous prefix: at most two answers, enough to say it is ambiguous.
    found = store.find_blob(b"\xaa\xaa\xaa")
    assert len(found) == 2
    assert set(found) <= {a, b, c}
    assert store.find_blob(b"\xaa\xaa\xaa\x00") == [b]


def test_snapshot_is_none_until_put_then_replaced(store: Store) -> None:
    assert store.snapshot() is None
    store.put_snapshot(Snapshot(3, b"first"))
    assert store.snapshot() == Snapshot(3, b"first")
    store.put_snapshot(Snapshot(9, b"second"))
    assert store.snapshot() == Snapshot(9, b"second")


# -- SQLite only: a file ----------------------------------------------------------------------
def fill(path: Path, ops: int = 300, seed: int = 0) -> tuple[list[StoredOp], dict[bytes, bytes]]:
    """A closed store of ``ops`` ops of two replicas, each op bringing one blob."""
    rng = random.Random(seed)
    stored, blobs = [], {}
    s = SQLiteStore(path)
    s.set_meta("run", "r1")
    for i in range(1, ops + 1):
        origin = 2**64 - 1 if i % 2 else 1
        op = StoredOp(origin, (i + 1) // 2, i, 1 << (i % 17), rng.randbytes(200))
        data = rng.randbytes(300)
        s.append([(op, {digest(data): data})])
        stored.append(op)
        blobs[digest(data)] = data
    s.put_snapshot(Snapshot(ops // 2, b"snapshot bytes"))
    s.close()
    return stored, blobs


def test_sqlite_keeps_everything_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.convergent"
    ops, blobs = fill(path)
    s = SQLiteStore(path)
    try:
        assert s.get_meta("run") == "r1"
        assert [op for _, op in s.ops_after(0)] == ops
        assert s.snapshot() == Snapshot(150, b"snapshot bytes")
        assert all(s.get_blob(d) == data for d, data in blobs.items())
        # Appending goes on after the ops already there.
        last = max(p for p, _ in s.ops_after(0))
        assert s.append([(make_op(9, 1), {})]) == [last + 1]
    finally:
        s.close()


def test_sqlite_refuses_a_file_open_in_another_store(tmp_path: Path) -> None:
    path = tmp_path / "s.convergent"
    first = SQLiteStore(path)
    try:
        first.append([(make_op(1, 1), {})])
        with pytest.raises(StorageError, match="open in another process") as err:
            SQLiteStore(path)
        assert str(path) in str(err.value)
        # The refused open did not disturb the holder.
        first.append([(make_op(1, 2), {})])
    finally:
        first.close()
    second = SQLiteStore(path)
    try:
        assert keys(second.ops_of(1, 0)) == [(1, 1), (1, 2)]
    finally:
        second.close()


def test_sqlite_refuses_random_garbage_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.convergent"
    garbage = random.Random(1).randbytes(10_000)
    path.write_bytes(garbage)
    with pytest.raises(StorageError, match="is not a readable convergent store") as err:
        SQLiteStore(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == garbage


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.97])
def test_sqlite_refuses_a_truncated_store(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "s.convergent"
    fill(path)
    size = path.stat().st_size
    assert size > 100_000  # a few hundred ops with blobs: many pages to lose
    with path.open("r+b") as f:
        f.truncate(int(size * keep))
    with pytest.raises(StorageError, match=r"is damaged|is not a readable convergent store") as err:
        SQLiteStore(path)
    assert str(path) in str(err.value)


def test_sqlite_refuses_an_sqlite_file_of_another_kind(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE songs (title TEXT, year INTEGER)")
        db.execute("INSERT INTO songs VALUES ('x', 1999)")
    db.close()
    with pytest.raises(StorageError, match="is an SQLite file but not a convergent store"):
        SQLiteStore(path)
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert tables == {"songs"}  # nothing of ours was added to it


def test_sqlite_refuses_a_store_of_another_format(tmp_path: Path) -> None:
    path = tmp_path / "s.convergent"
    fill(path, ops=3)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'convergent-store-99' WHERE key = 'format'")
    db.close()
    with pytest.raises(StorageError, match="has format 'convergent-store-99'"):
        SQLiteStore(path)


def flip(data: bytes) -> bytes:
    return bytes(x ^ 0xFF for x in data)


def test_sqlite_reports_an_op_whose_bytes_changed_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "s.convergent"
    fill(path)
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM ops WHERE origin = 1 AND seq = 100").fetchone()
        db.execute("UPDATE ops SET data = ? WHERE origin = 1 AND seq = 100", (flip(data),))
    db.close()
    s = SQLiteStore(path)  # the file itself is sound; the op's CRC tells
    try:
        with pytest.raises(StorageError, match="op 100 of replica 0000000000000001 is damaged"):
            list(s.ops_after(0))
        with pytest.raises(StorageError, match="is damaged"):
            list(s.ops_of(1, 0))
        assert len(list(s.ops_of(1, 100))) == 50  # the ops after it still read
    finally:
        s.close()


def test_sqlite_reports_a_snapshot_whose_bytes_changed_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "s.convergent"
    fill(path, ops=3)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE snapshot SET data = ?", (flip(b"snapshot bytes"),))
    db.close()
    s = SQLiteStore(path)
    try:
        with pytest.raises(StorageError, match="the snapshot is damaged"):
            s.snapshot()
    finally:
        s.close()


def test_sqlite_close_is_idempotent_and_a_closed_store_refuses_use(tmp_path: Path) -> None:
    path = tmp_path / "s.convergent"
    s = SQLiteStore(path)
    s.append([(make_op(1, 1), {})])
    s.close()
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.get_meta("format")
    with pytest.raises(StorageError, match="closed"):
        s.append([(make_op(1, 2), {})])
    # Closing released the file.
    again = SQLiteStore(path)
    again.close()
    again.close()


def test_sqlite_refuses_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "keep").write_text("a file so the folder is not empty")
    with pytest.raises(StorageError, match="is a folder"):
        SQLiteStore(folder)


def test_sqlite_copy_of_a_closed_store_is_a_whole_store(tmp_path: Path) -> None:
    # Closing checkpoints the write-ahead log into the file: the file alone is the store.
    path = tmp_path / "s.convergent"
    ops, _ = fill(path, ops=40)
    assert not (tmp_path / "s.convergent-wal").exists()
    copy = tmp_path / "copy.convergent"
    shutil.copy(path, copy)
    s = SQLiteStore(copy)
    try:
        assert [op for _, op in s.ops_after(0)] == ops
    finally:
        s.close()
