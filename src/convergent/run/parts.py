"""The smaller parts of a run: notes, checkpoints, control and members.

Each is a thin view over one or two CRDT parts (DESIGN.md section 3); every method that
changes something is one op, committed before it returns.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from convergent.crdt import RGA, MVRegister, ORMap
from convergent.crdt.clock import wall_ms
from convergent.crdt.values import Value
from convergent.errors import SchemaError
from convergent.run.ops import Part

if TYPE_CHECKING:
    from convergent.run.document import Run

ROLES = ("viewer", "editor", "worker", "admin")
STATES = ("running", "paused", "stopped")


_LAST_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z, the last time datetime can hold


def _time(hlc: int) -> datetime:
    """The wall time of an HLC (clamped to what datetime holds: a forged value is no crash)."""
    ms = min(max(wall_ms(hlc), 0), _LAST_MS)
    return datetime.fromtimestamp(ms / 1000, UTC)


def _text(value: Any, what: str) -> str:
    if type(value) is not str:
        raise SchemaError(f"{what} is a string, not {value!r} ({type(value).__name__})")
    return value


def _shaped(value: Value, *types: type) -> tuple[Any, ...] | None:
    """``value`` if it is a tuple of exactly these types, else ``None``.

    Records written by other replicas arrive as plain values; one that does not have the
    shape this build writes (a bug elsewhere, a newer build) is skipped, never a crash.
    """
    if not isinstance(value, tuple) or len(value) != len(types):
        return None
    ok = all(t is object or type(v) is t for v, t in zip(value, types, strict=True))
    return value if ok else None


def _newest(reg: Any) -> tuple[Value, int, int] | None:
    """``(value, author, hlc)`` of a register's resolved entry."""
    if not isinstance(reg, MVRegister) or not reg.entries:
        return None
    e = reg.sorted_entries()[-1]
    return e.value, e.dot.replica, e.timestamp


def _hex_id(value: Value) -> int:
    try:
        return int(str(value), 16) if type(value) is str else 0
    except ValueError:
        return 0


# -- notes --------------------------------------------------------------------------------
_COMMENT_FIELDS = ("text", "author", "created", "resolved")


@dataclass(frozen=True)
class Comment:
    """A comment on the run: who wrote it and when, who edited it last, resolved or not."""

    id: str
    text: str
    author: int
    created: datetime
    edited_by: int
    edited: datetime
    resolved: bool


class Notes:
    """Comments (add, edit, resolve, delete) and the run's free-text description.

    An edit made concurrently with a delete keeps the comment (the edit wins, as an add
    wins over a remove); the description is a list CRDT of characters, so two people typing
    in different places both keep their text.
    """

    def __init__(self, run: Run) -> None:
        self._run = run

    def _write(self, cid: str, **changes: Value) -> None:
        """Write ``changes`` and rewrite every other field with its current value.

        A comment is a map of registers, and a delete forgets the fields it saw; rewriting
        them all with each edit makes an edit concurrent with a delete keep the whole
        comment (the edit wins), not a comment with only its edited field left.
        """
        run = self._run
        actor = run._actor(Part.COMMENTS)
        with run.transaction():  # read and rewrite under the run's lock
            fields = run._state(Part.COMMENTS).get(cid)
            for field in _COMMENT_FIELDS:
                if field in changes:
                    value = changes[field]
                else:
                    newest = _newest(fields.get(field)) if fields is not None else None
                    if newest is None:
                        continue
                    value = newest[0]
                run._edit(
                    Part.COMMENTS,
                    ORMap.apply,
                    cid,
                    lambda m, f=field, v=value: m.set(f, v, by=actor),
                )

    def add(self, text: str) -> str:
        """Add a comment; returns its id."""
        _text(text, "a comment")
        cid = uuid.uuid4().hex[:16]
        run = self._run
        self._write(
            cid,
            text=text,
            author=f"{run.replica_id:016x}",
            created=int(run.clock.now()),
            resolved=False,
        )
        return cid

    def _known(self, cid: str) -> None:
        if self._run._state(Part.COMMENTS).get(cid) is None:
            raise KeyError(f"no comment {cid!r} in this run")

    def edit(self, cid: str, text: str) -> None:
        """Replace a comment's text."""
        _text(text, "a comment")
        with self._run.transaction():
            self._known(cid)
            self._write(cid, text=text)

    def resolve(self, cid: str, resolved: bool = True) -> None:
        """Mark a comment resolved (or open again with ``resolved=False``)."""
        if type(resolved) is not bool:
            raise SchemaError(f"resolved is a bool, not {resolved!r}")
        with self._run.transaction():
            self._known(cid)
            self._write(cid, resolved=resolved)

    def delete(self, cid: str) -> None:
        """Delete a comment (a concurrent edit keeps it)."""
        self._known(cid)
        self._run._edit(Part.COMMENTS, ORMap.remove, cid)

    def __getitem__(self, cid: str) -> Comment:
        with self._run._lock:
            fields = self._run._state(Part.COMMENTS).get(cid)
            if fields is None:
                raise KeyError(f"no comment {cid!r} in this run")
            text = _newest(fields.get("text"))
            author = _newest(fields.get("author"))
            created = _newest(fields.get("created"))
            resolved = _newest(fields.get("resolved"))
            edited_at = text[2] if text else 0
            return Comment(
                cid,
                str(text[0]) if text else "",
                _hex_id(author[0]) if author else 0,
                _time(created[0] if created and type(created[0]) is int else edited_at),
                text[1] if text else 0,
                _time(edited_at),
                resolved[0] is True if resolved else False,
            )

    def __iter__(self) -> Any:
        return iter(self.list())

    def list(self, *, include_resolved: bool = True) -> list[Comment]:
        """Comments, oldest first."""
        with self._run._lock:
            out = [self[str(cid)] for cid in self._run._state(Part.COMMENTS)]
        out.sort(key=lambda c: (c.created, c.id))
        return [c for c in out if include_resolved or not c.resolved]

    def __len__(self) -> int:
        with self._run._lock:
            return len(self._run._state(Part.COMMENTS))

    @property
    def description(self) -> str:
        """The run's description (collaboratively edited text)."""
        with self._run._lock:
            return "".join(c for c in self._run._state(Part.DESCRIPTION).value() if type(c) is str)

    @description.setter
    def description(self, text: str) -> None:
        _text(text, "a description")
        run = self._run
        with run.transaction():
            # Diff the list's elements (one character each when written by this build) with
            # the new text's characters, and apply only the inserts and deletes that changed:
            # text typed concurrently elsewhere in the description survives the merge.
            old = run._state(Part.DESCRIPTION).value()
            ops = difflib.SequenceMatcher(None, old, list(text), autojunk=False).get_opcodes()
            for tag, i1, i2, j1, j2 in reversed(ops):
                if tag in ("delete", "replace"):
                    for i in range(i2 - 1, i1 - 1, -1):
                        run._edit(Part.DESCRIPTION, RGA.delete, i)
                if tag in ("insert", "replace"):
                    run._edit(Part.DESCRIPTION, RGA.insert_many, i1, list(text[j1:j2]))


