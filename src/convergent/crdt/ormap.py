"""`ORMap`: keys to embedded causal CRDTs, with observed-remove of keys.

Values are `MVRegister`s, `AWSet`s or nested `ORMap`s. All levels share the map's causal
context (Almeida et al. 2018, section 6.3): removing a key forgets the dots it observed
under that key, and a concurrent write under the key (a dot the remover never saw) survives,
so an edit made offline is never lost to a concurrent remove.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeAlias

import numpy as np
from numpy.typing import NDArray

from convergent.crdt.awset import AWSet
from convergent.crdt.base import Actor
from convergent.crdt.causal import CausalContext
from convergent.crdt.dotstore import (
    REGISTER_LEAF,
    SET_LEAF,
    Block,
    DotMap,
    DotMapCrdt,
    LeafKind,
    MapLeaf,
    key_column,
    observed_dots,
    unique_sorted,
)
from convergent.crdt.register import MVRegister
from convergent.crdt.values import Key, check_key, check_value

Embedded: TypeAlias = "MVRegister | AWSet | ORMap"


@dataclass(frozen=True)
class MapOf:
    """The type "ORMap with values of ``values``"; ``ORMap.of(...)`` builds one."""

    values: type[MVRegister] | type[AWSet] | MapOf

    def kind(self) -> LeafKind:
        return _kind_of(self.values)

    def initial(self) -> ORMap:
        return ORMap(self.values)


def _kind_of(values: type[MVRegister] | type[AWSet] | MapOf) -> LeafKind:
    if values is MVRegister:
        return REGISTER_LEAF
    if values is AWSet:
        return MapLeaf(SET_LEAF)
    if isinstance(values, MapOf):
        return MapLeaf(values.kind())
    raise TypeError(f"ORMap values must be MVRegister, AWSet or ORMap.of(...), not {values!r}")


def _spec_of(kind: LeafKind) -> type[MVRegister] | type[AWSet] | MapOf:
    if kind is REGISTER_LEAF:
        return MVRegister
    assert isinstance(kind, MapLeaf)
    if kind.inner is SET_LEAF:
        return AWSet
    return MapOf(_spec_of(kind.inner))


class ORMap(DotMapCrdt):
    """An observed-remove map from keys to embedded causal CRDTs.

    Example:
        >>> from convergent.crdt import Actor, ReplicaId
        >>> me = Actor(ReplicaId(1))
        >>> config = ORMap.initial()                       # values are MVRegisters
        >>> config.join_inplace(config.set("lr", 0.1, by=me))
        >>> config["lr"].value()
        (0.1,)
        >>> samples = ORMap.of(ORMap.of(MVRegister)).initial()   # nested maps
        >>> d = samples.apply("s1", lambda m: m.set("label", 3, by=me), by=me)
        >>> samples.join(d)["s1"]["label"].resolved()
        3
    """

    __slots__ = ("values_type",)
    type_name = "ORMap"

    def __init__(
        self,
        values: type[MVRegister] | type[AWSet] | MapOf = MVRegister,
        store: DotMap | None = None,
        context: CausalContext | None = None,
    ) -> None:
        kind = _kind_of(values)
        self.values_type = values
        self.store = store if store is not None else DotMap(kind)
        self.context = context if context is not None else CausalContext()

    @classmethod
    def initial(cls) -> Self:
        return cls()

    @staticmethod
    def of(values: type[MVRegister] | type[AWSet] | MapOf) -> MapOf:
        """The type of maps whose values are ``values``."""
        _kind_of(values)
        return MapOf(values)

    @classmethod
    def with_kind(
        cls, kind: LeafKind, store: DotMap | None = None, context: CausalContext | None = None
    ) -> ORMap:
        """An ORMap whose values have the given leaf kind (used by the codec)."""
        return ORMap(_spec_of(kind), store, context)

    def _like(self, store: DotMap, context: CausalContext) -> Self:
        return type(self)(self.values_type, store, context)

    # -- embedded values ------------------------------------------------------------------
    def _wrap(self, store: Any) -> Embedded:
        kind = self.store.kind
        if kind is REGISTER_LEAF:
            return MVRegister(store if store is not None else {}, self.context)
        assert isinstance(kind, MapLeaf)
        inner = store if store is not None else DotMap(kind.inner)
        if kind.inner is SET_LEAF:
            return AWSet(inner, self.context)
        return ORMap.with_kind(kind.inner, inner, self.context)

    @staticmethod
    def _unwrap(value: Embedded) -> Any:
        if isinstance(value, MVRegister):
            return value.entries or None
        return value.store if len(value.store) else None

    def __getitem__(self, key: Key) -> Embedded:
        """The value under ``key``: a view that shares this map's state and context.

        Read it, or derive deltas from it inside `apply`; joining into the view directly
        would change the map behind its back.
        """
        store = self.store.get(key)
        if store is None:
            raise KeyError(key)
        return self._wrap(store)

    def get(self, key: Key) -> Embedded | None:
        """The value under ``key``, or ``None``."""
        store = self.store.get(key)
        return None if store is None else self._wrap(store)

    def keys(self) -> list[Key]:
        """Keys in canonical order."""
        return self.store.keys()

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys())

    def items(self) -> Iterator[tuple[Key, Embedded]]:
        """``(key, value)`` pairs in canonical order."""
        for k, store in self.store.items():
            yield k, self._wrap(store)

    def value(self) -> dict[Key, Any]:
        return {k: v.value() for k, v in self.items()}

    # -- mutators -------------------------------------------------------------------------
    def apply(self, key: Any, mutate: Callable[[Any], Any], *, by: Actor) -> Self:
        """Delta applying ``mutate`` to the value under ``key`` (bottom if absent).

        ``mutate`` receives the embedded value and returns one of its deltas, made with the
        same actor: ``m.apply("tags", lambda s: s.add("blurry", by=me), by=me)``.
        """
        del by  # the embedded mutator names the dot; the shared context makes it unique
        k = check_key(key)
        inner = mutate(self._wrap(self.store.get(k)))
        store = DotMap(self.store.kind)
        leaf = self._unwrap(inner)
        if leaf is not None:
            store.put(k, leaf)
        return type(self)(self.values_type, store, inner.context)

    def set(self, key: Any, value: Any, *, by: Actor) -> Self:
        """Delta writing ``value`` under ``key`` (a map of registers only)."""
        if self.store.kind is not REGISTER_LEAF:
            raise TypeError("ORMap.set needs register values; use apply() for nested values")
        # The hot path of every config edit: the same delta `apply` + `MVRegister.set` would
        # build, without the wrapper objects.
        k = check_key(key)
        v = check_value(value)
        old = self.store.get(k)
        rid = by.replica
        dot = (rid, self.context.max_counter(rid) + 1)
        clock = by.clock
        ctx = CausalContext()
        if old:
            for d, (ts, _) in old.items():
                clock.observe(ts)
                ctx.add_range(d[0], d[1], d[1])
        ctx.add_range(rid, dot[1], dot[1])
        store = DotMap(REGISTER_LEAF)
        store.overlay[k] = {dot: (clock.now(), v)}
        store.owner[dot] = k
        delta = object.__new__(type(self))
        delta.values_type, delta.store, delta.context = self.values_type, store, ctx
        return delta

    def remove(self, key: Any, *, by: Actor) -> Self:
        """Delta removing ``key`` as this replica sees it (a no-op if absent)."""
        del by
        return self._remove_delta((check_key(key),))

    def set_many(
        self,
        keys: Sequence[Key] | NDArray[Any],
        values: Sequence[Any] | NDArray[Any],
        *,
        by: Actor,
    ) -> Self:
        """Delta writing ``values[i]`` under ``keys[i]`` for all i, in numpy columns.

        One HLC timestamp and one contiguous dot range for the whole batch, so a million
        labels cost a few arrays, not a million objects. Keys must be unique.
        """
        if self.store.kind is not REGISTER_LEAF:
            raise TypeError("ORMap.set_many needs register values")
        col = key_column(keys)
        vals = _value_column(values)
        if len(vals) != len(col):
            raise ValueError(f"{len(col)} keys but {len(vals)} values")
        uniq, first_at = unique_sorted(col)
        if len(uniq) != len(col):
            raise ValueError("set_many needs unique keys")
        n = len(uniq)
        first = self.context.max_counter(by.replica) + 1
        ctx = CausalContext()
        if n:
            observed_dots(self.store, uniq, ctx)
            ctx.add_range(by.replica, first, first + n - 1)
            ts = int(by.clock.now())
        else:
            ts = 0
        store = DotMap(REGISTER_LEAF)
        if not n:
            return type(self)(self.values_type, store, ctx)
        store.block = Block(
            uniq,
            np.full(n, by.replica, dtype=np.uint64),
            np.arange(first, first + n, dtype=np.uint64),
            np.full(n, ts, dtype=np.int64),
            vals[first_at],
            np.ones(n, dtype=np.bool_),
        )
        return type(self)(self.values_type, store, ctx)

    def __repr__(self) -> str:
        return f"ORMap({len(self)} keys)"


def _value_column(values: Sequence[Any] | NDArray[Any]) -> NDArray[Any]:
    """Register values as a numpy column that converts back to exact Python values."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        kind = values.dtype.kind
        if kind in "iu":
            if kind == "u" and values.size and int(values.max()) >= 1 << 63:
                raise TypeError("integer values must fit in int64 for a bulk write")
            return values.astype(np.int64, copy=False)
        if kind == "f":
            return values.astype(np.float64, copy=False)
        if kind == "b":
            return values
        if kind in "UT":
            try:
                return values.astype(np.dtypes.StringDType(), copy=False)
            except (UnicodeEncodeError, TypeError):
                raise TypeError("a value column holds text that is not valid Unicode") from None
        raise TypeError(f"values of dtype {values.dtype} cannot be stored")
    items = [
        check_value(v) for v in (values.tolist() if isinstance(values, np.ndarray) else values)
    ]
    out = np.empty(len(items), dtype=object)
    out[:] = items if not any(type(v) is tuple for v in items) else [None] * len(items)
    if any(type(v) is tuple for v in items):
        for i, v in enumerate(items):
            out[i] = v
    return out
