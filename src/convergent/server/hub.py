"""`Hub`: the runs a hub holds, its tokens, and the live connections of each run.

Each run is a `Run` replica in its own SQLite file under ``DATA/runs/NAME.convergent``; the
hub merges what clients send into it (so an acknowledged op is durable: `Run.merge`
commits before it returns) and forwards the new ops to the run's other connections. Every
connection has a bounded queue: a subscriber that falls further behind than the queue holds
is told to reconnect (it then catches up from its version, with bytes proportional to what
it missed), so a fast writer never grows the hub's memory without bound.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from convergent.codec.tags import Tag
from convergent.crdt import CausalContext, ReplicaId
from convergent.errors import SchemaError, StorageError
from convergent.run import Param, Run
from convergent.server.tokens import ALL_RUNS, TokenStore
from convergent.storage import SQLiteStore
from convergent.sync.protocol import DEFAULT_MAX_FRAME, Code, Error, Ops, Role, encode_frame
from convergent.sync.session import WRITABLE, HubSession, Outcome

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
T = TypeVar("T")
DEFAULT_QUEUE_MIB = 16  # what a connection may have waiting before it is told to reconnect
FRAME_COST = 64  # bytes charged per queued frame beside its own (the Python objects holding it)


def check_run_name(name: str) -> str:
    if not RUN_NAME.fullmatch(name):
        raise SchemaError(
            f"run name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


@dataclass(eq=False)
class Connection:
    """One client connection: its session and its outgoing queue, bounded in bytes.

    ``limit`` bounds what may wait: a frame that would take the waiting bytes (each frame
    charged `FRAME_COST` more) past it gets the connection one SLOW error and a close. A
    frame offered when nothing is waiting always goes in (one frame may be larger than the
    limit). The answer to HELLO (WELCOME and the catch-up, what the client asked for) goes in
    uncharged: it is the first thing queued, and live frames queue behind it by the limit.
    """

    session: HubSession
    limit: int
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    queued: int = 0  # charged bytes waiting, FRAME_COST per frame included
    closing: bool = False
    _uncharged: int = 0  # frames at the head of the queue put there uncharged

    def finish(self, last: list[bytes]) -> None:
        """Send ``last`` (an error frame) and close; whatever was waiting is dropped."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queued = self._uncharged = 0
        self.closing = True
        for frame in last:
            self._put(frame)
        self.queue.put_nowait(None)

    def offer(self, frame: bytes, *, hello: bool = False) -> str:
        """Queue a frame (``hello``: part of the answer to HELLO): ``"queued"``,
        ``"dropped"`` (closing), or ``"slow"``: it would pass the limit, so the connection
        gets one SLOW error and a close."""
        if self.closing:
            return "dropped"
        if hello:
            self.queue.put_nowait(frame)
            self._uncharged += 1
            return "queued"
        if not self.queued or self.queued + len(frame) + FRAME_COST <= self.limit:
            self._put(frame)
            return "queued"
        slow = Error(Code.SLOW, 0, "fell too far behind the run; reconnect to catch up")
        self.finish([encode_frame(slow)])
        return "slow"

    def taken(self, frame: bytes | None) -> None:
        """The sender took ``frame`` off the queue."""
        if frame is None:
            return
        if self._uncharged:
            self._uncharged -= 1
        else:
            self.queued -= len(frame) + FRAME_COST

    def _put(self, frame: bytes) -> None:
        self.queue.put_nowait(frame)
        self.queued += len(frame) + FRAME_COST


@dataclass
class Stats:
    """Counters for ``/metrics``."""

    frames_in: int = 0
    frames_out: int = 0
    ops_acked: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    connections_total: int = 0


