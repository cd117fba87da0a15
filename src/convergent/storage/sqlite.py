"""`SQLiteStore`: the embedded default store, one run per file.

SQLite in WAL mode with ``synchronous=NORMAL``: a commit is in the write-ahead log before
`append` returns, so a process killed at any moment keeps every append that returned (power
loss may lose the last few; ``durability="full"`` syncs every commit too). Every op and the
snapshot carry a CRC32 and blobs are checked against their digest when read, so a damaged file
raises `StorageError` instead of opening as a silently smaller run. One process at a time
holds a file (an advisory lock beside SQLite's own).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from convergent.errors import StorageError
from convergent.storage.base import Snapshot, StoredOp

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's own locking still applies
    fcntl = None  # type: ignore[assignment]

FORMAT = "convergent-store-1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ops (
    pos INTEGER PRIMARY KEY,
    origin INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (origin, seq)
);
CREATE TABLE IF NOT EXISTS blobs (
    digest BLOB PRIMARY KEY,
    origin INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_by_op ON blobs (origin, seq);
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""

_U64 = 1 << 64
_I64 = 1 << 63


def _signed(u: int) -> int:
    """SQLite integers are signed 64-bit: store replica ids (u64) in two's complement."""
    return u - _U64 if u >= _I64 else u


def _unsigned(s: int) -> int:
    return s + _U64 if s < 0 else s


