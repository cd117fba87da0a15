"""convergent: real-time collaborative model training on CRDTs.

See README.md for the quickstart and DESIGN.md (in the project's shared notes) for the map.

Example:
    >>> import convergent, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.convergent")
    >>> with convergent.open(path, config={"lr": convergent.Float(0.1, min=0.0)}) as run:
    ...     run.config["lr"] = 0.02
    >>> with convergent.open(path) as run:           # everything that returned is there
    ...     run.config["lr"]
    0.02
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

__version__ = "0.1.0"

from convergent.errors import (
    AuthError,
    ConvergentError,
    DecodeError,
    ProtocolError,
    SchemaError,
    StorageError,
)

if TYPE_CHECKING:
    from convergent.run import Param, Run
    from convergent.sync.client import LiveRun

__all__ = [
    "AuthError",
    "ConvergentError",
    "DecodeError",
    "ProtocolError",
    "SchemaError",
    "StorageError",
    "__version__",
    "connect",
    "open",
]


def open(
    path: str | os.PathLike[str],
    *,
    config: Mapping[str, Param] | None = None,
    user: str | None = None,
    join: bytes | None = None,
    durability: Literal["normal", "full"] = "normal",
) -> Run:
    """Open (or create) a run stored in a local SQLite file.

    Every edit is committed to the file before the call that made it returns; a reopened
    run has everything. Close it (or use ``with``) to release the file for other processes.

    Args:
        path: the run file, e.g. ``"runs/digits.convergent"`` (folders are created).
        config: config keys to declare (kept if already declared alike).
        user: who edits through this replica.
        join: another replica's ``run.export_since()`` bytes: a new file joins that run.
        durability: ``"normal"`` survives a killed process; ``"full"`` also power loss.

    Raises:
        StorageError: the file is not a convergent store, is damaged, or is open elsewhere.
    """
    from convergent.run import Run
    from convergent.storage import SQLiteStore

    store = SQLiteStore(path, durability=durability)
    try:
        return Run(store, config=config, user=user, join=join)
    except BaseException:
        store.close()
        raise


def connect(
    url: str,
    token: str,
    *,
    path: str | os.PathLike[str] | None = None,
    user: str | None = None,
    wait: float | None = 10.0,
    max_frame: int | None = None,
) -> LiveRun:
    """Connect to a run on a hub (``http://HOST:PORT/runs/NAME``); returns a live `Run`.

    See `convergent.sync.client.connect` (``run.wait_synced(timeout)``, ``run.status``).
    """
    from convergent.sync.client import connect as live
    from convergent.sync.protocol import DEFAULT_MAX_FRAME

    frame = max_frame if max_frame is not None else DEFAULT_MAX_FRAME
    return live(url, token, path=path, user=user, wait=wait, max_frame=frame)


def __getattr__(name: str) -> Any:
    # The public names of convergent.run, importable from the top (loaded on first use, so
    # `import convergent.crdt` stays light).
    import convergent.run

    if name in convergent.run.__all__:
        return getattr(convergent.run, name)
    raise AttributeError(f"module 'convergent' has no attribute {name!r}")
