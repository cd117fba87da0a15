"""`convergent.connect`: a live, offline-first replica of a run on a hub.

The returned `LiveRun` is a `Run` (same API) whose local store keeps every edit, and a
background thread keeps it in step with the hub over a WebSocket: it syncs what is missing on
connect, streams edits both ways, and reconnects with exponential backoff when the hub goes
away. Edits made from any thread (a training loop, a notebook) go through the run's lock and
are handed to the socket as they commit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from convergent.errors import AuthError, ConvergentError, ProtocolError
from convergent.run import Run, RunChange
from convergent.storage import MemoryStore, SQLiteStore, Store
from convergent.sync.protocol import DEFAULT_MAX_FRAME, Code, Role
from convergent.sync.session import ClientSession


def sync_url(url: str) -> tuple[str, str]:
    """``(websocket url, run name)`` from ``http://host:port/runs/NAME`` (or ws://...)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1] == "sync":
        segments = segments[:-1]
    if scheme is None or len(segments) < 2 or segments[-2] != "runs":
        raise ConvergentError(f"{url!r} is not a run URL like http://HOST:PORT/runs/NAME")
    path = "/" + "/".join([*segments, "sync"])
    return urlunsplit((scheme, parts.netloc, path, "", "")), segments[-1]


@dataclass(frozen=True)
class Status:
    """Where a live run stands: online or not, its role, edits the hub has not confirmed."""

    online: bool
    role: str | None
    pending: int
    refused: int
    error: str | None


