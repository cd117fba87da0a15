"""``run.history()``: who changed what, when, and at which training step it took effect.

History is a query over the op log, not a second log: every op carries its author (origin
replica) and HLC, and every register write names, in its causal context, the writes it saw
and replaced. So "old" is what the author saw when they wrote (the same on every replica,
whatever order the ops arrived in), "new" is what they wrote, and the step comes from the
trainer's ``applied`` records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from convergent.crdt import RGA, AWSet, MVRegister, ORMap
from convergent.crdt.clock import wall_ms
from convergent.crdt.values import Value
from convergent.errors import DecodeError, SchemaError, StorageError
from convergent.run.config import applied_key
from convergent.run.dataset import format_id, resolved_values
from convergent.run.ops import Op, Part, decode_op

if TYPE_CHECKING:
    from convergent.run.document import Run

# The part names people filter by, and the CRDT parts behind each.
GROUPS: dict[str, tuple[Part, ...]] = {
    "config": (Part.CONFIG,),
    "schema": (Part.SCHEMA,),
    "dataset": (Part.SAMPLES, Part.LABELS, Part.SPLITS, Part.TAGS),
    "notes": (Part.COMMENTS, Part.DESCRIPTION),
    "checkpoints": (Part.CHECKPOINTS,),
    "control": (Part.CONTROL, Part.COMMANDS),
    "members": (Part.MEMBERS,),
}
_GROUP_OF = {p: g for g, parts in GROUPS.items() for p in parts}
_REGISTER_PARTS = (
    Part.CONFIG,
    Part.SCHEMA,
    Part.LABELS,
    Part.SPLITS,
    Part.CHECKPOINTS,
    Part.CONTROL,
    Part.MEMBERS,
)
# A bulk op (an import of 100,000 labels) is one summary entry, not 100,000 entries.
ITEMIZE_UP_TO = 20


@dataclass(frozen=True)
class HistoryEntry:
    """One change: ``what`` says it in words; ``old``/``new`` are the values for a key."""

    hlc: int
    author: int
    user: str
    part: str
    key: str | None
    old: Value
    new: Value
    what: str
    step: int | None = None

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(wall_ms(self.hlc) / 1000, UTC)

    def __str__(self) -> str:
        at = f" (in effect at step {self.step:,})" if self.step is not None else ""
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.user}: {self.what}{at}"


def _register_rows(delta: ORMap) -> Iterator[tuple[Any, int, int, Value]]:
    """``(key, replica, counter, value)`` of every register entry in a delta."""
    rows = delta.store.rows()
    if not len(rows):
        return
    assert rows.values is not None
    yield from zip(rows.keys, rows.reps.tolist(), rows.ctrs.tolist(), rows.values, strict=True)


def history(
    run: Run, part: str | None, key: str | int | None, limit: int | None
) -> list[HistoryEntry]:
    if limit is not None and (type(limit) is not int or limit < 0):
        raise SchemaError(f"a history limit is an int >= 0, not {limit!r}")
    if part is not None and part not in GROUPS:
        raise SchemaError(f"unknown part {part!r}; one of {', '.join(GROUPS)}")
    wanted = GROUPS[part] if part is not None else tuple(_GROUP_OF)
    mask = sum(p.bit for p in wanted)
    with run._lock:
        ops = []
        for position, stored in run._store.ops_after(0, mask):
            try:
                ops.append(decode_op(stored.data))
            except DecodeError as err:
                raise StorageError(f"op at log position {position} cannot be read: {err}") from None
        applied = resolved_values(run._state(Part.APPLIED))
        # A config key nobody wrote before reads its default: that is what a first write
        # replaces ("lr: 0.1 -> 0.02"), not nothing.
        defaults = {k: p.default for k, p in run.schema.items()}
        names = {rid: run.members.name_of(rid) for rid in {op.origin for op in ops}}
    # Pass 1: what every register write and every set add wrote, by dot.
    written: dict[tuple[Part, int, int], tuple[Any, Value, int]] = {}
    for op in ops:
        for p, delta in op.deltas.items():
            if p in _REGISTER_PARTS and isinstance(delta, ORMap):
                for k, rep, ctr, v in _register_rows(delta):
                    written[(p, rep, ctr)] = (k, v, op.hlc)
            elif p is Part.SAMPLES and isinstance(delta, AWSet):
                rows = delta.store.rows()
                for k, rep, ctr in zip(
                    rows.keys, rows.reps.tolist(), rows.ctrs.tolist(), strict=True
                ):
                    written[(p, rep, ctr)] = (k, True, op.hlc)
    # Pass 2: one entry per change, in HLC order (then origin, seq: a total order).
    ops.sort(key=lambda op: (op.hlc, op.origin, op.seq))
    out: list[HistoryEntry] = []
    for op in ops:
        for p, delta in op.deltas.items():
            if p in wanted:
                out.extend(_describe(op, p, delta, written, applied, names[op.origin], defaults))
    if key is not None:
        text = format_id(key) if isinstance(key, int) else str(key)
        out = [e for e in out if e.key == text]
    return out[len(out) - limit :] if limit is not None else out


_SAMPLE_KEYED = (Part.SAMPLES, Part.LABELS, Part.SPLITS, Part.TAGS)


def _entry(
    op: Op, p: Part, user: str, key: Any, old: Value, new: Value, what: str, step: int | None = None
) -> HistoryEntry:
    return HistoryEntry(
        op.hlc, op.origin, user, _GROUP_OF[p], _key_text(p, key), old, new, what, step
    )


def _key_text(p: Part, key: Any) -> str | None:
    if key is None:
        return None
    return format_id(key) if p in _SAMPLE_KEYED and isinstance(key, int) else str(key)


def _show(v: Value, p: Part | None = None) -> str:
    """A value as a person reads it in a history line."""
    if isinstance(v, tuple):
        if p is Part.SCHEMA and len(v) == 8:
            kind, default, lo, hi = (_show(x) for x in v[:4])
            bounds = f" in [{lo}, {hi}]" if v[2] is not None or v[3] is not None else ""
            return f"{kind}, default {default}{bounds}"
        if p is Part.MEMBERS and len(v) == 2:
            return f"{_show(v[0])} ({_show(v[1])})"
        if p is Part.CHECKPOINTS and len(v) == 5 and type(v[0]) is int and type(v[2]) is int:
            return f"step {v[0]:,}, {v[2]:,} bytes"
        if p is Part.COMMANDS and len(v) == 2:
            return _show(v[0]) if v[1] is None else f"{_show(v[0])} {_show(v[1])}"
        return "(" + ", ".join(_show(x) for x in v) + ")"
    return repr(v) if isinstance(v, str | bytes) else str(v)


def _describe(
    op: Op,
    p: Part,
    delta: Any,
    written: dict[tuple[Part, int, int], tuple[Any, Value, int]],
    applied: dict[Any, Value],
    user: str,
    defaults: dict[str, Value],
) -> Iterator[HistoryEntry]:
    noun = {
        Part.CONFIG: "",
        Part.SCHEMA: "declared ",
        Part.LABELS: "label of ",
        Part.SPLITS: "split of ",
        Part.CHECKPOINTS: "checkpoint ",
        Part.CONTROL: "",
        Part.MEMBERS: "member ",
    }
    if p in _REGISTER_PARTS:
        assert isinstance(delta, ORMap)
        rows = list(_register_rows(delta))
        keys = {k for k, *_ in rows}
        ctx = delta.context
        if len(keys) > ITEMIZE_UP_TO:
            yield _entry(
                op,
                p,
                user,
                None,
                None,
                len(keys),
                f"set {len(keys):,} {_GROUP_OF[p]} values ({noun[p].strip() or 'keys'})",
            )
            return
        if rows:
            for k, rep, ctr, v in rows:
                if rep != op.origin:
                    continue
                # What the author saw and replaced, oldest write first.
                seen = (
                    [
                        (w[2], d[0], w[1])
                        for d in ctx.dots()
                        if (w := written.get((p, *d))) and w[0] == k and d != (rep, ctr)
                    ]
                    if ctx.dot_count() <= 64
                    else []
                )
                olds = [v for _, _, v in sorted(seen, key=lambda s: s[:2])]
                old = olds[-1] if len(olds) == 1 else (tuple(olds) if olds else None)
                if not olds and p is Part.CONFIG and k in defaults:
                    old = defaults[k]
                    olds = [old]
                step = applied.get(applied_key(rep, ctr)) if p is Part.CONFIG else None
                arrow = f"{_show(old, p)} → {_show(v, p)}" if olds else _show(v, p)
                yield _entry(
                    op,
                    p,
                    user,
                    k,
                    old,
                    v,
                    f"{noun[p]}{_key_text(p, k)}: {arrow}",
                    step if isinstance(step, int) else None,
                )
            return
        gone: dict[Any, Value] = {}
        for d in ctx.dots() if ctx.dot_count() <= 10_000 else ():
            w = written.get((p, *d))
            if w is not None:
                gone[w[0]] = w[1]
        verb = {Part.CONFIG: "reset", Part.CHECKPOINTS: "removed"}.get(p, "cleared")
        for k, old in list(gone.items())[:ITEMIZE_UP_TO]:
            yield _entry(
                op,
                p,
                user,
                k,
                old,
                None,
                f"{verb} {noun[p]}{_key_text(p, k)} (was {_show(old, p)})",
            )
        return
    if p is Part.SAMPLES:
        assert isinstance(delta, AWSet)
        added = delta.elements()
        own = set(zip(*_dot_columns(delta), strict=True))
        removed = (
            {
                written[(p, *d)][0]
                for d in delta.context.dots()
                if d not in own and (p, *d) in written
            }
            if delta.context.dot_count() <= 1_000_000
            else set()
        ) - set(added)
        if len(added) == 1:
            yield _entry(
                op, p, user, added[0], None, True, f"added sample {_key_text(p, added[0])}"
            )
        elif added:
            yield _entry(op, p, user, None, None, len(added), f"added {len(added):,} samples")
        if len(removed) == 1:
            (k,) = removed
            yield _entry(op, p, user, k, True, None, f"removed sample {_key_text(p, k)}")
        elif removed:
            yield _entry(op, p, user, None, len(removed), None, f"removed {len(removed):,} samples")
        return
    if p is Part.TAGS:
        assert isinstance(delta, ORMap)
        for k, tags in delta.items():
            assert isinstance(tags, AWSet)
            for t in tags.elements():
                yield _entry(op, p, user, k, None, t, f"tagged {_key_text(p, k)} {t!r}")
        if not len(delta):
            yield _entry(op, p, user, None, None, None, "removed tags")
        return
    if p is Part.COMMENTS:
        assert isinstance(delta, ORMap)
        for cid, fields in delta.items():
            assert isinstance(fields, ORMap)
            text = fields.get("text")
            res = fields.get("resolved")
            if isinstance(text, MVRegister) and text.entries:
                new = text.resolved()
                verb = "commented" if fields.get("author") is not None else "edited comment"
                yield _entry(op, p, user, cid, None, new, f"{verb}: {_show(new)}")
            elif isinstance(res, MVRegister) and res.entries:
                done = res.resolved()
                yield _entry(
                    op,
                    p,
                    user,
                    cid,
                    None,
                    done,
                    "resolved a comment" if done else "reopened a comment",
                )
        if not len(delta):
            yield _entry(op, p, user, None, None, None, "deleted a comment")
        return
    if p is Part.DESCRIPTION:
        assert isinstance(delta, RGA)
        yield _entry(op, p, user, None, None, None, "edited the description")
        return
    if p is Part.COMMANDS:
        assert isinstance(delta, ORMap)
        for k, rep, _, v in _register_rows(delta):
            if rep == op.origin:
                yield _entry(op, p, user, k, None, v, f"requested {_show(v, p)}")
        return


def _dot_columns(s: AWSet) -> tuple[list[int], list[int]]:
    rows = s.store.rows()
    return rows.reps.tolist(), rows.ctrs.tolist()
