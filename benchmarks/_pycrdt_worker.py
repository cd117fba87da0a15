"""One pycrdt workload in a child process, so the parent can time it out or survive an abort.

Usage::

    python -m benchmarks._pycrdt_worker extend N REPEAT   # Array.extend(N items), one txn
    python -m benchmarks._pycrdt_worker mapset N REPEAT   # Map with N keys, one txn

Prints one JSON line per finished run, flushed at once: ``{"seconds": s, "bytes": n}``
where ``n`` is ``len(doc.get_update())``.
"""

from __future__ import annotations

import gc
import json
import sys
import time

from benchmarks.harness import dataset


def _extend(n: int) -> tuple[float, int]:
    from pycrdt import Array, Doc

    items = list(range(n))
    doc = Doc()
    arr = doc.get("a", type=Array)
    gc.collect()
    t0 = time.perf_counter()
    with doc.transaction():
        arr.extend(items)
    dt = time.perf_counter() - t0
    if len(arr) != n:
        raise AssertionError(f"array holds {len(arr)} items, expected {n}")
    return dt, len(doc.get_update())


def _mapset(n: int) -> tuple[float, int]:
    from pycrdt import Doc, Map

    ids, labels = dataset(n, seed=1)
    keys = [str(k) for k in ids.tolist()]
    values = labels.tolist()
    doc = Doc()
    m = doc.get("m", type=Map)
    gc.collect()
    t0 = time.perf_counter()
    with doc.transaction():
        for k, v in zip(keys, values, strict=True):
            m[k] = v
    dt = time.perf_counter() - t0
    if len(m) != n:
        raise AssertionError(f"map holds {len(m)} keys, expected {n}")
    return dt, len(doc.get_update())


def main(argv: list[str]) -> int:
    mode, n, repeat = argv[0], int(argv[1]), int(argv[2])
    work = {"extend": _extend, "mapset": _mapset}[mode]
    for _ in range(repeat):
        seconds, nbytes = work(n)
        print(json.dumps({"seconds": seconds, "bytes": nbytes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
