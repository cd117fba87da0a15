"""`AppendLog`: per-writer grow-only logs of numeric rows, stored in columns.

Each writer only ever appends to its own log, so every replica holds a *prefix* of each
writer's log (plus, while deltas arrive out of order, fragments beyond the prefix). Join is
the union of rows by (writer, index); no two writers ever conflict. Rows live in numpy columns
that grow by doubling, so appending is amortized O(rows) and reading a metric is a slice.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from convergent.crdt.base import Actor, Crdt

DEFAULT_FIELDS: tuple[tuple[str, str], ...] = (("step", "i8"), ("time", "i8"), ("value", "f8"))


@functools.lru_cache(maxsize=64)
def _normalized(fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Check the field types; one spelling per dtype ("int64", "<i8" -> "i8"), so equal
    schemas compare equal. Cached: every delta of a log repeats its schema."""
    for name, dtype in fields:
        if np.dtype(dtype).kind not in "if" or np.dtype(dtype).itemsize != 8:
            raise TypeError(f"field {name!r}: AppendLog fields are i8 or f8, not {dtype}")
    return tuple((name, np.dtype(dtype).str[1:]) for name, dtype in fields)


class Segment:
    """Rows ``start .. start+len`` of one writer's log, in growable columns."""

    __slots__ = ("cols", "n", "start")

    def __init__(self, start: int, cols: dict[str, NDArray[Any]], n: int | None = None) -> None:
        self.start = start
        self.cols = cols
        self.n = len(next(iter(cols.values()))) if n is None else n

    @property
    def end(self) -> int:
        return self.start + self.n

    def view(self, name: str) -> NDArray[Any]:
        return self.cols[name][: self.n]

    def extend(self, other: Segment) -> None:
        """Append the part of ``other`` beyond our end (``other.start <= self.end``)."""
        skip = self.end - other.start
        k = other.n - skip
        if k <= 0:
            return
        need = self.n + k
        for name in list(self.cols):
            col = self.cols[name]
            if need > len(col):
                # Doubling keeps appends amortized O(rows): strictly linear in total.
                grown = np.empty(max(need, 2 * len(col), 16), dtype=col.dtype)
                grown[: self.n] = col[: self.n]
                self.cols[name] = col = grown
            col[self.n : need] = other.cols[name][skip : skip + k]
        self.n = need

    def copy(self) -> Segment:
        return Segment(self.start, {k: self.view(k).copy() for k in self.cols}, self.n)


