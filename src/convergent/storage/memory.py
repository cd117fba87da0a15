"""`MemoryStore`: the `Store` contract in process memory (tests, scratch runs)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence

from convergent.storage.base import Snapshot, StoredOp


class MemoryStore:
    """A store that lives as long as the process.

    Example:
        >>> store = MemoryStore()
        >>> store.append([(StoredOp(1, 1, 0, 1, b"op"), {b"d": b"blob"})])
        [1]
        >>> [op.data for _, op in store.ops_after(0)], store.get_blob(b"d")
        ([b'op'], b'blob')
    """

    def __init__(self) -> None:
        self._meta: dict[str, str] = {}
        self._ops: list[StoredOp] = []
        self._held: set[tuple[int, int]] = set()
        self._by_origin: dict[int, list[StoredOp]] = {}  # sorted by seq
        self._seqs: dict[int, list[int]] = {}  # the same seqs, for bisect
        self._blobs_by_origin: dict[int, list[tuple[int, bytes]]] = {}
        self._blobs: dict[bytes, tuple[int, int, bytes]] = {}
        self._by_prefix: dict[bytes, list[bytes]] = {}  # first 8 bytes -> digests
        self._snapshot: Snapshot | None = None

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._meta[key] = value

    def append(self, batch: Sequence[tuple[StoredOp, Mapping[bytes, bytes]]]) -> list[int]:
        positions = []
        for op, blobs in batch:
            if (op.origin, op.seq) in self._held:
                continue
            self._held.add((op.origin, op.seq))
            self._ops.append(op)
            mine = self._by_origin.setdefault(op.origin, [])
            seqs = self._seqs.setdefault(op.origin, [])
            at = bisect.bisect(seqs, op.seq)  # appends at the end unless out of order
            mine.insert(at, op)
            seqs.insert(at, op.seq)
            positions.append(len(self._ops))
            for digest, data in blobs.items():
                if digest not in self._blobs:
                    self._blobs[digest] = (op.origin, op.seq, bytes(data))
                    self._by_prefix.setdefault(digest[:8], []).append(digest)
                    # Kept in seq order (an op's own blobs in arrival order), so a read of
                    # the blobs after a seq starts there.
                    of_origin = self._blobs_by_origin.setdefault(op.origin, [])
                    bisect.insort_right(of_origin, (op.seq, digest), key=_seq)
        return positions

    def ops_after(self, position: int, parts: int = -1) -> Iterator[tuple[int, StoredOp]]:
        for i in range(max(position, 0), len(self._ops)):
            op = self._ops[i]
            if op.parts & parts:
                yield i + 1, op

    def get_op(self, origin: int, seq: int) -> StoredOp | None:
        seqs = self._seqs.get(origin, [])
        at = bisect.bisect_left(seqs, seq)
        return self._by_origin[origin][at] if at < len(seqs) and seqs[at] == seq else None

    def ops_of(self, origin: int, after_seq: int) -> Iterator[StoredOp]:
        start = bisect.bisect(self._seqs.get(origin, []), after_seq)
        return iter(self._by_origin.get(origin, [])[start:])

    def blobs_of(self, origin: int, after_seq: int) -> Iterator[tuple[int, bytes, bytes]]:
        mine = self._blobs_by_origin.get(origin, [])
        for seq, digest in mine[bisect.bisect_right(mine, after_seq, key=_seq) :]:
            yield seq, digest, self._blobs[digest][2]

    def get_blob(self, digest: bytes) -> bytes | None:
        held = self._blobs.get(digest)
        return None if held is None else held[2]

    def find_blob(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        short = len(prefix) < 8
        candidates = list(self._blobs) if short else self._by_prefix.get(prefix[:8], [])
        found = sorted(d for d in candidates if d.startswith(prefix))[:2]
        return [(d, self._blobs[d][2]) for d in found]

    def missing_blobs(self, digests: Iterable[bytes]) -> set[bytes]:
        return {d for d in digests if d not in self._blobs}

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def put_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def close(self) -> None:
        pass


def _seq(entry: tuple[int, bytes]) -> int:
    return entry[0]