class LiveRun(Run):
    """A `Run` kept in step with a hub. Build it with `convergent.connect`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        store: Store,
        user: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        backoff: tuple[float, float] = (0.05, 5.0),
    ) -> None:
        super().__init__(store)
        self.url, self.name = sync_url(url)
        self._token = token
        self._user = user
        self._max_frame = max_frame
        self._backoff = backoff
        self._cond = threading.Condition(self._lock)
        self._session: ClientSession | None = None
        self._ws: ClientConnection | None = None
        self._error: str | None = None
        self._fatal = False
        self._refused_seen = 0
        self._stop = threading.Event()
        self._outq: list[bytes] = []
        self._dirty = False
        self._handle = self.on_change(self._local_change)
        self._thread = threading.Thread(target=self._loop, name=f"convergent-{self.name}")
        self._thread.daemon = True
        self._thread.start()
        self._sender = threading.Thread(target=self._send_loop, name=f"convergent-{self.name}-tx")
        self._sender.daemon = True
        self._sender.start()

    # -- status ----------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        with self._lock:
            s = self._session
            online = self._ws is not None and s is not None and s.welcomed
            return Status(
                online,
                s.role.label if s is not None and s.role is not None else None,
                s.pending if s is not None else self.version.ops,
                len(s.refused) if s is not None else 0,
                self._error,
            )

    def wait_synced(self, timeout: float = 10.0) -> None:
        """Block until the hub has confirmed every local edit and this replica has caught up.

        Raises:
            TimeoutError: not synced within ``timeout`` seconds (the status says why).
            AuthError: the hub refused the connection for good (token, run, local store).
            ProtocolError: the hub refused edits (role or schema): they stay local.
        """

        def ready() -> bool:
            s = self._session
            return self._fatal or (
                s is not None and (s.synced or len(s.refused) > self._refused_seen)
            )

        with self._cond:
            if not self._cond.wait_for(ready, timeout):
                raise TimeoutError(f"not synced after {timeout} s: {self.status}")
            if self._fatal:
                raise AuthError(self._error or "the hub refused this client")
            s = self._session
            if s is not None and len(s.refused) > self._refused_seen:
                refused = s.refused[self._refused_seen :]
                self._refused_seen = len(s.refused)
                # Refused edits stay on this replica only: say so rather than "synced".
                raise ProtocolError(
                    "the hub refused edits (they stay on this replica only): "
                    + "; ".join(e.message for e in refused)
                )
        # (AuthError also covers an unknown run and a local store of another run: errors
        # that reconnecting cannot fix.)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate()`` holds (checked after every frame from the hub).

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"condition not met after {timeout} s: {self.status}")

    def present(self, state: str) -> None:
        """Tell the run's other clients what this user is looking at (never stored)."""
        with self._lock:
            if self._ws is not None and self._session is not None and self._session.welcomed:
                self._send([self._session.presence_frame(self._user or "", state)])

    def others(self) -> dict[int, tuple[str, str]]:
        """Other clients' presence: replica id -> (user, state)."""
        with self._lock:
            s = self._session
            return {} if s is None else {r: (p.user, p.state) for r, p in s.presence.items()}

    # -- the socket ------------------------------------------------------------------------
    def _send(self, frames: list[bytes]) -> None:
        """Hand frames to the sender thread (called holding the run's lock)."""
        if frames and self._ws is not None:
            self._outq.extend(frames)
            self._cond.notify_all()

    def _local_change(self, change: RunChange) -> None:
        # Runs under the run's lock, on the thread that made the edit: only flag the change,
        # so a training step never waits on the network.
        if change.local:
            self._dirty = True
            self._cond.notify_all()

    def _send_loop(self) -> None:
        """The one thread that writes to the socket: queued replies, then local edits."""
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stop.is_set() or self._outq or (self._dirty and self._ws),
                    timeout=1.0,
                )
                ws, session = self._ws, self._session
                if ws is None or session is None:
                    self._outq.clear()
                    continue
                frames, self._outq = self._outq, []
                if self._dirty:
                    self._dirty = False
                    try:
                        frames += session.outgoing()
                    except Exception as err:  # a store error: report it, reconnect, retry
                        self._error = f"cannot export local edits: {err}"
                        ws.close()
                        continue
            try:
                for frame in frames:
                    ws.send(frame)
            except (ConnectionClosed, OSError):
                pass  # the receive loop sees the close and reconnects; nothing is lost
            except Exception as err:  # never die silently: report, and reconnect
                with self._cond:
                    self._error = f"sending failed: {err}"
                ws.close()

    def _loop(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                with ws_connect(
                    self.url, max_size=self._max_frame, open_timeout=10, close_timeout=1
                ) as ws:
                    self._serve(ws)
                    delay = self._backoff[0]
            except ProtocolError as err:
                with self._cond:
                    self._error = str(err)
                    s = self._session
                    code = s.error.code if s is not None and s.error is not None else None
                    if code in (Code.AUTH, Code.UNKNOWN_RUN, Code.UNSUPPORTED) or (
                        code is None and "another local store" in str(err)
                    ):
                        self._fatal = True
                    if s is not None and s.error is not None and s.error.code is Code.SLOW:
                        delay = 0  # behind, not broken: catch up at once
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError) as err:
                with self._cond:
                    self._error = f"offline: {err}"
            except ConvergentError as err:  # bytes from the hub this replica cannot merge
                with self._cond:
                    self._error = f"the hub sent what this replica cannot merge: {err}"
            finally:
                with self._cond:
                    self._ws = None
                    self._cond.notify_all()
            if self._fatal or self._stop.wait(delay):
                return
            delay = min(max(delay * 2, self._backoff[0]), self._backoff[1])

    def _serve(self, ws: ClientConnection) -> None:
        session = ClientSession(self, self.name, self._token, self._max_frame)
        with self._cond:
            self._ws, self._session, self._error = ws, session, None
            self._refused_seen = 0
            self._outq = [session.hello()]
            self._cond.notify_all()
        while not self._stop.is_set():
            try:
                data = ws.recv(timeout=0.25)
            except TimeoutError:
                continue
            if isinstance(data, str):
                raise ProtocolError("the hub sent a text frame")
            with self._cond:
                was_caught_up = session.caught_up
                frames = session.receive(data)
                self._send(frames)
                if not was_caught_up and session.caught_up:
                    self._identify(session)  # now that this replica holds the hub's run
                self._cond.notify_all()

    def _identify(self, session: ClientSession) -> None:
        writes = session.role not in (None, Role.VIEWER)
        if (
            self._user is not None
            and writes
            and self.members.name_of(self.replica_id) != self._user
        ):
            self.members.identify(self._user)

    def close(self) -> None:
        """Stop syncing and close the local store (edits not yet confirmed stay there and
        are sent next time this store connects)."""
        self._stop.set()
        with self._lock:
            ws = self._ws
        if ws is not None:
            ws.close()
        with self._cond:
            self._cond.notify_all()
        for thread in (self._thread, self._sender):
            if threading.current_thread() is not thread:
                thread.join(timeout=5)
        self._handle.remove()
        super().close()

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(
    url: str,
    token: str,
    *,
    path: str | os.PathLike[str] | None = None,
    user: str | None = None,
    wait: float | None = 10.0,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> LiveRun:
    """Connect to a run on a hub; returns a live `Run`.

    Args:
        url: the run's URL, ``http://HOST:PORT/runs/NAME``.
        token: an access token (``convergent token create``).
        path: the local store (a ``.convergent`` file: edits made offline survive restarts);
            in memory if omitted.
        user: who edits through this replica.
        wait: seconds to wait for the first sync (``None``: return at once, sync later).

    Raises:
        AuthError: the hub refused the token.
        TimeoutError: the hub could not be reached within ``wait`` seconds (the run keeps
            trying in the background; close it if you do not want that).
    """
    store: Store = SQLiteStore(path) if path is not None else MemoryStore()
    run = LiveRun(url, token, store=store, user=user, max_frame=max_frame)
    if wait is not None:
        try:
            run.wait_synced(wait)
        except BaseException:
            run.close()
            raise
    return run