class SQLiteStore:
    """A run stored in one SQLite file.

    Args:
        path: the file; created (with its folder) if missing.
        durability: ``"normal"`` survives a killed process, ``"full"`` also power loss.
        check: run SQLite's ``quick_check`` when opening (a truncated or overwritten file is
            reported at once rather than at the first damaged page).

    Raises:
        StorageError: the file is not a convergent store, is damaged, or is open in another
            process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Literal["normal", "full"] = "normal",
        check: bool = True,
    ) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self._open(durability, check)
        except BaseException:
            self.close()
            raise

    def _fail(self, what: str, err: BaseException | None = None) -> StorageError:
        detail = f": {err}" if err is not None else ""
        return StorageError(f"{self.path}: {what}{detail}")

    def _open(self, durability: str, check: bool) -> None:
        if self.path.is_dir():
            raise self._fail("is a folder, not a store file")
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            if fresh:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._fail("cannot be created or opened", err) from None
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._fail("is open in another process; close it there first") from None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db = db
            if not fresh:
                # Look before writing anything: a file that is not ours is left untouched.
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
                if "meta" not in tables or "ops" not in tables:
                    raise self._fail("is an SQLite file but not a convergent store")
                row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                if row is None:
                    raise self._fail("has no format marker: not a convergent store")
                if row[0] != FORMAT:
                    raise self._fail(f"has format {row[0]!r}; this build reads {FORMAT!r}")
                if check:
                    verdict = db.execute("PRAGMA quick_check").fetchone()[0]
                    if verdict != "ok":
                        raise self._fail(f"is damaged (SQLite quick_check: {verdict})")
            else:
                # Replaced snapshots leave free pages; let close() hand them back.
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            if fresh:
                # Tables and format marker in one transaction: a file is ours or it is empty.
                db.executescript(
                    f"BEGIN;{_SCHEMA}INSERT INTO meta VALUES ('format', '{FORMAT}');COMMIT;"
                )
            self._check_identity()
        except sqlite3.DatabaseError as err:
            raise self._fail("is not a readable convergent store", err) from None

    def _check_identity(self) -> None:
        """A copied file (another inode than the one it was created as) is another replica:
        forget the stored replica id, so the copy takes a new one. Two files writing ops
        under one replica id would each believe it holds the other's ops (DESIGN: a replica
        id is never reused)."""
        st = os.stat(self.path)
        here = f"{st.st_dev}:{st.st_ino}"
        db = self.db
        row = db.execute("SELECT value FROM meta WHERE key = 'file'").fetchone()
        if row is None or row[0] != here:
            db.execute("BEGIN IMMEDIATE")
            if row is not None:
                db.execute("DELETE FROM meta WHERE key = 'replica'")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('file', ?)", (here,))
            db.execute("COMMIT")

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"{self.path}: the store is closed")
        return self._db

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise self._fail("read failed", err) from None

    # -- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        try:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        except sqlite3.DatabaseError as err:
            raise self._fail("write failed", err) from None

    # -- ops and blobs ---------------------------------------------------------------------
    def append(self, batch: Sequence[tuple[StoredOp, Mapping[bytes, bytes]]]) -> list[int]:
        db = self.db
        positions = []
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for op, blobs in batch:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO ops (origin, seq, hlc, parts, crc, data) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            _signed(op.origin),
                            op.seq,
                            op.hlc,
                            op.parts,
                            zlib.crc32(op.data),
                            op.data,
                        ),
                    )
                    if not cur.rowcount:
                        continue
                    positions.append(cur.lastrowid)
                    if blobs:
                        owner = (_signed(op.origin), op.seq)
                        db.executemany(
                            "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)",
                            # In key order: appends to the B-tree instead of random inserts.
                            ((d, *owner, blobs[d]) for d in sorted(blobs)),
                        )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as err:
            raise self._fail("write failed", err) from None
        return [p for p in positions if p is not None]

    def _op(self, row: tuple[int, int, int, int, int, int, bytes]) -> tuple[int, StoredOp]:
        pos, origin, seq, hlc, parts, crc, data = row
        if zlib.crc32(data) != crc:
            raise self._fail(f"op {seq} of replica {_unsigned(origin):016x} is damaged (CRC)")
        return pos, StoredOp(_unsigned(origin), seq, hlc, parts, bytes(data))

    def ops_after(self, position: int, parts: int = -1) -> Iterator[tuple[int, StoredOp]]:
        rows = self._query(
            "SELECT pos, origin, seq, hlc, parts, crc, data FROM ops "
            "WHERE pos > ? AND (parts & ?) != 0 ORDER BY pos",
            (position, parts),
        )
        return (self._op(r) for r in rows)

    def get_op(self, origin: int, seq: int) -> StoredOp | None:
        rows = self._query(
            "SELECT pos, origin, seq, hlc, parts, crc, data FROM ops WHERE origin = ? AND seq = ?",
            (_signed(origin), seq),
        )
        return self._op(rows[0])[1] if rows else None

    def ops_of(self, origin: int, after_seq: int) -> Iterator[StoredOp]:
        rows = self._query(
            "SELECT pos, origin, seq, hlc, parts, crc, data FROM ops "
            "WHERE origin = ? AND seq > ? ORDER BY seq",
            (_signed(origin), after_seq),
        )
        return (self._op(r)[1] for r in rows)

    def blobs_of(self, origin: int, after_seq: int) -> Iterator[tuple[int, bytes, bytes]]:
        rows = self._query(
            "SELECT seq, digest, data FROM blobs WHERE origin = ? AND seq > ?",
            (_signed(origin), after_seq),
        )
        return ((seq, bytes(d), bytes(data)) for seq, d, data in rows)

    def get_blob(self, digest: bytes) -> bytes | None:
        rows = self._query("SELECT data FROM blobs WHERE digest = ?", (digest,))
        return bytes(rows[0][0]) if rows else None

    def find_blob(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        # Digests are 16 bytes: every digest with this prefix sorts in [prefix, prefix+ff..].
        hi = prefix + b"\xff" * (16 - len(prefix))
        rows = self._query(
            "SELECT digest, data FROM blobs WHERE digest >= ? AND digest <= ? "
            "ORDER BY digest LIMIT 2",
            (prefix, hi),
        )
        return [(bytes(d), bytes(data)) for d, data in rows]

    def missing_blobs(self, digests: Iterable[bytes]) -> set[bytes]:
        wanted = set(digests)
        held: set[bytes] = set()
        todo = list(wanted)
        for i in range(0, len(todo), 500):
            chunk = todo[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(f"SELECT digest FROM blobs WHERE digest IN ({marks})", chunk)
            held.update(bytes(r[0]) for r in rows)
        return wanted - held

    # -- snapshot --------------------------------------------------------------------------
    def snapshot(self) -> Snapshot | None:
        rows = self._query("SELECT pos, crc, data FROM snapshot WHERE id = 1")
        if not rows:
            return None
        pos, crc, data = rows[0]
        if zlib.crc32(data) != crc:
            raise self._fail("the snapshot is damaged (CRC)")
        return Snapshot(pos, bytes(data))

    def put_snapshot(self, snapshot: Snapshot) -> None:
        try:
            self.db.execute(
                "INSERT OR REPLACE INTO snapshot VALUES (1, ?, ?, ?)",
                (snapshot.position, zlib.crc32(snapshot.data), snapshot.data),
            )
        except sqlite3.DatabaseError as err:
            raise self._fail("write failed", err) from None

    def size_on_disk(self) -> int:
        """Bytes of the store file and its write-ahead log."""
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def close(self) -> None:
        if self._db is not None:
            # A damaged or read-only file: closing must still release it.
            with contextlib.suppress(sqlite3.DatabaseError):
                # executescript steps the pragma to the end (execute frees one page).
                self._db.executescript("PRAGMA incremental_vacuum;")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