class Hub:
    """The runs and tokens of a hub, stored under ``data``.

    Args:
        data: the data folder (created): ``runs/*.convergent`` and ``tokens.sqlite``.
        max_frame: the largest frame accepted, in bytes.
        queue_mib: what a connection may have waiting, in MiB, before it must reconnect.
        durability: ``"normal"``: an acknowledged edit survives a killed hub process;
            ``"full"``: also a power loss (an fsync per commit).
    """

    def __init__(
        self,
        data: str | Path,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        queue_mib: float = DEFAULT_QUEUE_MIB,
        durability: Literal["normal", "full"] = "normal",
    ) -> None:
        if not 0 < queue_mib < 2**30:
            raise ValueError(f"a connection queue holds more than 0 MiB, not {queue_mib}")
        self.data = Path(data)
        self.runs_dir = self.data / "runs"
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"{self.data}: cannot create the hub's data folder: {err}") from None
        self.tokens = TokenStore(self.data / "tokens.sqlite")
        self.max_frame = max_frame
        self.queue_limit = int(queue_mib * 2**20)  # bytes
        self.durability: Literal["normal", "full"] = durability
        self._runs: dict[str, Run] = {}
        self.connections: dict[str, set[Connection]] = {}
        self.stats = Stats()

    # -- runs ------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.runs_dir / f"{name}.convergent"

    def run(self, name: str) -> Run | None:
        """The hub's replica of run ``name`` (opened on first use), or ``None``."""
        if not RUN_NAME.fullmatch(name):
            return None
        run = self._runs.get(name)
        if run is None and self._path(name).exists():
            run = self._open(name)
        return run

    def _open(self, name: str) -> Run:
        store = SQLiteStore(self._path(name), durability=self.durability)
        run = self._runs[name] = Run(store, user="hub")
        return run

    def create_run(self, name: str, config: Mapping[str, Param] | None = None) -> Run:
        """Create a run (or declare more config keys on an existing one)."""
        check_run_name(name)
        run = self.run(name)
        if run is None:
            run = self._open(name)
        if config:
            run.config.declare(config)
        run.id  # noqa: B018 - fixes the run id now, so every client joins the same run
        return run

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.runs_dir.glob("*.convergent"))

    def authorize(self, token: str, run: str) -> Role | None:
        return self.tokens.role_for(token, run)

    def ensure_admin_token(self) -> str | None:
        """Create the admin token on first start; returns it (``None`` if tokens exist)."""
        if len(self.tokens):
            return None
        return self.tokens.create(ALL_RUNS, Role.ADMIN, note="admin (first start)")

    # -- connections -----------------------------------------------------------------------
    def open_connection(self, name: str) -> Connection:
        self.stats.connections_total += 1
        session = HubSession(name, self.run, self.authorize, self.max_frame)
        return Connection(session, self.queue_limit)

    def receive(self, conn: Connection, data: bytes) -> Outcome:
        """Handle one frame of ``conn``: reply, forward, and register it once welcomed."""
        self.stats.frames_in += 1
        session = conn.session
        was_welcomed = session.run is not None
        out = session.receive(data)
        if not was_welcomed and session.run is not None:
            # Registered in the same step as its catch-up was computed: no op falls between.
            self.connections.setdefault(session.name, set()).add(conn)
        for frame in out.reply:
            if frame[0] == Tag.ERROR:
                self.stats.errors[_code_name(frame)] += 1
            elif frame[0] == Tag.ACK:
                self.stats.ops_acked += 1
        if out.close:
            conn.finish(out.reply)
            return out
        hello = not was_welcomed  # its answer (WELCOME, the catch-up) goes in uncharged
        for frame in out.reply:
            if conn.offer(frame, hello=hello) == "slow":
                self.stats.errors["slow"] += 1
        for frame in out.broadcast:
            for other in self.connections.get(session.name, ()):
                if other is not conn and other.offer(frame) == "slow":
                    self.stats.errors["slow"] += 1
        return out

    def act(self, name: str, replica: ReplicaId, role: Role, edit: Callable[[Run], T]) -> T:
        """Run ``edit(run)`` as replica ``replica`` (a browser session) with ``role``'s rights.

        The edit's ops are ops of ``replica`` (see `Run.acting_as`), committed to the run's
        store and then forwarded to every sync connection of the run, exactly like ops a
        client sent.

        Raises:
            KeyError: no such run.
            AuthError: ``role`` may not write a part the edit changes (nothing is changed).
            SchemaError: the edit's values break the run's schema (nothing is changed).
        """
        run = self.run(name)
        if run is None:
            raise KeyError(f"no run {name!r} on this hub")
        with run._lock:
            position = run._position
            with run.acting_as(replica, writable=WRITABLE[role]):
                result = edit(run)
            if run._position != position:
                bundle, _, _ = run._export_after(position, CausalContext())
                self.stats.ops_acked += 1
                frame = encode_frame(Ops(0, bundle))
                for conn in self.connections.get(name, ()):
                    if conn.offer(frame) == "slow":
                        self.stats.errors["slow"] += 1
        return result

    def close_connection(self, conn: Connection) -> None:
        conns = self.connections.get(conn.session.name)
        if conns is not None:
            conns.discard(conn)

    def close(self) -> None:
        for run in self._runs.values():
            run.close()
        self._runs.clear()
        self.tokens.close()

    # -- reading ---------------------------------------------------------------------------
    def summary(self, name: str) -> dict[str, Any] | None:
        """A run as JSON-ready data (the REST API's run state)."""
        run = self.run(name)
        if run is None:
            return None
        metrics = {}
        for m in run.metric_names():
            series = run.metrics(m)
            metrics[m] = {
                "points": len(series),
                "last": series.last(),
                "last_step": int(series.step[-1]) if len(series) else None,
            }
        return {
            "name": name,
            "id": run.id,
            "ops": run.version.ops,
            "state": run.control.state,
            "config": {k: _json(v) for k, v in run.config.to_dict().items()},
            "conflicts": [
                {
                    "key": c.key,
                    "values": [
                        {
                            "value": _json(w.value),
                            "author": run.members.name_of(w.author),
                            "time": w.time.isoformat(),
                        }
                        for w in c.values
                    ],
                    "resolved": _json(c.resolved),
                }
                for c in run.config.conflicts()
            ],
            "samples": len(run.dataset),
            "labels": {str(k): v for k, v in run.dataset.counts().items()},
            "metrics": metrics,
            "notes": [
                {"id": c.id, "text": c.text, "resolved": c.resolved} for c in run.notes.list()
            ],
            "description": run.notes.description,
            "members": [{"user": m.user, "role": m.role} for m in run.members.list()],
            "connections": len(self.connections.get(name, ())),
        }


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _code_name(frame: bytes) -> str:
    try:
        return Code(frame[2]).name.lower()
    except (ValueError, IndexError):
        return "unknown"
