"""Hypothesis strategies that build CRDT states from real operation sequences.

A state that a property test invents field by field can be one no replica ever reaches (two
values under one dot, a context missing a dot its store holds), and laws may fail on it for no
real reason. So every state here is *played*: 2-4 replicas (`Replica`) run random mutators on a
small key domain (so edits collide), and now and then one joins a single delta or the whole
state of another, in any order. That gives states with concurrency, removes of observed elements,
re-adds, register conflicts, dot-cloud gaps and RGA elements waiting for their origin.

The pieces, from the top:

* `TYPES` maps a type name to a `CrdtType`: how to build the bottom state, the mutators
  (`Operation`) with Hypothesis strategies for their arguments, and each mutator's sequential
  meaning (what ``value()`` must be right after it), which is what the delta-mutator law checks.
* `histories(name)` draws a `History`: the script (replica ids, clock skews, `Edit` /
  `Deliver` / `Merge` steps), the replicas after playing it, every delta each replica made and
  one `Mutation` record per edit. Its ``repr`` is a `play(...)` call that replays it exactly,
  so a failing example is a reproducer; clocks are simulated, nothing depends on real time.
* `states(name, count)` draws a `Sample`: ``count`` states of one history, each a replica's
  state or a delta group (a join of some of the deltas, in some order). States of *one*
  history are what a law may be checked on: states of unrelated histories may reuse a dot for
  different events, which no real system does.
* `check_laws(a, b, c)` checks the join-semilattice laws on any three states, for users'
  own types too.

Example:
    >>> from hypothesis import given, settings
    >>> from convergent.testing.strategies import check_laws, states
    >>> @settings(max_examples=10)
    ... @given(states("MVRegister"))
    ... def test_mvregister_is_a_semilattice(sample):
    ...     check_laws(*sample.states)
    >>> test_mvregister_is_a_semilattice()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any, Generic, TypeAlias, TypeVar

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from convergent.crdt import (
    RGA,
    Actor,
    AppendLog,
    AWSet,
    Crdt,
    GCounter,
    HybridLogicalClock,
    LWWRegister,
    MVRegister,
    ORMap,
    PNCounter,
    Replica,
    ReplicaId,
)
from convergent.crdt.weights import (
    NEVER,
    SKIP,
    Checkpoint,
    Contribution,
    FoldState,
    Weights,
    codec_of,
    quantize,
)

__all__ = [
    "TYPES",
    "CrdtType",
    "Deliver",
    "Edit",
    "History",
    "Merge",
    "Mutation",
    "Operation",
    "Sample",
    "SimulatedTime",
    "Step",
    "apply_edit",
    "check_laws",
    "histories",
    "play",
    "states",
]

S = TypeVar("S", bound=Crdt)
Args: TypeAlias = tuple[Any, ...]

START_MS = 1_700_000_000_000
"""Where simulated wall time starts (November 2023, in Unix milliseconds)."""

HOUR_MS = 3_600_000


# -- the laws -----------------------------------------------------------------------------


def check_laws(a: S, b: S, c: S) -> None:
    """Check that ``join`` is idempotent, commutative and associative on ``a, b, c``.

    Also checks that ``join`` left its arguments alone. The states should come from one
    history (see the module docstring). Raises `AssertionError` naming the law that failed;
    it does not use ``assert``, so it works under ``python -O`` too.

    Example:
        >>> from convergent.crdt import GCounter, Actor, ReplicaId
        >>> zero = GCounter.initial()
        >>> a = zero.increment(2, by=Actor(ReplicaId(1)))
        >>> b = zero.increment(3, by=Actor(ReplicaId(2)))
        >>> check_laws(a, b, a.join(b))
    """
    before = (a.copy(), b.copy(), c.copy())

    def law(holds: bool, name: str, left: object, right: object) -> None:
        if not holds:
            raise AssertionError(f"join is not {name}:\n  {left!r}\n  != {right!r}")

    aa = a.join(a)
    law(aa == a, "idempotent (a | a == a)", aa, a)
    ab, ba = a.join(b), b.join(a)
    law(ab == ba, "commutative (a | b == b | a)", ab, ba)
    left, right = ab.join(c), a.join(b.join(c))
    law(left == right, "associative ((a | b) | c == a | (b | c))", left, right)
    for name, now, then in zip("abc", (a, b, c), before, strict=True):
        law(now == then, f"pure: it changed its argument {name}", now, then)


# -- simulated time -----------------------------------------------------------------------


class SimulatedTime:
    """Wall time that moves only when a test says so, seen by each replica with a skew.

    Example:
        >>> time = SimulatedTime(start_ms=1_000)
        >>> behind = time.wall(skew_ms=-500)
        >>> time.advance(10); behind()
        510
    """

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now_ms = start_ms

    def advance(self, ms: int = 1) -> None:
        """Move time forward by ``ms`` milliseconds."""
        self.now_ms += ms

    def wall(self, skew_ms: int = 0) -> Callable[[], int]:
        """A wall-clock function for `HybridLogicalClock`, ``skew_ms`` off the true time."""
        return lambda: self.now_ms + skew_ms


# -- operations and types -----------------------------------------------------------------


def _always(state: Any, args: Args) -> bool:
    return True


@dataclass(frozen=True)
class Operation(Generic[S]):
    """One mutator of a type, with what it means.

    Attributes:
        name: How `Edit` names it.
        args: Strategy for its arguments, drawn without seeing the state.
        run: ``run(state, args, actor)`` calls the mutator and returns its delta.
        expect: ``expect(state, args, actor)``: what `CrdtType.observe` must give right after
            the mutation is applied to ``state`` (the type's sequential specification).
        applies: Whether the operation makes sense on ``state`` (deleting from an empty list
            does not); an edit that does not apply is skipped.
    """

    name: str
    args: SearchStrategy[Args]
    run: Callable[[S, Args, Actor], S]
    expect: Callable[[S, Args, Actor], object]
    applies: Callable[[S, Args], bool] = _always


@dataclass(frozen=True)
class CrdtType(Generic[S]):
    """A CRDT type as the strategies see it: bottom, mutators and an observable value.

    Attributes:
        name: The key in `TYPES`.
        initial: Builds the bottom state.
        operations: The mutators random histories use.
        observe: The value as plain, ``==``-comparable Python (``value()`` unless that holds
            numpy arrays).
    """

    name: str
    initial: Callable[[], S]
    operations: tuple[Operation[S], ...]
    observe: Callable[[S], object] = field(default=lambda s: s.value())

    def operation(self, name: str) -> Operation[S]:
        """The operation called ``name``."""
        for op in self.operations:
            if op.name == name:
                return op
        raise KeyError(f"{self.name} has no operation {name!r}")

    def edits(self, replicas: int) -> SearchStrategy[Edit]:
        """Random edits by one of ``replicas`` replicas (indices ``0 .. replicas - 1``)."""
        who = st.integers(0, replicas - 1)
        return st.one_of(
            [st.builds(Edit, who, st.just(op.name), op.args) for op in self.operations]
        )


# -- value domains: small on purpose, so that random edits collide ------------------------

INT_KEYS = st.integers(0, 5)
STR_KEYS = st.sampled_from(["a", "b", "ab", "é"])
BYTES_KEYS = st.sampled_from([b"a", b"\x00\xff"])
KEYS = st.one_of(INT_KEYS, STR_KEYS, BYTES_KEYS)
"""Keys of single-key edits; bulk edits take ints or strs, never bytes (no column for them)."""
SCALARS: SearchStrategy[Any] = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["x", "y", "", "𝄞"]),
    st.sampled_from([b"", b"\x00\xff"]),
    st.none(),
    st.booleans(),
    st.sampled_from([0.5, -0.0, 0.0, 1e300, float("inf"), 2**62, -(2**62)]),
)
VALUES: SearchStrategy[Any] = st.one_of(SCALARS, st.tuples(SCALARS, SCALARS))
"""Register values (NaN left out: ``==`` on plain values could not compare it)."""

_STRINGS = np.dtypes.StringDType()


def _int_column(xs: list[int]) -> Any:
    return np.array(xs, dtype=np.int64)


@st.composite
def _key_batch(draw: st.DrawFn) -> Any:
    """Keys for a bulk set operation: a list or a numpy column of ints or of strs."""
    if draw(st.booleans()):
        ints = draw(st.lists(INT_KEYS, max_size=6))
        form = draw(st.sampled_from(["list", "int64", "int32", "uint8"]))
        return ints if form == "list" else np.array(ints, dtype=form)
    strs = draw(st.lists(STR_KEYS, max_size=6))
    form = draw(st.sampled_from(["list", "StringDType", "U"]))
    if form == "list":
        return strs
    return np.array(strs, dtype=_STRINGS if form == "StringDType" else str)


@st.composite
def _set_many_args(draw: st.DrawFn) -> Args:
    """``(keys, values)`` for `ORMap.set_many`: unique keys of one kind, values by column."""
    strs = draw(st.booleans())
    keys: list[Any] = draw(st.lists(STR_KEYS if strs else INT_KEYS, unique=True, max_size=5))
    n = len(keys)
    form = draw(st.sampled_from(["objects", "int64", "float64"]))
    values: Any
    if form == "objects":
        values = draw(st.lists(VALUES, min_size=n, max_size=n))
    elif form == "int64":
        values = _int_column(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)))
    else:
        floats = st.sampled_from([0.5, -0.0, 2.25, -1e300])
        values = np.array(draw(st.lists(floats, min_size=n, max_size=n)), dtype=np.float64)
    if draw(st.booleans()):
        keys_out: Any = np.array(keys, dtype=_STRINGS if strs else np.int64)
    else:
        keys_out = keys
    return (keys_out, values)


def _plain(xs: Any) -> list[Any]:
    """A key or value batch as Python objects (numpy scalars become ints, floats, strs)."""
    return xs.tolist() if isinstance(xs, np.ndarray) else list(xs)


def _one(strategy: SearchStrategy[Any]) -> SearchStrategy[Args]:
    return st.tuples(strategy)


# -- counters and registers ---------------------------------------------------------------

GCOUNTER = CrdtType[GCounter](
    "GCounter",
    GCounter.initial,
    (
        Operation[GCounter](
            "increment",
            _one(st.integers(0, 4)),
            lambda s, a, by: s.increment(a[0], by=by),
            lambda s, a, by: s.value() + a[0],
        ),
    ),
)

PNCOUNTER = CrdtType[PNCounter](
    "PNCounter",
    PNCounter.initial,
    (
        Operation[PNCounter](
            "increment",
            _one(st.integers(-3, 4)),
            lambda s, a, by: s.increment(a[0], by=by),
            lambda s, a, by: s.value() + a[0],
        ),
        Operation[PNCounter](
            "decrement",
            _one(st.integers(0, 3)),
            lambda s, a, by: s.decrement(a[0], by=by),
            lambda s, a, by: s.value() - a[0],
        ),
    ),
)

LWW_REGISTER = CrdtType[LWWRegister](
    "LWWRegister",
    LWWRegister.initial,
    (
        Operation[LWWRegister](
            "set",
            _one(VALUES),
            lambda s, a, by: s.set(a[0], by=by),
            lambda s, a, by: a[0],
        ),
    ),
)

MV_REGISTER = CrdtType[MVRegister](
    "MVRegister",
    MVRegister.initial,
    (
        Operation[MVRegister](
            "set",
            _one(VALUES),
            lambda s, a, by: s.set(a[0], by=by),
            lambda s, a, by: (a[0],),
        ),
        Operation[MVRegister](
            "clear",
            st.just(()),
            lambda s, a, by: s.clear(by=by),
            lambda s, a, by: (),
        ),
    ),
)


# -- sets -----------------------------------------------------------------------------------


def _with(elements: frozenset[Any], added: Sequence[Any] = (), removed: Sequence[Any] = ()) -> Any:
    return (elements | frozenset(added)) - frozenset(removed)


AWSET = CrdtType[AWSet](
    "AWSet",
    AWSet.initial,
    (
        Operation[AWSet](
            "add",
            _one(KEYS),
            lambda s, a, by: s.add(a[0], by=by),
            lambda s, a, by: _with(s.value(), added=a),
        ),
        Operation[AWSet](
            "remove",
            _one(KEYS),
            lambda s, a, by: s.remove(a[0], by=by),
            lambda s, a, by: _with(s.value(), removed=a),
        ),
        Operation[AWSet](
            "add_many",
            _one(_key_batch()),
            lambda s, a, by: s.add_many(a[0], by=by),
            lambda s, a, by: _with(s.value(), added=_plain(a[0])),
        ),
        Operation[AWSet](
            "remove_many",
            _one(_key_batch()),
            lambda s, a, by: s.remove_many(a[0], by=by),
            lambda s, a, by: _with(s.value(), removed=_plain(a[0])),
        ),
    ),
)


# -- maps -----------------------------------------------------------------------------------


def _updated(mapping: dict[Any, Any], key: Any, value: Any) -> dict[Any, Any]:
    """``mapping`` with ``key`` set to ``value``, or dropped when ``value`` is empty."""
    out = dict(mapping)
    if value:
        out[key] = value
    else:
        out.pop(key, None)
    return out


def _map_remove(s: ORMap, a: Args, by: Actor) -> ORMap:
    return s.remove(a[0], by=by)


def _map_expect_remove(s: ORMap, a: Args, by: Actor) -> object:
    return _updated(s.value(), a[0], None)


def _set_many_expect(before: dict[Any, Any], keys: Any, values: Any) -> dict[Any, Any]:
    out = dict(before)
    for k, v in zip(_plain(keys), _plain(values), strict=True):
        out[k] = (v,)
    return out


ORMAP_OF_MVREGISTER = CrdtType[ORMap](
    "ORMap[MVRegister]",
    ORMap.initial,
    (
        Operation[ORMap](
            "set",
            st.tuples(KEYS, VALUES),
            lambda s, a, by: s.set(a[0], a[1], by=by),
            lambda s, a, by: _updated(s.value(), a[0], (a[1],)),
        ),
        Operation[ORMap]("remove", _one(KEYS), _map_remove, _map_expect_remove),
        Operation[ORMap](
            "set_many",
            _set_many_args(),
            lambda s, a, by: s.set_many(a[0], a[1], by=by),
            lambda s, a, by: _set_many_expect(s.value(), a[0], a[1]),
        ),
    ),
)

_ELEMENTS = st.one_of(st.integers(0, 3), st.sampled_from(["p", "q", b"p"]))

ORMAP_OF_AWSET = CrdtType[ORMap](
    "ORMap[AWSet]",
    ORMap.of(AWSet).initial,
    (
        Operation[ORMap](
            "add",
            st.tuples(KEYS, _ELEMENTS),
            lambda s, a, by: s.apply(a[0], lambda e: e.add(a[1], by=by), by=by),
            lambda s, a, by: _updated(
                s.value(), a[0], _with(s.value().get(a[0], frozenset()), added=a[1:])
            ),
        ),
        Operation[ORMap](
            "remove_element",
            st.tuples(KEYS, _ELEMENTS),
            lambda s, a, by: s.apply(a[0], lambda e: e.remove(a[1], by=by), by=by),
            lambda s, a, by: _updated(
                s.value(), a[0], _with(s.value().get(a[0], frozenset()), removed=a[1:])
            ),
        ),
        Operation[ORMap](
            "add_many",
            st.tuples(KEYS, _key_batch()),
            lambda s, a, by: s.apply(a[0], lambda e: e.add_many(a[1], by=by), by=by),
            lambda s, a, by: _updated(
                s.value(), a[0], _with(s.value().get(a[0], frozenset()), added=_plain(a[1]))
            ),
        ),
        Operation[ORMap]("remove", _one(KEYS), _map_remove, _map_expect_remove),
    ),
)

_INNER_KEYS = st.one_of(st.integers(0, 2), st.sampled_from(["lr", "wd"]))

ORMAP_OF_ORMAP = CrdtType[ORMap](
    "ORMap[ORMap[MVRegister]]",
    ORMap.of(ORMap.of(MVRegister)).initial,
    (
        Operation[ORMap](
            "set",
            st.tuples(KEYS, _INNER_KEYS, VALUES),
            lambda s, a, by: s.apply(a[0], lambda m: m.set(a[1], a[2], by=by), by=by),
            lambda s, a, by: _updated(
                s.value(), a[0], _updated(s.value().get(a[0], {}), a[1], (a[2],))
            ),
        ),
        Operation[ORMap](
            "remove_inner",
            st.tuples(KEYS, _INNER_KEYS),
            lambda s, a, by: s.apply(a[0], lambda m: m.remove(a[1], by=by), by=by),
            lambda s, a, by: _updated(
                s.value(), a[0], _updated(s.value().get(a[0], {}), a[1], None)
            ),
        ),
        Operation[ORMap](
            "set_many",
            st.tuples(KEYS, _set_many_args()),
            lambda s, a, by: s.apply(a[0], lambda m: m.set_many(*a[1], by=by), by=by),
            lambda s, a, by: _updated(
                s.value(), a[0], _set_many_expect(s.value().get(a[0], {}), *a[1])
            ),
        ),
        Operation[ORMap]("remove", _one(KEYS), _map_remove, _map_expect_remove),
    ),
)


# -- append log and list ------------------------------------------------------------------

Row: TypeAlias = tuple[int, int, float]
_ROWS = st.tuples(
    st.integers(-(2**62), 2**62),
    st.integers(0, 10**6),
    st.sampled_from([0.0, -0.0, 0.25, 3.5, -1e300, float("inf")]),
)


def _log_rows(log: AppendLog) -> dict[int, list[Row]]:
    """Each writer's contiguous log as ``(step, time, value)`` rows (writers with rows only)."""
    out: dict[int, list[Row]] = {}
    for w in log.writers():
        cols = [log.rows_of(w, name).tolist() for name in ("step", "time", "value")]
        rows = list(zip(*cols, strict=True))
        if rows:
            out[w] = rows
    return out


def _log_expect(log: AppendLog, rows: Sequence[Row], by: Actor) -> object:
    return _updated(_log_rows(log), by.replica, _log_rows(log).get(by.replica, []) + list(rows))


def _columns(rows: Sequence[Row]) -> dict[str, list[Any]]:
    return {
        "step": [r[0] for r in rows],
        "time": [r[1] for r in rows],
        "value": [r[2] for r in rows],
    }


APPEND_LOG = CrdtType[AppendLog](
    "AppendLog",
    AppendLog.initial,
    (
        Operation[AppendLog](
            "append",
            _one(_ROWS),
            lambda s, a, by: s.append(
                dict(zip(("step", "time", "value"), a[0], strict=True)), by=by
            ),
            _log_expect,
        ),
        Operation[AppendLog](
            "append_many",
            _one(st.lists(_ROWS, max_size=5)),
            lambda s, a, by: s.append_many(_columns(a[0]), by=by),
            lambda s, a, by: _log_expect(s, a[0], by),
        ),
    ),
    observe=_log_rows,
)


def _list_with(items: list[Any], index: int, inserted: Sequence[Any]) -> list[Any]:
    return items[:index] + list(inserted) + items[index:]


RGA_LIST = CrdtType[RGA](
    "RGA",
    RGA.initial,
    (
        # Indices are drawn blind and taken modulo the list's length when played.
        Operation[RGA](
            "insert",
            st.tuples(st.integers(0, 20), VALUES),
            lambda s, a, by: s.insert(a[0] % (len(s) + 1), a[1], by=by),
            lambda s, a, by: _list_with(s.value(), a[0] % (len(s) + 1), a[1:]),
        ),
        Operation[RGA](
            "insert_many",
            st.tuples(st.integers(0, 20), st.lists(VALUES, max_size=3)),
            lambda s, a, by: s.insert_many(a[0] % (len(s) + 1), a[1], by=by),
            lambda s, a, by: _list_with(s.value(), a[0] % (len(s) + 1), a[1]),
        ),
        Operation[RGA](
            "delete",
            _one(st.integers(0, 20)),
            lambda s, a, by: s.delete(a[0] % len(s), by=by),
            lambda s, a, by: [v for i, v in enumerate(s.value()) if i != a[0] % len(s)],
            applies=lambda s, a: len(s) > 0,
        ),
        Operation[RGA](
            "extend",
            _one(st.lists(VALUES, max_size=3)),
            lambda s, a, by: s.extend(a[0], by=by),
            lambda s, a, by: s.value() + list(a[0]),
        ),
    ),
)

# -- weights ------------------------------------------------------------------------------

_ROUNDS = st.integers(1, 4)
_SIZES = (2, 1)


def _weights_view(s: Weights) -> dict[str, Any]:
    """`Weights` as plain Python: settings without their HLC (a test cannot predict it)."""
    ck, members, slots, settings = s.summary()
    return {
        "checkpoint": ck,
        "members": dict(members),
        "slots": dict(slots),
        "settings": sorted((k, r, rid, v) for (k, r, _, rid), v in settings),
    }


def _base(s: Weights, round: int) -> bytes:
    """The digest a worker trains round ``round`` from: the fold of the round before, if any."""
    d = s.decided_round()
    if s.checkpoint is None or d < s.checkpoint.round:
        return bytes(16)
    return s.fold(max(s.checkpoint.round, min(round - 1, d))).digest


def _round_of(s: Weights, a: Args) -> int:
    """The round a contribution is for: drawn, or the next one a worker would train."""
    drawn: int | None = a[0]
    return drawn if drawn is not None else max(1, s.decided_round() + 1)


def _contribution(s: Weights, a: Args) -> Contribution:
    _, seed, n, codec = a
    payload = quantize(np.array([seed, -seed, 0.25 * seed]), _SIZES, codec)
    return Contribution(n, codec_of(codec), _base(s, _round_of(s, a)), payload)


def _with_slot(s: Weights, key: tuple[int, int], digest: bytes) -> dict[str, Any]:
    view = _weights_view(s)
    ck = s.checkpoint
    if ck is None or key[0] > ck.round:
        old = view["slots"].get(key)
        view["slots"][key] = digest if old is None else max(old, digest)
    return view


def _with_member(s: Weights, rid: int, join: int, leave: int) -> dict[str, Any]:
    view = _weights_view(s)
    j, left = view["members"].get(rid, (NEVER, NEVER))
    view["members"][rid] = (min(j, join), min(left, leave))
    return view


def _with_checkpoint(s: Weights, ck: Checkpoint) -> dict[str, Any]:
    view = _weights_view(s)
    if s.checkpoint is None or ck.order() > s.checkpoint.order():
        view["checkpoint"] = ck.order()
        view["slots"] = {k: d for k, d in view["slots"].items() if k[0] > ck.round}
    return view


def _initial_weights(seed: int) -> Any:
    return np.array([seed, 1.0, -0.5 * seed])


def _with_setting(s: Weights, a: Args, by: Actor) -> dict[str, Any]:
    view = _weights_view(s)
    view["settings"] = sorted([*view["settings"], (a[0], a[2], by.replica, float(a[1]))])
    return view


def _compactable(s: Weights, a: Args) -> bool:
    return s.checkpoint is not None and s.decided_round() > s.checkpoint.round


def _compact_to(s: Weights, a: Args) -> int:
    assert s.checkpoint is not None
    through: int = a[0]
    return min(s.checkpoint.round + through, s.decided_round())


WEIGHTS = CrdtType[Weights](
    "Weights",
    Weights.initial,
    (
        Operation[Weights](
            "initialize",
            _one(st.integers(0, 2)),
            lambda s, a, by: s.initialize(_initial_weights(a[0]), _SIZES, by=by),
            lambda s, a, by: _with_checkpoint(
                s,
                Checkpoint(FoldState(0, _initial_weights(a[0]) * 1.0, np.zeros(3)), _SIZES),
            ),
        ),
        Operation[Weights](
            "enroll",
            _one(_ROUNDS),
            lambda s, a, by: s.enroll(a[0], by=by),
            lambda s, a, by: _with_member(s, by.replica, a[0], NEVER),
        ),
        Operation[Weights](
            "leave",
            st.tuples(_ROUNDS, st.none() | st.integers(1, 8)),
            lambda s, a, by: s.leave(a[0], by=by, member=a[1]),
            lambda s, a, by: _with_member(s, by.replica if a[1] is None else a[1], NEVER, a[0]),
        ),
        Operation[Weights](
            "contribute",
            st.tuples(
                st.none() | _ROUNDS,  # None: the round a worker trains next (D + 1)
                st.sampled_from([0.5, -1.0, 3.0]),
                st.integers(1, 3),
                st.sampled_from(["fp32", "fp16", "int8"]),
            ),
            lambda s, a, by: s.contribute(
                _round_of(s, a),
                _contribution(s, a).payload,
                n_samples=a[2],
                codec=a[3],
                base=_base(s, _round_of(s, a)),
                by=by,
            ),
            lambda s, a, by: _with_slot(
                s, (_round_of(s, a), by.replica), _contribution(s, a).digest
            ),
        ),
        Operation[Weights](
            "skip",
            st.tuples(_ROUNDS, st.integers(1, 8)),
            lambda s, a, by: s.skip(a[0], a[1], by=by),
            lambda s, a, by: _with_slot(s, (a[0], a[1]), SKIP.digest),
        ),
        Operation[Weights](
            "configure",
            st.tuples(
                st.sampled_from(["outer_lr", "outer_momentum"]),
                st.sampled_from([0.0, 0.5, 1.0]),
                _ROUNDS,
            ),
            lambda s, a, by: s.configure(a[0], a[1], a[2], by=by),
            _with_setting,
        ),
        Operation[Weights](
            "compact",
            _one(st.integers(1, 3)),
            lambda s, a, by: s.compact(_compact_to(s, a), by=by),
            lambda s, a, by: _with_checkpoint(s, Checkpoint(s.fold(_compact_to(s, a)), s.sizes)),
            applies=_compactable,
        ),
    ),
    observe=_weights_view,
)


TYPES: Mapping[str, CrdtType[Any]] = MappingProxyType(
    {
        t.name: t
        for t in (
            GCOUNTER,
            PNCOUNTER,
            LWW_REGISTER,
            MV_REGISTER,
            AWSET,
            ORMAP_OF_MVREGISTER,
            ORMAP_OF_AWSET,
            ORMAP_OF_ORMAP,
            APPEND_LOG,
            RGA_LIST,
            WEIGHTS,
        )
    }
)
"""Every type the strategies can build, by name: ``"AWSet"``, ``"ORMap[AWSet]"``, ..."""


# -- scripts --------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    """``repr`` that pastes back into Python, numpy columns included."""
    if isinstance(x, np.ndarray):
        kind = x.dtype.kind
        dtype = (
            "np.dtypes.StringDType()"
            if kind == "T"
            else repr(x.dtype.str)
            if kind == "U"
            else f"np.{x.dtype.name}"
        )
        return f"np.array({x.tolist()!r}, dtype={dtype})"
    if isinstance(x, tuple):
        inner = ", ".join(_fmt(v) for v in x)
        return f"({inner},)" if len(x) == 1 else f"({inner})"
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return repr(x)


@dataclass(frozen=True, eq=False)
class Edit:
    """Replica ``replica`` runs the operation ``op`` with ``args``."""

    replica: int
    op: str
    args: Args

    def __repr__(self) -> str:
        return f"Edit({self.replica}, {self.op!r}, {_fmt(self.args)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints failing examples with this, so they paste back as code.
        printer.text(repr(self))


@dataclass(frozen=True)
class Deliver:
    """Replica ``dst`` joins one delta made by ``src``: its ``index``-th, modulo their number.

    Deltas may so arrive twice, out of order, or never.
    """

    src: int
    dst: int
    index: int


@dataclass(frozen=True)
class Merge:
    """Replica ``dst`` joins the whole state of ``src`` (one anti-entropy exchange)."""

    src: int
    dst: int


Step: TypeAlias = Edit | Deliver | Merge


@dataclass(frozen=True, eq=False)
class Mutation(Generic[S]):
    """What one played edit did.

    Attributes:
        replica: Index of the replica that made it.
        edit: The edit.
        before: The replica's state before (a copy).
        delta: The delta the mutator returned (a copy).
        after: The replica's state after it applied the delta (a copy).
        expected: What `CrdtType.observe` should give for ``after``.
        left_state_alone: Whether the mutator left the state it was called on unchanged.
    """

    replica: int
    edit: Edit
    before: S
    delta: S
    after: S
    expected: object
    left_state_alone: bool


def apply_edit(replica: Replica[S], crdt: CrdtType[S], edit: Edit) -> S | None:
    """Run ``edit`` on ``replica`` through `Replica.mutate`; the delta, or ``None`` if skipped."""
    op = crdt.operation(edit.op)
    if not op.applies(replica.state, edit.args):
        return None
    return replica.mutate(lambda state, *, by: op.run(state, edit.args, by))


@dataclass(eq=False)
class History(Generic[S]):
    """A played script: the replicas at the end, and everything they made on the way.

    Attributes:
        crdt: The type.
        replica_ids: The replicas' ids, by index.
        skews_ms: How far each replica's wall clock is off the simulated true time.
        steps: The script.
        replicas: The replicas after the last step.
        deltas: ``deltas[i]``: the deltas replica ``i`` made, in order.
        mutations: One record per edit played.
    """

    crdt: CrdtType[S]
    replica_ids: tuple[int, ...]
    skews_ms: tuple[int, ...]
    steps: tuple[Step, ...]
    replicas: list[Replica[S]]
    deltas: list[list[S]]
    mutations: list[Mutation[S]]

    def __repr__(self) -> str:
        steps = ",\n        ".join(repr(s) for s in self.steps)
        return (
            f"play(\n    {self.crdt.name!r},\n    replica_ids={list(self.replica_ids)!r},\n"
            f"    skews_ms={list(self.skews_ms)!r},\n    steps=[\n        {steps}\n    ],\n)"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints failing examples with this, so they paste back as code.
        printer.text(repr(self))

    def states(self) -> list[S]:
        """The replicas' states (live objects, not copies)."""
        return [r.state for r in self.replicas]

    def all_deltas(self) -> list[S]:
        """Every delta made, replica by replica."""
        return [d for ds in self.deltas for d in ds]

    def replay(self) -> History[S]:
        """Play the same script again: equal states that share no object with these."""
        return play(self.crdt.name, self.replica_ids, self.steps, self.skews_ms)

    def sync_all(self) -> None:
        """Full-state anti-entropy: every replica joins a snapshot of every other's state."""
        snapshots = [r.state.copy() for r in self.replicas]
        for i, replica in enumerate(self.replicas):
            for j, snapshot in enumerate(snapshots):
                if i != j:
                    replica.receive(snapshot, relay=False)


def play(
    type_name: str,
    replica_ids: Sequence[int],
    steps: Sequence[Step],
    skews_ms: Sequence[int] | None = None,
) -> History[Any]:
    """Play a script on fresh replicas of ``TYPES[type_name]``.

    Simulated time advances one millisecond per step, so playing is deterministic: the same
    script gives equal states every time.

    Example:
        >>> steps = [Edit(0, "add", ("a",)), Merge(0, 1), Edit(1, "remove", ("a",))]
        >>> h = play("AWSet", [1, 2], steps)
        >>> [sorted(s.value()) for s in h.states()]
        [['a'], []]
    """
    crdt = TYPES[type_name]
    skews = tuple(skews_ms) if skews_ms is not None else (0,) * len(replica_ids)
    time = SimulatedTime()
    replicas = [
        Replica(crdt.initial(), ReplicaId(rid), HybridLogicalClock(wall=time.wall(skew)))
        for rid, skew in zip(replica_ids, skews, strict=True)
    ]
    deltas: list[list[Any]] = [[] for _ in replicas]
    mutations: list[Mutation[Any]] = []
    for step in steps:
        time.advance()
        if isinstance(step, Edit):
            replica = replicas[step.replica]
            op = crdt.operation(step.op)
            if not op.applies(replica.state, step.args):
                continue
            before = replica.state.copy()
            delta = op.run(replica.state, step.args, replica.actor)
            untouched = replica.state == before
            expected = op.expect(before, step.args, replica.actor)
            # Through the replica, so its outbox and subscribers see the edit as usual.
            replica.mutate(lambda state, *, by, d=delta: d)
            deltas[step.replica].append(delta)
            mutations.append(
                Mutation(
                    step.replica,
                    step,
                    before,
                    delta.copy(),
                    replica.state.copy(),
                    expected,
                    untouched,
                )
            )
        # Deltas and states are handed over by reference, not copied: a join that wrote
        # into its argument would show up as replicas that no longer converge.
        elif isinstance(step, Deliver):
            made = deltas[step.src]
            if made and step.src != step.dst:
                replicas[step.dst].receive(made[step.index % len(made)], relay=False)
        elif step.src != step.dst:
            replicas[step.dst].receive(replicas[step.src].state, relay=False)
    return History(crdt, tuple(replica_ids), skews, tuple(steps), replicas, deltas, mutations)


# -- strategies -----------------------------------------------------------------------------

REPLICA_IDS = st.one_of(st.integers(1, 8), st.integers(2**63, 2**64 - 1))
"""Small ids (ties easy to read) and ids above 2**63 (the top bit of a uint64 column)."""

SKEWS_MS = st.sampled_from([0, 0, 1, -1, 250, -HOUR_MS, 3 * HOUR_MS])


@cache
def _script(type_name: str, n: int, length: int) -> SearchStrategy[Any]:
    """Replica ids, clock skews and ``length`` steps for ``n`` replicas.

    Cached because Hypothesis validates every new strategy object on first draw, and
    building these afresh for every example costs more than playing it.
    """
    crdt = TYPES[type_name]
    who = st.integers(0, n - 1)
    edits = crdt.edits(n)
    steps = st.one_of(
        edits,
        edits,
        st.builds(Deliver, who, who, st.integers(0, 31)),
        st.builds(Merge, who, who),
    )
    return st.tuples(
        st.lists(REPLICA_IDS, min_size=n, max_size=n, unique=True),
        st.lists(SKEWS_MS, min_size=n, max_size=n),
        st.lists(steps, min_size=length, max_size=length),
    )


@st.composite
def _history(
    draw: st.DrawFn,
    type_name: str,
    replicas: tuple[int, int],
    steps: tuple[int, int],
) -> History[Any]:
    n = draw(st.integers(*replicas))
    # The length is drawn first, as a number: a list strategy would mostly draw short
    # scripts, and the interesting states need a dozen edits or more.
    length = draw(st.integers(*steps))
    ids, skews, script = draw(_script(type_name, n, length))
    return play(type_name, ids, script, skews)


def histories(
    type_name: str,
    *,
    min_replicas: int = 2,
    max_replicas: int = 4,
    min_steps: int = 0,
    max_steps: int = 24,
) -> SearchStrategy[History[Any]]:
    """Histories of ``TYPES[type_name]``: 2-4 replicas and up to 24 steps by default.

    Raises:
        KeyError: If ``type_name`` is not in `TYPES`.
    """
    if type_name not in TYPES:
        raise KeyError(f"unknown type {type_name!r}; known: {sorted(TYPES)}")
    return _history(type_name, (min_replicas, max_replicas), (min_steps, max_steps))


Source: TypeAlias = tuple[str, tuple[int, ...]]
"""Where a sampled state comes from: ``("replica", (i,))`` or ``("deltas", (i, j, ...))``,
the second naming positions in ``History.all_deltas()`` joined, in that order, into bottom."""


@dataclass(frozen=True, eq=False)
class Sample(Generic[S]):
    """States drawn from one history, ready for law checks.

    Attributes:
        history: Where they come from.
        sources: How each state was made from it (see `Source`).
        states: The states (copies: change them freely).
    """

    history: History[S]
    sources: tuple[Source, ...]
    states: tuple[S, ...]

    def __repr__(self) -> str:
        return f"Sample(sources={list(self.sources)!r}, history={self.history!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints failing examples with this, so they paste back as code.
        printer.text(repr(self))

    def replay(self) -> Sample[S]:
        """The same sample built again from scratch: equal states, no shared objects."""
        history = self.history.replay()
        return Sample(history, self.sources, tuple(_build(history, s) for s in self.sources))


def _build(history: History[S], source: Source) -> S:
    kind, picks = source
    if kind == "replica":
        return history.replicas[picks[0]].state.copy()
    state = history.crdt.initial()
    deltas = history.all_deltas()
    for i in picks:
        state.join_inplace(deltas[i])
    return state


@cache
def _picks(made: int) -> SearchStrategy[list[int]]:
    return st.lists(st.integers(0, made - 1), min_size=1, max_size=6)


@st.composite
def _sample(
    draw: st.DrawFn, type_name: str, count: int, histories: SearchStrategy[History[Any]]
) -> Sample[Any]:
    history = draw(histories)
    made = len(history.all_deltas())
    sources: list[Source] = []
    for _ in range(count):
        if made and draw(st.booleans()):
            picks = draw(_picks(made))
            sources.append(("deltas", tuple(picks)))
        else:
            sources.append(("replica", (draw(st.integers(0, len(history.replicas) - 1)),)))
    return Sample(history, tuple(sources), tuple(_build(history, s) for s in sources))


def states(type_name: str, count: int = 3, **history: int) -> SearchStrategy[Sample[Any]]:
    """``count`` states of ``TYPES[type_name]`` from one random history, as a `Sample`.

    Each is a replica's final state or a delta group: a join of some of the history's deltas
    in some order (duplicates and gaps included). Keyword arguments go to `histories`.

    Raises:
        KeyError: If ``type_name`` is not in `TYPES`.
    """
    return _sample(type_name, count, histories(type_name, **history))
