"""Typed hyperparameter schemas: what each config key of a run may hold.

A `Schema` maps key names to `Param`s built with `Int`, `Float`, `Bool`, `Str`, `Choice` and
`List`. Every write is checked at the edge (the person typing it gets the error, not the
trainer an hour later); the message names the key, the value and the rule it broke.

Example:
    >>> schema = Schema({"lr": Float(0.1, min=0.0, max=1.0), "epochs": Int(10, min=1)})
    >>> schema.check("lr", 0.02)
    0.02
    >>> schema.check("lr", 2.0)
    Traceback (most recent call last):
    ...
    convergent.errors.SchemaError: config key 'lr': 2.0 is above the maximum 1.0
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from convergent.crdt.values import Value
from convergent.errors import SchemaError

Kind = Literal["int", "float", "bool", "str", "choice", "list"]
ItemKind = Literal["int", "float", "bool", "str"]

_ARTICLE = {"int": "an int", "float": "a float", "bool": "a bool", "str": "a string"}


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


@dataclass(frozen=True)
class Param:
    """One config key: its kind, its rule and its default.

    Build it with `Int`, `Float`, `Bool`, `Str`, `Choice` or `List` rather than directly.
    """

    kind: Kind
    default: Value
    min: float | None = None
    max: float | None = None
    choices: tuple[Value, ...] = ()
    item: ItemKind | None = None
    max_len: int | None = None
    help: str = ""

    def check(self, key: str, value: Any) -> Value:
        """Return ``value`` as stored (ints given for floats become floats) or raise."""
        where = f"config key {key!r}"
        if self.kind == "choice":
            if not any(type(value) is type(c) and value == c for c in self.choices):
                options = ", ".join(repr(c) for c in self.choices)
                raise SchemaError(f"{where}: {value!r} is not one of {options}")
            return value  # type: ignore[no-any-return]
        if self.kind == "list":
            if type(value) not in (list, tuple):
                raise SchemaError(f"{where}: expected a list, got {_show(value)}")
            if self.max_len is not None and len(value) > self.max_len:
                raise SchemaError(
                    f"{where}: a list of {len(value)} items is longer than the maximum "
                    f"{self.max_len}"
                )
            assert self.item is not None
            items = []
            for i, x in enumerate(value):
                try:
                    items.append(_scalar(self.item, x, self.min, self.max))
                except _RuleError as rule:
                    raise SchemaError(f"{where}: item {i} = {rule}") from None
            return tuple(items)
        try:
            v = _scalar(self.kind, value, self.min, self.max)
        except _RuleError as rule:
            raise SchemaError(f"{where}: {rule}") from None
        if self.kind == "str" and self.max_len is not None and len(value) > self.max_len:
            raise SchemaError(
                f"{where}: a string of {len(value)} characters is longer than the maximum "
                f"{self.max_len}"
            )
        return v

    def to_value(self) -> Value:
        """The param as a register value, so a run's schema replicates like its config."""
        return (
            self.kind,
            self.default,
            self.min,
            self.max,
            self.choices,
            self.item,
            self.max_len,
            self.help,
        )

    @staticmethod
    def from_value(value: Value) -> Param:
        """Inverse of `to_value`; raises `SchemaError` for anything else."""
        if not (isinstance(value, tuple) and len(value) == 8 and value[0] in _KINDS):
            raise SchemaError(f"not a config parameter spec: {value!r}")
        kind, default, lo, hi, choices, item, max_len, text = value
        if not (
            isinstance(choices, tuple)
            and (item in _ARTICLE if kind == "list" else item is None)
            and (len(choices) > 0) == (kind == "choice")
            and (max_len is None or (type(max_len) is int and max_len >= 0))
            and isinstance(text, str)
            and all(b is None or type(b) in (int, float) for b in (lo, hi))
        ):
            raise SchemaError(f"not a config parameter spec: {value!r}")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            raise SchemaError(f"not a config parameter spec (minimum above maximum): {value!r}")
        return Param(kind, default, lo, hi, choices, item, max_len, text)  # type: ignore[arg-type]


_KINDS = ("int", "float", "bool", "str", "choice", "list")


class _RuleError(Exception):
    """A broken rule, before the key is known."""