# -- checkpoints --------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """A saved model state: at which step, its blob (digest, size), metrics when saved."""

    id: str
    step: int
    digest: str
    size: int
    name: str
    metrics: Mapping[str, float]
    author: int
    time: datetime


class Checkpoints:
    """The run's checkpoints; their bytes live in the blob store beside the log."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def add(
        self,
        data: bytes,
        *,
        step: int,
        metrics: Mapping[str, float] | None = None,
        name: str = "",
    ) -> str:
        """Store checkpoint bytes taken at ``step``; returns the checkpoint id."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SchemaError(f"checkpoint data is bytes, not {type(data).__name__}")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise SchemaError(f"a checkpoint step is an int >= 0, not {step!r}")
        _text(name, "a checkpoint name")
        pairs = tuple(sorted((str(k), float(v)) for k, v in (metrics or {}).items()))
        data = bytes(data)
        run = self._run
        with run.transaction():
            digest = run._put_blob(data)
            cid = f"{step:010d}-{digest.hex()[:12]}"
            record = (step, digest.hex(), len(data), name, pairs)
            run._edit(Part.CHECKPOINTS, ORMap.set, cid, record)
        return cid

    def remove(self, cid: str) -> None:
        """Forget a checkpoint (its blob stays: blobs are shared and content-addressed)."""
        self[cid]
        self._run._edit(Part.CHECKPOINTS, ORMap.remove, cid)

    def __getitem__(self, cid: str) -> Checkpoint:
        with self._run._lock:
            newest = _newest(self._run._state(Part.CHECKPOINTS).get(cid))
        record = _shaped(newest[0], int, str, int, str, tuple) if newest else None
        if newest is None or record is None:
            raise KeyError(f"no checkpoint {cid!r} in this run")
        step, digest, size, name, pairs = record
        metrics = {str(k): float(v) for k, v in (p for p in pairs if _shaped(p, str, float))}
        return Checkpoint(cid, step, digest, size, name, metrics, newest[1], _time(newest[2]))

    def list(self) -> list[Checkpoint]:
        """Checkpoints by step."""
        found = []
        with self._run._lock:
            for k in self._run._state(Part.CHECKPOINTS):
                try:
                    found.append(self[str(k)])
                except KeyError:
                    continue  # a malformed record from another replica
        return sorted(found, key=lambda c: (c.step, c.id))

    def __iter__(self) -> Any:
        return iter(self.list())

    def __len__(self) -> int:
        with self._run._lock:
            return len(self._run._state(Part.CHECKPOINTS))

    def latest(self) -> Checkpoint | None:
        """The checkpoint with the highest step, if any."""
        found = self.list()
        return found[-1] if found else None

    def load(self, cid: str) -> bytes:
        """The checkpoint's bytes (checked against its digest)."""
        return self._run.blob(bytes.fromhex(self[cid].digest))