class AppendLog(Crdt):
    """Per-writer append-only logs with fixed numeric fields.

    Args:
        fields: ``(name, numpy dtype string)`` pairs; ints are ``"i8"``, floats ``"f8"``.

    Example:
        >>> from convergent.crdt import Actor, ReplicaId
        >>> me = Actor(ReplicaId(1))
        >>> log = AppendLog.initial()
        >>> rows = {"step": [1, 2], "time": [0, 0], "value": [0.9, 0.7]}
        >>> log.join_inplace(log.append_many(rows, by=me))
        >>> log.column("value").tolist()
        [0.9, 0.7]
    """

    __slots__ = ("fields", "logs")
    type_name = "AppendLog"

    def __init__(
        self,
        fields: tuple[tuple[str, str], ...] = DEFAULT_FIELDS,
        logs: dict[int, list[Segment]] | None = None,
    ) -> None:
        self.fields = _normalized(fields)
        # writer -> segments sorted by start, disjoint and non-adjacent; the first one is the
        # prefix when it starts at 0.
        self.logs: dict[int, list[Segment]] = logs if logs is not None else {}

    @classmethod
    def initial(cls) -> Self:
        return cls()

    def _empty_cols(self, n: int) -> dict[str, NDArray[Any]]:
        return {name: np.empty(n, dtype=dtype) for name, dtype in self.fields}

    def length(self, writer: int) -> int:
        """How many rows of ``writer``'s log this replica holds contiguously from the start."""
        segs = self.logs.get(writer)
        return segs[0].end if segs and segs[0].start == 0 else 0

    # -- mutators -------------------------------------------------------------------------
    def append(self, row: Mapping[str, float], *, by: Actor) -> Self:
        """Delta appending one row (a mapping with every field)."""
        return self.append_many({k: [v] for k, v in row.items()}, by=by)

    def append_many(self, columns: Mapping[str, Any], *, by: Actor) -> Self:
        """Delta appending many rows given as columns (arrays or sequences of equal length)."""
        names = [name for name, _ in self.fields]
        if set(columns) != set(names):
            raise ValueError(
                f"AppendLog rows need exactly the fields {names}, got {sorted(columns)}"
            )
        cols = {
            name: np.array(columns[name], dtype=dtype, copy=True).reshape(-1)
            for name, dtype in self.fields
        }
        lengths = {len(c) for c in cols.values()}
        if len(lengths) != 1:
            raise ValueError("AppendLog columns must have equal lengths")
        out = type(self)(self.fields)
        if lengths.pop():
            out.logs[by.replica] = [Segment(self.length(by.replica), cols)]
        return out

    # -- lattice --------------------------------------------------------------------------
    def join_inplace(self, other: Self) -> None:
        if other.fields != self.fields:
            raise TypeError("cannot join AppendLogs with different fields")
        for writer, segs in other.logs.items():
            mine = self.logs.setdefault(writer, [])
            for seg in segs:
                _merge_segment(mine, seg)

    def copy(self) -> Self:
        return type(self)(
            self.fields, {w: [s.copy() for s in segs] for w, segs in self.logs.items()}
        )

    # -- reading --------------------------------------------------------------------------
    def writers(self) -> list[int]:
        return sorted(self.logs)

    def rows_of(self, writer: int, name: str) -> NDArray[Any]:
        """The contiguous prefix of ``writer``'s log, one field."""
        segs = self.logs.get(writer)
        if not segs or segs[0].start != 0:
            return np.empty(0, dtype=dict(self.fields)[name])
        return segs[0].view(name)

    def column(self, name: str) -> NDArray[Any]:
        """One field across writers (in writer order, each writer's rows in log order)."""
        parts = [self.rows_of(w, name) for w in self.writers()]
        if not parts:
            return np.empty(0, dtype=dict(self.fields)[name])
        return np.concatenate(parts)

    def value(self) -> dict[str, NDArray[Any]]:
        return {name: self.column(name) for name, _ in self.fields}

    def __len__(self) -> int:
        return sum(self.length(w) for w in self.logs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AppendLog):
            return NotImplemented
        if self.fields != other.fields or self.logs.keys() != other.logs.keys():
            return False
        for w, segs in self.logs.items():
            theirs = other.logs[w]
            if len(segs) != len(theirs):
                return False
            for a, b in zip(segs, theirs, strict=True):
                if a.start != b.start or a.n != b.n:
                    return False
                for name, _ in self.fields:
                    # Compare bits, so NaN equals NaN and -0.0 differs from 0.0.
                    if a.view(name).tobytes() != b.view(name).tobytes():
                        return False
        return True

    def __repr__(self) -> str:
        return f"AppendLog({len(self)} rows from {len(self.logs)} writers)"


def _merge_segment(segs: list[Segment], seg: Segment) -> None:
    """Union ``seg`` into sorted disjoint non-adjacent ``segs`` (copying, never aliasing)."""
    if seg.n == 0:
        return
    if segs and segs[-1].start <= seg.start <= segs[-1].end:
        segs[-1].extend(seg)
        return
    i = 0
    while i < len(segs) and segs[i].end < seg.start:
        i += 1
    if i == len(segs) or segs[i].start > seg.end:
        segs.insert(i, seg.copy())
        return
    # seg touches segs[i] (and maybe later ones): rebuild the merged run from the left.
    first = segs[i]
    if seg.start < first.start:
        merged = seg.copy()
        merged.extend(first)
    else:
        merged = first
        merged.extend(seg)
    j = i + 1
    while j < len(segs) and segs[j].start <= merged.end:
        merged.extend(segs[j])
        j += 1
    segs[i:j] = [merged]