def _scalar(kind: str, value: Any, lo: float | None, hi: float | None) -> Value:
    t = type(value)
    if kind == "bool":
        if t is not bool:
            raise _RuleError(f"expected a bool, got {_show(value)}")
        return value  # type: ignore[no-any-return]
    if kind == "str":
        if t is not str:
            raise _RuleError(f"expected a string, got {_show(value)}")
        return value  # type: ignore[no-any-return]
    if kind == "int":
        # bool is an int subclass in Python; a config's int is never True.
        if t is not int:
            raise _RuleError(f"expected an int, got {_show(value)}")
        v: int | float = value
    else:
        if t not in (int, float):
            raise _RuleError(f"expected a float, got {_show(value)}")
        v = float(value)
        if not math.isfinite(v):
            raise _RuleError(f"{value!r} is not a finite number")
    if lo is not None and v < lo:
        raise _RuleError(f"{value!r} is below the minimum {lo!r}")
    if hi is not None and v > hi:
        raise _RuleError(f"{value!r} is above the maximum {hi!r}")
    return v


def _bounds(kind: str, lo: float | None, hi: float | None) -> tuple[float | None, float | None]:
    if lo is not None and hi is not None and lo > hi:
        raise SchemaError(f"a {kind} parameter's minimum {lo!r} is above its maximum {hi!r}")
    return lo, hi


def Int(  # noqa: N802 - a constructor, named like the type it declares
    default: int, *, min: int | None = None, max: int | None = None, help: str = ""
) -> Param:
    """An integer key, optionally bounded (inclusive)."""
    lo, hi = _bounds("int", min, max)
    return Param("int", default, min=lo, max=hi, help=help)


def Float(  # noqa: N802
    default: float, *, min: float | None = None, max: float | None = None, help: str = ""
) -> Param:
    """A finite float key, optionally bounded (inclusive); ints written to it become floats."""
    lo, hi = _bounds("float", min, max)
    return Param("float", float(default), min=lo, max=hi, help=help)


def Bool(default: bool, *, help: str = "") -> Param:  # noqa: N802
    """A boolean key."""
    return Param("bool", default, help=help)


def Str(default: str, *, max_len: int | None = None, help: str = "") -> Param:  # noqa: N802
    """A string key, optionally with a maximum length in characters."""
    return Param("str", default, max_len=max_len, help=help)


def Choice(default: Value, choices: tuple[Value, ...] | list[Value], *, help: str = "") -> Param:  # noqa: N802
    """A key that takes one of a fixed set of values."""
    if not choices:
        raise SchemaError("a choice parameter needs at least one choice")
    return Param("choice", default, choices=tuple(choices), help=help)


def List(  # noqa: N802
    default: list[Any] | tuple[Any, ...],
    *,
    item: ItemKind = "float",
    min: float | None = None,
    max: float | None = None,
    max_len: int | None = None,
    help: str = "",
) -> Param:
    """A list of ints, floats, bools or strings (bounds apply to each numeric item)."""
    if item not in _ARTICLE:
        raise SchemaError(f"list items must be int, float, bool or str, not {item!r}")
    lo, hi = _bounds("list", min, max)
    return Param("list", tuple(default), min=lo, max=hi, item=item, max_len=max_len, help=help)


class Schema(Mapping[str, Param]):
    """The config keys of a run and their rules.

    Raises:
        SchemaError: at construction if a default breaks its own rule.
    """

    def __init__(self, params: Mapping[str, Param]) -> None:
        for key, param in params.items():
            if type(key) is not str or not key:
                raise SchemaError(f"config keys are non-empty strings, not {key!r}")
            if not isinstance(param, Param):
                raise SchemaError(f"config key {key!r}: {param!r} is not a Param (use Float(...))")
            param.check(key, param.default)
        self._params = dict(sorted(params.items()))

    def __getitem__(self, key: str) -> Param:
        try:
            return self._params[key]
        except KeyError:
            raise SchemaError(self._unknown(key)) from None

    def __contains__(self, key: object) -> bool:
        return key in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def _unknown(self, key: object) -> str:
        msg = f"unknown config key {key!r}"
        close = difflib.get_close_matches(str(key), self._params, n=1)
        if close:
            return f"{msg}; did you mean {close[0]!r}?"
        known = ", ".join(self._params) or "none"
        return f"{msg}; known keys: {known}"

    def check(self, key: str, value: Any) -> Value:
        """The value as it will be stored, or `SchemaError` naming key, value and rule."""
        return self[key].check(key, value)

    def defaults(self) -> dict[str, Value]:
        """Every key's default."""
        return {k: p.default for k, p in self._params.items()}

    def __repr__(self) -> str:
        return f"Schema({', '.join(self._params)})"