# -- control ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """A one-shot request to the trainers ("checkpoint"), pending until one marks it done."""

    id: str
    name: str
    argument: Value
    author: int
    time: datetime


class Control:
    """Running, paused or stopped, plus one-shot commands.

    Concurrent state changes are resolved like config (highest HLC) and shown by
    `Control.conflict` until someone changes the state again.
    """

    def __init__(self, run: Run) -> None:
        self._run = run

    @property
    def state(self) -> str:
        with self._run._lock:
            newest = _newest(self._run._state(Part.CONTROL).get("state"))
        return str(newest[0]) if newest else "running"

    def set_state(self, state: str) -> None:
        if state not in STATES:
            raise SchemaError(f"run state {state!r} is not one of {', '.join(STATES)}")
        self._run._edit(Part.CONTROL, ORMap.set, "state", state)

    def pause(self) -> None:
        self.set_state("paused")

    def resume(self) -> None:
        self.set_state("running")

    def stop(self) -> None:
        self.set_state("stopped")

    @property
    def conflict(self) -> tuple[str, ...]:
        """The concurrent states, oldest first, while they conflict (else empty)."""
        with self._run._lock:
            reg = self._run._state(Part.CONTROL).get("state")
            if not isinstance(reg, MVRegister) or len(reg.entries) < 2:
                return ()
            return tuple(str(e.value) for e in reg.sorted_entries())

    def request(self, name: str, argument: Value = None) -> str:
        """Ask the trainers to do something once (``"checkpoint"``); returns the command id."""
        if type(name) is not str or not name:
            raise SchemaError(f"a command name is a non-empty string, not {name!r}")
        cid = uuid.uuid4().hex[:16]
        self._run._edit(Part.COMMANDS, ORMap.set, cid, (name, argument))
        return cid

    def checkpoint_now(self) -> str:
        return self.request("checkpoint")

    def pending(self) -> list[Command]:
        """Commands nobody has marked done, oldest first."""
        out = []
        with self._run._lock:
            for cid, reg in self._run._state(Part.COMMANDS).items():
                newest = _newest(reg)
                record = _shaped(newest[0], str, object) if newest else None
                if newest is not None and record is not None:
                    out.append(Command(str(cid), record[0], record[1], newest[1], _time(newest[2])))
        return sorted(out, key=lambda c: (c.time, c.id))

    def done(self, cid: str) -> None:
        """Mark a command done (it leaves `pending` on every replica once merged)."""
        self._run._edit(Part.COMMANDS, ORMap.remove, cid)


# -- members ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """A person (or a trainer) on the run: name, role, and the replicas they edit from."""

    user: str
    display_name: str
    role: str
    replicas: tuple[int, ...]


class Members:
    """Who takes part in the run. Presence (online, looking at) is not stored here."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def identify(
        self, user: str, *, display_name: str | None = None, role: str | None = None
    ) -> None:
        """Say that this replica's edits are made by ``user`` (and set their name/role)."""
        _text(user, "a user name")
        if not user:
            raise SchemaError("a user name is not empty")
        if display_name is not None:
            _text(display_name, "a display name")
        if role is not None and role not in ROLES:
            raise SchemaError(f"role {role!r} is not one of {', '.join(ROLES)}")
        run = self._run
        with run.transaction():
            rid = f"{run.replica_id:016x}"
            current = _newest(run._state(Part.REPLICAS).get(rid))
            if current is None or current[0] != user:
                run._edit(Part.REPLICAS, ORMap.set, rid, user)
            old = _newest(run._state(Part.MEMBERS).get(user))
            old_record = (_shaped(old[0], str, str) if old else None) or (user, "editor")
            record = (display_name or old_record[0], role or old_record[1])
            if old is None or old[0] != record:
                run._edit(Part.MEMBERS, ORMap.set, user, record)

    def name_of(self, replica: int) -> str:
        """The user behind a replica id, or the id in hex if nobody said."""
        with self._run._lock:
            newest = _newest(self._run._state(Part.REPLICAS).get(f"{replica:016x}"))
        return str(newest[0]) if newest else f"{replica:016x}"

    def list(self) -> list[Member]:
        with self._run._lock:
            by_user: dict[str, list[int]] = {}
            for rid, reg in self._run._state(Part.REPLICAS).items():
                newest = _newest(reg)
                rid_value = _hex_id(rid)
                if newest is not None and rid_value:
                    by_user.setdefault(str(newest[0]), []).append(rid_value)
            out = []
            for user, reg in self._run._state(Part.MEMBERS).items():
                newest = _newest(reg)
                record = _shaped(newest[0], str, str) if newest else None
                if record is not None:
                    display, role = record
                    out.append(
                        Member(str(user), display, role, tuple(sorted(by_user.get(str(user), ()))))
                    )
        return out

    def __iter__(self) -> Any:
        return iter(self.list())

    def __len__(self) -> int:
        with self._run._lock:
            return len(self._run._state(Part.MEMBERS))
