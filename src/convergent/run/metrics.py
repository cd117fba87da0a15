"""Metrics: ``run.log({...}, step=...)`` and ``run.metrics(name)``.

Each replica appends to its own log in the ``metrics`` part (an `AppendLog` with columns
step, time, metric, value), so two trainers logging at once never conflict: a metric is the
union of every writer's points. The ``metric`` column holds a small per-writer index; the
``metric_names`` part maps ``"writer:index"`` to the name. Only the writer ever writes its
own keys, so the mapping never conflicts, and a point costs four small numbers (about
11 bytes encoded), not a string or a 64-bit hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convergent.crdt import AppendLog, MVRegister, ORMap
from convergent.crdt.clock import wall_ms
from convergent.errors import SchemaError
from convergent.run.ops import Part

if TYPE_CHECKING:
    from convergent.run.document import Run


def name_key(writer: int, index: int) -> str:
    """The ``metric_names`` key of a writer's metric index."""
    return f"{writer:016x}:{index}"


def names_by_writer(run: Run) -> dict[int, dict[str, int]]:
    """writer -> {metric name: index in that writer's metric column} (cached per revision)."""
    rev = run._part_revision(Part.METRIC_NAMES)
    if run._metric_names[0] != rev:
        out: dict[int, dict[str, int]] = {}
        for key, reg in run._state(Part.METRIC_NAMES).items():
            writer, _, index = str(key).partition(":")
            name = reg.resolved() if isinstance(reg, MVRegister) and reg.entries else None
            try:
                w, i = int(writer, 16), int(index)
            except ValueError:
                continue  # not a key this build writes: skipped, never a crash
            if type(name) is str:
                out.setdefault(w, {})[name] = i
        run._metric_names = (rev, out)
    return run._metric_names[1]


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


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise SchemaError(f"a step is an int >= 0, not {step!r}")
    return int(step)


def log(run: Run, values: Mapping[str, Any], step: int | None) -> None:
    names, numbers = _check(values)
    if step is not None:
        step = _check_step(step)
    if not names:
        return
    with run._lock:
        # The default step is one past the highest this replica logged, live or reopened.
        if step is None:
            step = _last_step(run) + 1
        _append(run, [step] * len(names), [wall_ms(run.clock.now())] * len(names), names, numbers)


def log_many(
    run: Run,
    steps: Sequence[int],
    values: Sequence[Mapping[str, Any]],
    times: Sequence[int] | None,
) -> None:
    if len(steps) != len(values) or (times is not None and len(times) != len(steps)):
        raise SchemaError("run.log_many takes as many steps (and times) as value mappings")
    now = wall_ms(run.clock.now())
    col_steps: list[int] = []
    col_times: list[int] = []
    names: list[str] = []
    numbers: list[float] = []
    for i, (step, row) in enumerate(zip(steps, values, strict=True)):
        row_names, row_numbers = _check(row)
        k = len(row_names)
        col_steps += [_check_step(step)] * k
        col_times += [int(times[i]) if times is not None else now] * k
        names += row_names
        numbers += row_numbers
    if names:
        with run._lock:
            _append(run, col_steps, col_times, names, numbers)


def _append(
    run: Run, steps: list[int], times: list[int], names: list[str], numbers: list[float]
) -> None:
    """One op: the points (one per name), and the names this writer has not indexed yet."""
    run._last_step = max(_last_step(run), *steps)
    mine = dict(names_by_writer(run).get(run.replica_id, {}))
    new = [x for x in dict.fromkeys(names) if x not in mine]
    nxt = max(mine.values(), default=-1) + 1
    for k, x in enumerate(new):
        mine[x] = nxt + k
    cols = {
        "step": np.array(steps, dtype=np.int64),
        "time": np.array(times, dtype=np.int64),
        "metric": np.array([mine[x] for x in names], dtype=np.int64),
        "value": np.array(numbers, dtype=np.float64),
    }
    with run.transaction():
        if new:
            keys = [name_key(run.replica_id, mine[x]) for x in new]
            run._edit(Part.METRIC_NAMES, ORMap.set_many, keys, new)
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
        index = names_by_writer(run)
        steps, values, times, writers = [], [], [], []
        for w in state.writers():
            mid = index.get(w, {}).get(name)
            if mid is None:
                continue
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
