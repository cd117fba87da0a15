"""Metrics: ``run.log({...}, step=...)`` and ``run.metrics(name)``.

Each replica appends to its own log in the ``metrics`` part (an `AppendLog` with columns
step, time, metric, value), so two trainers logging at once never conflict: a metric is the
union of every writer's points. Names are hashed into the ``metric`` column (64-bit BLAKE2b)
and listed in the ``metric_names`` set, so a point costs four numbers, not a string.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convergent.crdt import AppendLog, AWSet
from convergent.crdt.clock import wall_ms
from convergent.errors import SchemaError
from convergent.run.ops import Part

if TYPE_CHECKING:
    from convergent.run.document import Run


@functools.lru_cache(maxsize=4096)
def metric_id(name: str) -> int:
    """The signed 64-bit id of a metric name (its BLAKE2b hash)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


@dataclass(frozen=True)
class MetricSeries:
    """Every point of one metric, ordered by step (then writer, then log order).

    ``step``, ``value``, ``time`` (Unix ms) and ``writer`` (replica id) are aligned, read-only
    numpy arrays.
    """

    name: str
    step: NDArray[np.int64]
    value: NDArray[np.float64]
    time: NDArray[np.int64]
    writer: NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.step)

    def last(self) -> float | None:
        """The value at the highest step, or ``None`` if nothing was logged."""
        return float(self.value[-1]) if len(self.value) else None


def _check(values: Mapping[str, Any]) -> tuple[list[str], list[float]]:
    if not isinstance(values, Mapping):
        raise SchemaError(f"run.log takes a mapping of metric name to number, not {values!r}")
    names, numbers = [], []
    for name, v in values.items():
        if type(name) is not str or not name:
            raise SchemaError(f"a metric name is a non-empty string, not {name!r}")
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise SchemaError(f"metric {name!r}: {v!r} is not a number")
        names.append(name)
        numbers.append(float(v))
    return names, numbers


def log(run: Run, values: Mapping[str, Any], step: int | None) -> None:
    names, numbers = _check(values)
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0
    ):
        raise SchemaError(f"a step is an int >= 0, not {step!r}")
    if not names:
        return
    with run._lock:
        if step is None:
            step = _last_step(run) + 1
        run._last_step = int(step)
        known = run._metric_names
        if known[0] != run._part_revision(Part.METRIC_NAMES):
            names_now = {str(x) for x in run._state(Part.METRIC_NAMES).elements()}
            known = run._metric_names = (run._part_revision(Part.METRIC_NAMES), names_now)
        new = [n for n in dict.fromkeys(names) if n not in known[1]]
        n = len(names)
        cols = {
            "step": np.full(n, int(step), dtype=np.int64),
            "time": np.full(n, wall_ms(run.clock.now()), dtype=np.int64),
            "metric": np.array([metric_id(x) for x in names], dtype=np.int64),
            "value": np.array(numbers, dtype=np.float64),
        }
        with run.transaction():
            if new:
                run._edit(Part.METRIC_NAMES, AWSet.add_many, new)
            run._edit(Part.METRICS, AppendLog.append_many, cols)


def _last_step(run: Run) -> int:
    last = run._last_step
    if last is None:
        steps = run._state(Part.METRICS).rows_of(run.replica_id, "step")
        last = int(steps.max()) if len(steps) else -1
    return int(last)


def series(run: Run, name: str) -> MetricSeries:
    if type(name) is not str:
        raise SchemaError(f"a metric name is a string, not {name!r}")
    with run._lock:
        rev = run._part_revision(Part.METRICS)
        cached = run._metric_cache.get(name)
        if cached is not None and cached[0] == rev:
            return cached[1]  # type: ignore[no-any-return]
        state: AppendLog = run._state(Part.METRICS)
        mid = metric_id(name)
        steps, values, times, writers = [], [], [], []
        for w in state.writers():
            mask = state.rows_of(w, "metric") == mid
            if not mask.any():
                continue
            steps.append(state.rows_of(w, "step")[mask])
            values.append(state.rows_of(w, "value")[mask])
            times.append(state.rows_of(w, "time")[mask])
            writers.append(np.full(int(mask.sum()), w, dtype=np.uint64))
        if steps:
            step = np.concatenate(steps)
            order = np.argsort(step, kind="stable")
            out = MetricSeries(
                name,
                _ro(step[order]),
                _ro(np.concatenate(values)[order]),
                _ro(np.concatenate(times)[order]),
                _ro(np.concatenate(writers)[order]),
            )
        else:
            out = MetricSeries(
                name,
                _ro(np.empty(0, np.int64)),
                _ro(np.empty(0, np.float64)),
                _ro(np.empty(0, np.int64)),
                _ro(np.empty(0, np.uint64)),
            )
        run._metric_cache[name] = (rev, out)
        return out


def _ro(a: NDArray[Any]) -> NDArray[Any]:
    a.flags.writeable = False
    return a
