"""`LiveConfig`: a run's hyperparameters as a typed, replicated, dict-like object.

The state is an `ORMap` of `MVRegister`s on a `Replica`. Writes are checked against the
`Schema` before they become operations. Concurrent writes are all kept: ``config[key]`` is
the deterministic resolution (highest HLC, then replica id) that every replica computes
alike, and `LiveConfig.conflicts` shows every concurrent value with its author and time
until someone who saw them writes again.

Example:
    >>> from convergent.crdt import ORMap, Replica
    >>> from convergent.run.schema import Float, Int, Schema
    >>> schema = Schema({"lr": Float(0.1, min=0.0), "batch_size": Int(64, min=1)})
    >>> config = LiveConfig(Replica(ORMap()), schema)
    >>> config["lr"], config["batch_size"]          # defaults until someone writes
    (0.1, 64)
    >>> config["lr"] = 0.02
    >>> config.to_dict()
    {'batch_size': 64, 'lr': 0.02}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from convergent.crdt import MVRegister, ORMap, Replica
from convergent.crdt.clock import wall_ms
from convergent.crdt.values import Value
from convergent.run.schema import Schema


@dataclass(frozen=True)
class Written:
    """One value of a key, as written: by whom (replica id) and when (HLC)."""

    value: Value
    author: int
    timestamp: int

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
    """Typed config over a replica of an `ORMap` of registers."""

    def __init__(self, replica: Replica[ORMap], schema: Schema) -> None:
        self.replica = replica
        self.schema = schema

    def _register(self, key: str) -> MVRegister | None:
        reg = self.replica.state.get(key)
        assert reg is None or isinstance(reg, MVRegister)
        return reg

    def __getitem__(self, key: str) -> Value:
        param = self.schema[key]
        reg = self._register(key)
        return param.default if reg is None or not reg.entries else reg.resolved()

    def __setitem__(self, key: str, value: Any) -> None:
        self.replica.update(ORMap.set, key, self.schema.check(key, value))

    def update_many(self, values: Mapping[str, Any]) -> None:
        """Check every value first, then write them: all or nothing."""
        checked = {k: self.schema.check(k, v) for k, v in values.items()}
        for k, v in checked.items():
            self.replica.update(ORMap.set, k, v)

    def reset(self, key: str) -> None:
        """Forget the written values of ``key`` (it reads its default again)."""
        self.schema[key]
        self.replica.update(ORMap.remove, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.schema)

    def __len__(self) -> int:
        return len(self.schema)

    def to_dict(self) -> dict[str, Value]:
        """Every key's current value (written or default)."""
        return {k: self[k] for k in self.schema}

    def written(self, key: str) -> tuple[Written, ...]:
        """The values currently held for ``key``, oldest first (several while in conflict)."""
        self.schema[key]
        reg = self._register(key)
        if reg is None:
            return ()
        return tuple(Written(e.value, e.dot.replica, e.timestamp) for e in reg.sorted_entries())

    def conflicts(self) -> list[Conflict]:
        """Keys with concurrent writes nobody has resolved yet, in key order."""
        out = []
        for key in self.schema:
            values = self.written(key)
            if len(values) > 1:
                out.append(Conflict(key, values, values[-1].value))
        return out

    def __repr__(self) -> str:
        return f"LiveConfig({self.to_dict()!r})"
