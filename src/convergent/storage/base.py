"""The `Store` contract: what a replica needs to be durable.

A store keeps one run's **op log** (every operation ever applied, as encoded bytes, keyed by
its origin replica and that replica's sequence number), one **snapshot** (the joined state up
to a log position, so a reopen replays only the tail) and the **blobs** (content-addressed
payloads: sample data, checkpoints). Appending a batch of ops with their blobs is one atomic
commit; appending an op that is already stored is a no-op, so replaying a delivery twice is
harmless, like joining a delta twice.

Every backend runs the same contract tests (``tests/test_storage.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredOp:
    """One operation as stored: who made it (origin replica, its sequence number), when
    (HLC), which parts of the document it touches (a bit mask) and its encoded bytes."""

    origin: int
    seq: int
    hlc: int
    parts: int
    data: bytes


@dataclass(frozen=True)
class Snapshot:
    """The encoded joined state of every op stored at or before log position ``position``."""

    position: int
    data: bytes


class Store(Protocol):
    """One run's durable op log, snapshot and blobs."""

    def get_meta(self, key: str) -> str | None:
        """A stored setting (run id, replica id, format version), or ``None``."""

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting (committed at once)."""

    def append(self, batch: Sequence[tuple[StoredOp, Mapping[bytes, bytes]]]) -> list[int]:
        """Commit ops, each with the blobs it brought (digest -> bytes), atomically.

        Ops and blobs already held are skipped. Returns the log positions of the new ops. A
        blob belongs to the op that first brought it and travels with that op when exported.
        """

    def ops_after(self, position: int, parts: int = -1) -> Iterator[tuple[int, StoredOp]]:
        """``(position, op)`` for every op after ``position`` touching any of ``parts``."""

    def get_op(self, origin: int, seq: int) -> StoredOp | None:
        """One op by its id, or ``None``."""

    def ops_of(self, origin: int, after_seq: int) -> Iterator[StoredOp]:
        """The ops of ``origin`` with a sequence number above ``after_seq``, in order."""

    def blobs_of(self, origin: int, after_seq: int) -> Iterator[tuple[int, bytes, bytes]]:
        """``(seq, digest, data)`` of blobs brought by ops of ``origin`` after ``after_seq``."""

    def get_blob(self, digest: bytes) -> bytes | None:
        """A blob's bytes, or ``None`` if this store does not hold it."""

    def find_blob(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """``(digest, data)`` of the blobs whose digest starts with ``prefix`` (at most two:
        one is an answer, two say the prefix is ambiguous)."""

    def missing_blobs(self, digests: Iterable[bytes]) -> set[bytes]:
        """Which of ``digests`` this store does not hold."""

    def snapshot(self) -> Snapshot | None:
        """The latest snapshot, if any."""

    def put_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the snapshot (committed at once)."""

    def close(self) -> None:
        """Release the store (idempotent)."""
