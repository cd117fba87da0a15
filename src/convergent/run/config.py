"""`LiveConfig`: a run's hyperparameters as a typed, replicated, dict-like object.

Values live in an `ORMap` of `MVRegister`s (the run's ``config`` part); the rules live in the
``schema`` part, so every replica checks against the same `Schema` once merged. Writes are
checked before they become operations. Concurrent writes are all kept: ``config[key]`` is the
deterministic resolution (highest HLC, then replica id) that every replica computes alike, and
`LiveConfig.conflicts` shows every concurrent value with its author and time until someone who
saw them writes again.

Example:
    >>> from convergent.run import Float, Int, Run
    >>> run = Run(config={"lr": Float(0.1, min=0.0), "batch_size": Int(64, min=1)})
    >>> run.config["lr"], run.config["batch_size"]      # defaults until someone writes
    (0.1, 64)
    >>> run.config["lr"] = 0.02
    >>> run.config.to_dict()
    {'batch_size': 64, 'lr': 0.02}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from convergent.crdt import Actor, CausalContext, MVRegister, ORMap
from convergent.crdt.clock import wall_ms
from convergent.crdt.values import Value, value_key
from convergent.errors import SchemaError
from convergent.run.ops import Part
from convergent.run.schema import Param, Schema

if TYPE_CHECKING:
    from convergent.run.document import Run


def schema_of(state: ORMap) -> tuple[Schema, list[tuple[str, Value, str]]]:
    """The schema a ``schema`` part holds (each key's resolved spec), and the specs that are
    not valid rules (from a newer or buggy replica): those keys are left out, so one bad
    spec never takes the other keys down with it."""
    params, bad = {}, []
    for key, reg in state.items():
        if not (isinstance(reg, MVRegister) and reg.entries and type(key) is str and key):
            continue
        spec = reg.resolved()
        try:
            param = Param.from_value(spec)
            param.check(key, param.default)
        except SchemaError as err:
            bad.append((key, spec, f"config key {key!r} has no valid rule: {err}"))
            continue
        params[key] = param
    return Schema(params), bad


def applied_key(author: int, counter: int) -> str:
    """The ``applied`` part's key for the config write with dot ``(author, counter)``."""
    return f"{author:016x}:{counter}"


def _set_observing(
    state: ORMap, key: str, value: Value, seen: frozenset[tuple[int, int]], *, by: Actor
) -> ORMap:
    """`ORMap.set`, but the delta's context covers only the old writes in ``seen``: the
    others are not replaced (the observed-remove part of a register write)."""
    reg = state.get(key)
    old = {tuple(d) for d in reg.entries} if isinstance(reg, MVRegister) else set()
    delta = state.set(key, value, by=by)
    ctx = CausalContext()
    for dot in delta.context.dots():
        if tuple(dot) not in old or tuple(dot) in seen:
            ctx.add(*dot)
    delta.context = ctx
    return delta


@dataclass(frozen=True)
class Written:
    """One value of a key, as written: by whom (replica id) and when (HLC)."""

    value: Value
    author: int
    timestamp: int
    counter: int = 0

    @property
    def time(self) -> datetime:
        """The wall-clock time of the write (the physical part of its HLC)."""
        return datetime.fromtimestamp(wall_ms(self.timestamp) / 1000, UTC)


@dataclass(frozen=True)
class Conflict:
    """Concurrent writes to one key; ``resolved`` is what every replica reads meanwhile."""

    key: str
    values: tuple[Written, ...]
    resolved: Value


class LiveConfig(Mapping[str, Value]):
    """Typed config of a `Run`: read like a dict, write with ``config[key] = value``."""

    def __init__(self, run: Run) -> None:
        self._run = run

    @property
    def schema(self) -> Schema:
        return self._run.schema

    def _register(self, key: str) -> MVRegister | None:
        reg = self._run._state(Part.CONFIG).get(key)
        assert reg is None or isinstance(reg, MVRegister)
        return reg

    def declare(self, params: Mapping[str, Param]) -> None:
        """Add config keys (or change their rules); keys already declared alike are skipped.

        Raises:
            SchemaError: a default breaks its own rule, or a key is not a non-empty string.
        """
        Schema(params)  # checks every key and default before anything is written
        with self._run.transaction():
            state = self._run._state(Part.SCHEMA)
            for key, param in params.items():
                reg = state.get(key)
                spec = param.to_value()
                # value_key, not ==: Choice(0, [0, 1]) is not Choice(False, [False, True]).
                same = reg is not None and len(reg.entries) == 1
                if not same or value_key(reg.resolved()) != value_key(spec):
                    self._run._edit(Part.SCHEMA, ORMap.set, key, spec)

    def __getitem__(self, key: str) -> Value:
        with self._run._lock:
            param = self.schema[key]
            reg = self._register(key)
            return param.default if reg is None or not reg.entries else reg.resolved()

    def __setitem__(self, key: str, value: Any) -> None:
        self._run._edit(Part.CONFIG, ORMap.set, key, self.schema.check(key, value))

    def write(self, key: str, value: Any, *, seen: Iterable[tuple[int, int]] | None = None) -> None:
        """Write ``value`` as someone who had seen only the writes ``seen`` of ``key``.

        ``seen`` holds ``(author, counter)`` of `Written` values (what a person's screen
        showed when they typed). A write they had not seen stays concurrent with this one,
        so both are kept as a conflict, exactly as if their replica had not received it yet;
        ``None`` replaces every value this replica holds (``config[key] = value``). The hub
        writes this way for browser sessions, whose replica lives on the hub.
        """
        checked = self.schema.check(key, value)
        if seen is None:
            self._run._edit(Part.CONFIG, ORMap.set, key, checked)
        else:
            self._run._edit(Part.CONFIG, _set_observing, key, checked, frozenset(seen))

    def update_many(self, values: Mapping[str, Any]) -> None:
        """Check every value first, then write them as one op: all or nothing."""
        schema = self.schema
        checked = {k: schema.check(k, v) for k, v in values.items()}
        with self._run.transaction():
            for k, v in checked.items():
                self._run._edit(Part.CONFIG, ORMap.set, k, v)

    def reset(self, key: str) -> None:
        """Forget the written values of ``key`` (it reads its default again)."""
        self.schema[key]
        self._run._edit(Part.CONFIG, ORMap.remove, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.schema)

    def __len__(self) -> int:
        return len(self.schema)

    def to_dict(self) -> dict[str, Value]:
        """Every key's current value (written or default)."""
        with self._run._lock:
            return {k: self[k] for k in self.schema}

    def written(self, key: str) -> tuple[Written, ...]:
        """The values currently held for ``key``, oldest first (several while in conflict)."""
        with self._run._lock:
            self.schema[key]
            reg = self._register(key)
            if reg is None:
                return ()
            return tuple(
                Written(e.value, e.dot.replica, e.timestamp, e.dot.counter)
                for e in reg.sorted_entries()
            )

    def conflicts(self) -> list[Conflict]:
        """Keys with concurrent writes nobody has resolved yet, in key order."""
        out = []
        with self._run._lock:
            for key in self.schema:
                values = self.written(key)
                if len(values) > 1:
                    out.append(Conflict(key, values, values[-1].value))
        return out

    def invalid(self) -> list[tuple[str, Value, str]]:
        """``(key, value, why)`` for merged rules that are not valid rules, and merged values
        that break the current schema.

        A replica's own writes are checked at the edge, but a value merged from elsewhere
        was checked against the rules *that* replica had (or by nobody, if it is buggy). A
        trainer keeps the last valid value of such a key and reports it; this lists them.
        """
        out = []
        with self._run._lock:
            schema = self.schema
            out.extend(self._run._schema_problems())
            for key, reg in self._run._state(Part.CONFIG).items():
                if not isinstance(reg, MVRegister) or not reg.entries:
                    continue
                value = reg.resolved()
                try:
                    schema.check(str(key), value)
                except SchemaError as err:
                    out.append((str(key), value, str(err)))
        return out

    def record_applied(self, key: str, step: int) -> None:
        """Record that the value ``key`` reads now took effect at training ``step``.

        Trainers call this at the step boundary where they apply a change, so the history
        shows the step next to who changed what (requested and applied are different facts).
        """
        if type(step) is not int or step < 0:
            raise SchemaError(f"a training step is an int >= 0, not {step!r}")
        values = self.written(key)
        if values:
            w = values[-1]
            self._run._edit(Part.APPLIED, ORMap.set, applied_key(w.author, w.counter), step)

    def __repr__(self) -> str:
        return f"LiveConfig({self.to_dict()!r})"
