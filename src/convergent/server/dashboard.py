"""The dashboard: its pages, its static files, and the JSON channel a browser speaks.

    GET  /                  the runs list (HTML for browsers; plain text for curl)
    GET  /runs/NAME         the run page
    GET  /static/...        the page's scripts, styles and vendored uPlot
    GET  /api/overview      runs with state, last metrics and who is online (Bearer token)
    WS   /runs/NAME/ui      the dashboard channel (PROTOCOL.md, "The dashboard channel")

A browser does not hold a replica of its own (that would mean porting the codec to
JavaScript). The hub holds one for it: each WebSocket session gets a fresh random replica id
and its edits run on the hub's replica *as* that id (`Hub.act`), so each edit is an op of
that person's replica, checked against their token's role and the run's schema, committed,
then forwarded to every sync client exactly like an op a Python client sent.

Server to browser: ``welcome`` with the full view, then ``update`` pushes with only the parts
that changed, at most one every `PUSH_INTERVAL` seconds per run however fast a trainer logs
(metric points go incrementally: only those since the last push). Every edit is answered by
``ack`` (after its commit) or ``error`` with the refusal's text. Everything runs on the hub's
event loop; the view of a big run is built from cached numpy columns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from convergent import __version__
from convergent.crdt import AppendLog, ReplicaId
from convergent.crdt.causal import new_replica_id
from convergent.crdt.replica import Subscription
from convergent.errors import AuthError, ConvergentError, ProtocolError, SchemaError
from convergent.run import Part, Run, RunChange
from convergent.run.config import applied_key
from convergent.run.dataset import format_id, parse_id, resolved_values
from convergent.run.metrics import names_by_writer
from convergent.server.hub import Hub
from convergent.sync.protocol import Role
from convergent.sync.session import WRITABLE

STATIC = Path(__file__).parent / "static"
PUSH_INTERVAL = 0.1  # seconds between two pushes of one run: a trainer never floods a browser
REFRESH_INTERVAL = 2.0  # connections and presence are re-read this often while anyone watches
MAX_MESSAGE = 1 << 20  # the largest message a browser may send (characters)
QUEUE = 256  # messages a session may have waiting; a browser further behind reloads
MAX_BATCH = 10_000  # samples one edit may name
MAX_THUMBS = 1_000  # thumbnails one request may ask for
FIRST_THUMBS = 200  # thumbnails sent with the first view: the grid's first page (dataset.js PAGE)
PREVIEW = 4_000  # a longer metric series is previewed in the first view, then sent whole
HISTORY_SHOWN = 300  # history entries in the view (newest)
HISTORY_SHARE = 10  # the history query may take at most 1/10 of the hub's loop
VIEWS = ("charts", "config", "dataset", "notes", "history", "checkpoints")
COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#9a6324", "#800000")
_METRIC_PARTS = frozenset({"metrics", "metric_names"})


class MessageError(ProtocolError):
    """A browser message this channel does not accept (its text goes back to the browser)."""


# -- encoding helpers ----------------------------------------------------------------------
def _b64(a: NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _iso(t: Any) -> str:
    return str(t.isoformat())


def thumbnail(payload: Any) -> dict[str, Any] | None:
    """A small grey image of a payload (``w``, ``h``, base64 of ``w*h`` bytes), else a text.

    Digits (8x8, values 0..16) keep their scale; other arrays are stretched to 0..255.
    """
    if isinstance(payload, str):
        return {"text": payload[:60]}
    if isinstance(payload, bytes):
        return {"text": f"{len(payload):,} bytes"}
    arr = np.asarray(payload)
    if arr.ndim == 1:
        side = math.isqrt(arr.size)
        if side * side != arr.size or side == 0:
            return {"text": ", ".join(f"{v:.3g}" for v in arr[:6].tolist())}
        arr = arr.reshape(side, side)
    if arr.ndim != 2 or arr.shape[0] > 64 or arr.shape[1] > 64 or arr.size == 0:
        return {"text": f"array {'x'.join(map(str, arr.shape))}"}
    x = arr.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 16 and arr.dtype.kind in "iu":
        lo, hi = 0.0, 16.0  # digits: keep the dataset's own scale
    scaled = np.zeros_like(x) if hi <= lo else (x - lo) * (255.0 / (hi - lo))
    px = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return {"w": int(arr.shape[1]), "h": int(arr.shape[0]), "px": _b64(px)}


def _points(mode: str, step: NDArray[Any], value: NDArray[Any]) -> dict[str, Any]:
    return {
        "mode": mode,
        "points": len(step),
        "step": _b64(step.astype("<f8")),
        "value": _b64(value.astype("<f8")),
    }


def _preview(step: NDArray[Any], value: NDArray[Any]) -> dict[str, Any]:
    """A long series as the min and the max of each of `PREVIEW` // 2 buckets, in step
    order: at chart resolution it draws the same picture as every point."""
    n, buckets = len(value), PREVIEW // 2
    size = -(-n // buckets)
    flat = np.full(buckets * size, np.nan)
    flat[:n] = value
    v = flat.reshape(buckets, size)
    missing = np.isnan(v)
    base = np.arange(buckets) * size
    lows = np.where(missing, np.inf, v).argmin(axis=1) + base
    highs = np.where(missing, -np.inf, v).argmax(axis=1) + base
    at = np.unique(np.concatenate([lows, highs]))
    at = at[at < n]
    return {
        "mode": "preview",
        "points": len(at),
        "step": _b64(step[at].astype("<f8")),
        "value": _b64(value[at].astype("<f8")),
    }


# -- message checking ----------------------------------------------------------------------
def _get(msg: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in msg:
        raise MessageError(f"{msg.get('type')!r} needs {key!r} ({what})")
    value = msg[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise MessageError(f"{msg.get('type')!r}: {key!r} must be {what}, not {value!r}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _samples(msg: dict[str, Any]) -> list[int]:
    raw = _get(msg, "samples", list, "a list of sample ids (16 hex digits)")
    if not raw:
        raise MessageError("no samples named")
    if len(raw) > MAX_BATCH:
        raise MessageError(f"{len(raw):,} samples in one edit; at most {MAX_BATCH:,}")
    out = []
    for s in raw:
        if not isinstance(s, str):
            raise MessageError(f"a sample id is 16 hex digits, not {s!r}")
        try:
            out.append(parse_id(s))
        except KeyError as err:
            raise MessageError(str(err.args[0])) from None
    return out


def _label(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MessageError(f"a label is an int or a string, not {value!r}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _seen(raw: Any) -> list[tuple[int, int]] | None:
    """The writes a browser had on screen when its user typed (``"author:counter"``): its
    edit replaces those only, so a write it had not seen yet stays as a conflict."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 1000:
        raise MessageError("seen is a list of the written values' dots ('author:counter')")
    out = []
    for d in raw:
        author, _, counter = str(d).partition(":")
        try:
            out.append((int(author, 16), int(counter)))
        except ValueError:
            raise MessageError(f"{d!r} is not a dot ('author:counter')") from None
    return out


def _config_value(run: Run, key: str, value: Any) -> Any:
    """JSON has one number type: give a choice key the choice the browser meant (1 for 1.0)."""
    param = run.schema.get(key) if key in run.schema else None
    if param is not None and param.kind == "choice" and not isinstance(value, bool):
        for c in param.choices:
            same_number = (
                isinstance(c, int | float)
                and not isinstance(c, bool)
                and isinstance(value, int | float)
            )
            if same_number and c == value:
                return c
    if param is not None and param.kind == "list" and isinstance(value, list):
        return tuple(value)
    return value


# -- one browser session -------------------------------------------------------------------
@dataclass(eq=False)
class Session:
    """One browser tab on one run: its own replica id, its user, its role, what it looks at."""

    replica: int
    user: str
    role: Role
    view: str
    color: str
    queue: asyncio.Queue[str | None]
    identified: bool = False
    detail: str = ""  # what in the view: a config key, a sample id
    since: float = field(default_factory=time.time)
    closing: bool = False

    def send(self, message: dict[str, Any]) -> None:
        self.offer(json.dumps(message, separators=(",", ":")))

    def offer(self, text: str) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            # Views are state, not events: a browser this far behind reloads the whole view.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.closing = True
            self.queue.put_nowait(
                json.dumps({"type": "error", "id": None, "message": "fell behind; reconnecting"})
            )
            self.queue.put_nowait(None)


# -- one run's browsers --------------------------------------------------------------------
class Room:
    """The browser sessions of one run, and what they were last sent.

    Changes are collected from `Run.on_change` and pushed together, at most one push per
    `PUSH_INTERVAL`: only the parts that changed, metric points only since the last push.
    """

    def __init__(self, hub: Hub, name: str, run: Run) -> None:
        self.hub, self.name, self.run = hub, name, run
        self.sessions: set[Session] = set()
        self.dirty: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._last_push = 0.0
        self._subscription: Subscription | None = None
        self._history: tuple[int, list[dict[str, Any]]] | None = None
        self._epoch = 0  # counts changes to anything but metrics: the history's cache key
        self._history_next = 0.0  # monotonic time before which history is not recomputed
        self._history_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._thumbs: dict[int, dict[str, Any] | None] = {}
        self._rows: dict[int, int] = {}  # writer -> metric rows already pushed
        self._sent_dataset: tuple[NDArray[Any], list[Any], list[str], dict[str, list[str]]] = (
            np.empty(0, np.int64),
            [],
            [],
            {},
        )
        self._sent_online: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    def join(self, session: Session) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Register ``session``; returns its full view, and the full metric series to send
        right after it when the view holds previews of long ones (pending pushes go out
        first, so the room's cursors and this view agree)."""
        if self._subscription is None:
            self._subscription = self.run.on_change(self._changed)
        if self.sessions:
            # The others get what changed up to now (metric rows and dataset changes are
            # read against the room's cursors, which this view moves on), even a change
            # whose note from another thread is still on its way.
            self.dirty |= {"metrics", "samples"}
            self.flush()
        self.sessions.add(session)
        view = self.full_view()
        self.dirty.add("presence")
        self._schedule()
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())
        return view

    def leave(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            if self._subscription is not None:
                self._subscription.remove()
                self._subscription = None
            if self._refresher is not None:
                self._refresher.cancel()
                self._refresher = None
            for timer in (self._timer, self._history_timer):
                if timer is not None:
                    timer.cancel()
            self._timer = self._history_timer = None
            self.dirty.clear()
        else:
            self.dirty.add("presence")
            self._schedule()

    def _changed(self, change: RunChange) -> None:
        # Called inside the run's commit, on whichever thread made the change: noted at
        # once on the hub's loop, handed to it from any other thread; never raises into
        # the run.
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is self._loop:
            self._mark(change.parts)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._mark, change.parts)

    def _mark(self, parts: frozenset[str]) -> None:
        if parts - _METRIC_PARTS:
            self._epoch += 1
        self.dirty |= parts
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or not self.sessions:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_push + PUSH_INTERVAL - loop.time())
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.flush()

    async def _refresh(self) -> None:
        # Connections come and go without touching the run: look again now and then, and
        # push only if something changed.
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            if self._online_state() != self._sent_online:
                self.dirty.add("presence")
                self._schedule()

    def flush(self) -> None:
        """Push what changed since the last push to every session."""
        if not self.dirty:
            return
        dirty, self.dirty = self.dirty, set()
        self._last_push = asyncio.get_running_loop().time()
        update: dict[str, Any] = {"type": "update"}
        with self.run._lock:
            if dirty & _METRIC_PARTS:
                update["metrics"] = self.metrics_delta()
            if dirty - _METRIC_PARTS - {"presence"}:
                update.update(self.parts_view(dirty))
            if dirty - _METRIC_PARTS:
                update["presence"] = self.presence_view()
                self._sent_online = self._online_state()
            update["workers"] = self.workers_view()  # their last steps move with the metrics
        text = json.dumps(update, separators=(",", ":"))
        for s in list(self.sessions):
            s.offer(text)

    # -- views -----------------------------------------------------------------------------
    def full_view(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The whole view, with long metric series as previews, and the message carrying
        them in full (``None`` if every series is short): the first paint need not wait
        for 100,000 points to cross the socket and be parsed."""
        with self.run._lock:
            metrics = self.metrics_delta(full=True)
            previews = {
                name: _preview(s.step, s.value)
                for name in metrics
                if len(s := self.run.metrics(name)) > PREVIEW
            }
            view = {
                "run": self.name,
                "id": self.run.id,
                "metrics": {**metrics, **previews},
                **self.parts_view(None),
                "presence": self.presence_view(),
                "workers": self.workers_view(),
            }
            self._sent_online = self._online_state()
        full = {n: metrics[n] for n in previews}
        return view, ({"type": "update", "metrics": full} if full else None)

    def parts_view(self, dirty: set[str] | None) -> dict[str, Any]:
        """The non-metric parts: all (``dirty`` None) or those touched by ``dirty``."""
        run = self.run

        def wants(*parts: str) -> bool:
            return dirty is None or bool(dirty & set(parts))

        out: dict[str, Any] = {}
        if wants("config", "schema", "applied", "replicas", "members", "history"):
            out["config"] = self.config_view()
        if wants("samples", "labels", "splits", "tags", "payloads"):
            out["dataset"] = self.dataset_view(full=dirty is None)
        if wants("comments", "description", "replicas", "members"):
            out["notes"] = {
                "description": run.notes.description,
                "comments": [
                    {
                        "id": c.id,
                        "text": c.text,
                        "author": run.members.name_of(c.author) if c.author else "",
                        "created": _iso(c.created),
                        "edited": _iso(c.edited),
                        "edited_by": run.members.name_of(c.edited_by) if c.edited_by else "",
                        "resolved": c.resolved,
                    }
                    for c in run.notes.list()
                ],
            }
        if wants("control", "commands"):
            out["control"] = {
                "state": run.control.state,
                "conflict": list(run.control.conflict),
                "pending": [
                    {
                        "id": c.id,
                        "name": c.name,
                        "by": run.members.name_of(c.author),
                        "time": _iso(c.time),
                    }
                    for c in run.control.pending()
                ],
            }
        if wants("checkpoints"):
            out["checkpoints"] = [
                {
                    "id": c.id,
                    "step": c.step,
                    "size": c.size,
                    "name": c.name,
                    "metrics": c.metrics,
                    "by": run.members.name_of(c.author),
                    "time": _iso(c.time),
                }
                for c in run.checkpoints.list()
            ]
        if dirty is None or dirty - _METRIC_PARTS:
            out["history"] = self.history_view()
        return out

    def history_view(self) -> list[dict[str, Any]]:
        """The newest history entries. The history is a query over the whole op log (0.7 s
        for 5,000 config edits), so it is recomputed at most every `HISTORY_SHARE`-th of the
        loop's time: a burst of edits gets it once, a moment late, and never stalls the hub."""
        epoch = self._epoch
        if self._history is not None and self._history[0] == epoch:
            return self._history[1]
        now = time.monotonic()
        if self._history is not None and now < self._history_next:
            if self._history_timer is None:
                self._history_timer = self._loop.call_later(
                    self._history_next - now, self._history_due
                )
            return self._history[1]
        started = time.perf_counter()
        entries = self.run.history()
        shown = [
            {
                "time": _iso(e.time),
                "user": e.user,
                "part": e.part,
                "key": e.key,
                "old": _json_value(e.old),
                "new": _json_value(e.new),
                "what": e.what,
                "step": e.step,
            }
            for e in entries[-HISTORY_SHOWN:]
        ]
        self._history = (epoch, shown)
        cost = time.perf_counter() - started
        self._history_next = time.monotonic() + cost * (HISTORY_SHARE - 1)
        return self._history[1]

    def _history_due(self) -> None:
        self._history_timer = None
        self.dirty.add("history")
        self._schedule()

    def config_view(self) -> list[dict[str, Any]]:
        run = self.run
        config = run.config
        # In effect: the newest write the trainer applied, found among the written values
        # (always fresh), else the last applied change in the history.
        in_effect: dict[str, tuple[Any, int]] = {}
        for e in self.history_view():
            if e["part"] == "config" and e["step"] is not None and e["key"] is not None:
                in_effect[e["key"]] = (e["new"], e["step"])
        applied = resolved_values(run._state(Part.APPLIED))
        out = []
        for key, param in run.schema.items():
            written = config.written(key)
            effect = in_effect.get(key)
            for w in reversed(written):
                step = applied.get(applied_key(w.author, w.counter))
                if type(step) is int:
                    effect = (_json_value(w.value), step)
                    break
            out.append(
                {
                    "key": key,
                    "kind": param.kind,
                    "default": _json_value(param.default),
                    "min": param.min,
                    "max": param.max,
                    "choices": _json_value(param.choices),
                    "item": param.item,
                    "max_len": param.max_len,
                    "help": param.help,
                    "value": _json_value(config[key]),
                    "written": [
                        {
                            "value": _json_value(w.value),
                            "by": run.members.name_of(w.author),
                            "time": _iso(w.time),
                            "dot": f"{w.author:016x}:{w.counter}",
                        }
                        for w in written
                    ],
                    "in_effect": None
                    if effect is None
                    else {"value": effect[0], "step": effect[1]},
                }
            )
        return out

    def dataset_view(self, *, full: bool) -> dict[str, Any]:
        """Sample ids, labels, splits and tags; after the first view only what changed when
        the set of samples is the same."""
        run = self.run
        view = run.dataset.view()
        ids = view.ids
        labels = [_json_value(x) for x in view.labels.tolist()]
        splits = [str(s) for s in view.splits.tolist()]
        tags: dict[str, list[str]] = {}
        for sid, tag_set in run._state(Part.TAGS).items():
            elements = sorted(str(t) for t in tag_set.elements())
            if elements and isinstance(sid, int):
                tags[format_id(sid)] = elements
        old_ids, old_labels, old_splits, old_tags = self._sent_dataset
        self._sent_dataset = (ids, labels, splits, tags)
        counts = {str(k): v for k, v in run.dataset.counts().items()}
        if not full and len(old_ids) == len(ids) and np.array_equal(old_ids, ids):
            changed = [
                i
                for i, (a, b, c, d) in enumerate(
                    zip(labels, old_labels, splits, old_splits, strict=True)
                )
                if a != b or c != d
            ]
            return {
                "changes": [[format_id(int(ids[i])), labels[i], splits[i]] for i in changed],
                "tags": tags if tags != old_tags else None,
                "counts": counts,
                "total": len(ids),
            }
        first = ids[:FIRST_THUMBS].tolist()
        return {
            "ids": [format_id(s) for s in ids.tolist()],
            "labels": labels,
            "splits": splits,
            "tags": tags,
            "counts": counts,
            "total": len(ids),
            "thumbs": self.thumbs(first),
        }

    def thumbs(self, sids: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sid in sids:
            if sid not in self._thumbs:
                try:
                    self._thumbs[sid] = thumbnail(self.run.dataset.payload(sid))
                except (KeyError, ConvergentError):
                    self._thumbs[sid] = None
            out[format_id(sid)] = self._thumbs[sid]
        return out

    def metrics_delta(self, *, full: bool = False) -> dict[str, Any]:
        """Per metric: every point (``full``), or the points logged since the last push
        (``append``, in step order; the browser sorts them in if a writer lags behind).

        Each writer's metric log only grows (its readable part is a contiguous prefix), so
        a push reads the rows past a per-writer cursor: its cost follows what was logged
        since the last push, not the length of the run.
        """
        run = self.run
        state: AppendLog = run._state(Part.METRICS)
        out: dict[str, Any] = {}
        if full:
            for name in run.metric_names():
                s = run.metrics(name)
                if len(s):
                    out[name] = _points("full", s.step, s.value)
            self._rows = {w: len(state.rows_of(w, "step")) for w in state.writers()}
            return out
        index = names_by_writer(run)
        new: dict[str, list[tuple[NDArray[Any], NDArray[Any]]]] = {}
        for w in state.writers():
            steps = state.rows_of(w, "step")
            at, n = self._rows.get(w, 0), len(steps)
            if n <= at:
                continue
            metric = state.rows_of(w, "metric")[at:n]
            values = state.rows_of(w, "value")[at:n]
            for name, mid in index.get(w, {}).items():
                mask = metric == mid
                if mask.any():
                    new.setdefault(name, []).append((steps[at:n][mask], values[mask]))
            self._rows[w] = n
        for name, chunks in new.items():
            step = np.concatenate([c[0] for c in chunks])
            value = np.concatenate([c[1] for c in chunks])
            order = np.argsort(step, kind="stable")
            out[name] = _points("append", step[order], value[order])
        return out

    def presence_view(self) -> list[dict[str, Any]]:
        return [
            {
                "session": f"{s.replica:016x}",
                "user": s.user,
                "role": s.role.label,
                "view": s.view,
                "detail": s.detail,
                "color": s.color,
            }
            for s in sorted(self.sessions, key=lambda s: s.since)
        ]

    def _online_state(self) -> Any:
        conns = self.hub.connections.get(self.name, ())
        return (
            sorted((c.session.replica or 0, int(c.session.role or 0)) for c in conns),
            sorted((s.replica, s.view, s.detail) for s in self.sessions),
        )

    def workers_view(self) -> list[dict[str, Any]]:
        """Sync connections (trainers, CLI, Python clients) with their last metric step."""
        run = self.run
        state: AppendLog = run._state(Part.METRICS)
        last: dict[int, tuple[int, int]] = {}
        for w in state.writers():  # a writer's last row is its latest log: O(writers)
            steps = state.rows_of(w, "step")
            if len(steps):
                last[w] = (int(steps[-1]), int(state.rows_of(w, "time")[-1]))
        out = []
        for conn in self.hub.connections.get(self.name, ()):
            rid = conn.session.replica
            if rid is None:
                continue
            step, at = last.get(rid, (None, None))
            role = conn.session.role
            out.append(
                {
                    "replica": f"{rid:016x}",
                    "user": run.members.name_of(rid),
                    "role": role.label if role is not None else "",
                    "last_step": step,
                    "last_time": at,
                }
            )
        out.sort(key=lambda w: (w["role"] != "worker", str(w["user"])))
        return out


# -- the channel ---------------------------------------------------------------------------
class Dashboard:
    """The browser sessions of a hub, by run."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.rooms: dict[str, Room] = {}

    def room(self, name: str) -> Room | None:
        room = self.rooms.get(name)
        if room is None:
            run = self.hub.run(name)
            if run is None:
                return None
            room = self.rooms[name] = Room(self.hub, name, run)
        return room

    def hello(self, name: str, msg: dict[str, Any]) -> tuple[Session, Room, list[dict[str, Any]]]:
        """Check a ``hello`` and open the session: the messages to send it first (the
        welcome, maybe full metric series after previews); raises `MessageError` or
        `AuthError`."""
        if msg.get("type") != "hello":
            raise MessageError('the first message must be {"type": "hello", "token": ...}')
        token = _get(msg, "token", str, "the access token")
        user = msg.get("user") or "guest"
        if not isinstance(user, str) or len(user) > 64 or not user.strip():
            raise MessageError("user is a name of 1-64 characters")
        view = msg.get("view", "charts")
        role = self.hub.authorize(token, name)
        if role is None:
            raise AuthError(f"unknown or revoked token for run {name!r}")
        room = self.room(name)
        if room is None:
            raise MessageError(f"no run {name!r} on this hub")
        replica = new_replica_id()
        session = Session(
            replica,
            user.strip(),
            role,
            view if view in VIEWS else "charts",
            _color_for(room),
            asyncio.Queue(maxsize=QUEUE),
        )
        view_data, full_metrics = room.join(session)
        welcome = {
            "type": "welcome",
            "session": f"{replica:016x}",
            "user": session.user,
            "role": role.label,
            "can_edit": role in (Role.EDITOR, Role.ADMIN),
            "version": __version__,
            "view": view_data,
        }
        return session, room, [welcome] if full_metrics is None else [welcome, full_metrics]

    def handle(self, session: Session, room: Room, msg: dict[str, Any]) -> dict[str, Any] | None:
        """One message after ``hello``: the reply (``ack``, ``error``, ``thumbs``) or None."""
        kind = msg.get("type")
        cid = msg.get("id")
        if cid is not None and not isinstance(cid, int | str):
            raise MessageError("id is a number or a string chosen by the browser")
        if kind == "look":
            view = _get(msg, "view", str, "the name of a view")
            detail = msg.get("detail") or ""
            if not isinstance(detail, str) or len(detail) > 80:
                raise MessageError("detail is a string of at most 80 characters")
            session.view = view if view in VIEWS else session.view
            session.detail = detail
            room.dirty.add("presence")
            room._schedule()
            return None
        if kind == "thumbs":
            raw = _get(msg, "samples", list, "a list of sample ids")
            if len(raw) > MAX_THUMBS:
                raise MessageError(f"at most {MAX_THUMBS} thumbnails at once")
            sids = []
            for s in raw:
                try:
                    sids.append(parse_id(s) if isinstance(s, str) else None)
                except KeyError:
                    continue
            with room.run._lock:
                thumbs = room.thumbs([s for s in sids if s is not None])
            return {"type": "thumbs", "id": cid, "thumbs": thumbs}
        edit = self._edit(kind, msg, room.run)
        user = session.user

        def act(run: Run) -> Any:
            if not session.identified and Part.REPLICAS in WRITABLE[session.role]:
                run.members.identify(user)  # the first edit names its author in the history
            return edit(run)

        result = self.hub.act(room.name, ReplicaId(session.replica), session.role, act)
        session.identified = True
        reply: dict[str, Any] = {"type": "ack", "id": cid}
        if result is not None:
            reply["result"] = result
        return reply

    def _edit(self, kind: Any, msg: dict[str, Any], run: Run) -> Callable[[Run], Any]:
        """The edit a message asks for (checked before it is run)."""
        if kind == "set_config":
            key = _get(msg, "key", str, "a config key")
            if "value" not in msg:
                raise MessageError("'set_config' needs 'value'")
            value = _config_value(run, key, msg["value"])
            seen = _seen(msg.get("seen"))
            return lambda run: run.config.write(key, value, seen=seen)
        if kind == "reset_config":
            key = _get(msg, "key", str, "a config key")
            return lambda run: run.config.reset(key)
        if kind == "relabel":
            sids = _samples(msg)
            label = _label(msg.get("label"))
            return lambda run: run.dataset.relabel_many(sids, [label] * len(sids))
        if kind == "remove":
            sids = _samples(msg)
            return lambda run: run.dataset.remove(sids)
        if kind in ("tag", "untag"):
            sids = _samples(msg)
            tag = _get(msg, "tag", str, "a tag")

            def tagging(run: Run) -> None:
                with run.transaction():
                    for sid in sids:
                        if kind == "tag":
                            run.dataset.tag(sid, tag)
                        else:
                            run.dataset.untag(sid, tag)

            return tagging
        if kind == "split":
            sids = _samples(msg)
            split = _get(msg, "split", str, "train, val or test")
            return lambda run: run.dataset.split(sids, split)
        if kind == "add_samples":
            return self._add_samples(msg, run)
        if kind == "comment_add":
            text = _get(msg, "text", str, "the comment's text")
            return lambda run: run.notes.add(text)
        if kind == "comment_edit":
            comment = _get(msg, "comment", str, "a comment id")
            text = _get(msg, "text", str, "the comment's text")
            return lambda run: run.notes.edit(comment, text)
        if kind == "comment_resolve":
            comment = _get(msg, "comment", str, "a comment id")
            done = msg.get("resolved", True)
            if not isinstance(done, bool):
                raise MessageError("resolved is true or false")
            return lambda run: run.notes.resolve(comment, done)
        if kind == "comment_delete":
            comment = _get(msg, "comment", str, "a comment id")
            return lambda run: run.notes.delete(comment)
        if kind == "description":
            text = _get(msg, "text", str, "the description")

            def describe(run: Run) -> None:
                run.notes.description = text

            return describe
        if kind == "control":
            action = _get(msg, "action", str, "pause, resume, stop or checkpoint")
            actions: dict[str, Callable[[Run], Any]] = {
                "pause": lambda run: run.control.pause(),
                "resume": lambda run: run.control.resume(),
                "stop": lambda run: run.control.stop(),
                "checkpoint": lambda run: run.control.checkpoint_now(),
            }
            if action not in actions:
                raise MessageError(f"unknown action {action!r}: pause, resume, stop or checkpoint")
            return actions[action]
        raise MessageError(f"unknown message type {kind!r}")

    def _add_samples(self, msg: dict[str, Any], run: Run) -> Callable[[Run], Any]:
        raw = _get(msg, "samples", list, "a list of {pixels, label}")
        if not raw or len(raw) > 1000:
            raise MessageError("add 1 to 1,000 samples at once")
        split = msg.get("split", "train")
        if split not in ("train", "val", "test"):
            raise MessageError(f"split {split!r} is not one of train, val, test")
        shape, dtype = (8, 8), np.dtype(np.uint8)
        ids = run.dataset.ids()
        if len(ids):
            with contextlib.suppress(KeyError, ConvergentError):
                first = run.dataset.payload(int(ids[0]))
                if isinstance(first, np.ndarray):
                    shape, dtype = first.shape, first.dtype
        size = math.prod(shape)
        arrays, labels = [], []
        for item in raw:
            if not isinstance(item, dict):
                raise MessageError("each sample is {pixels: [...], label: ...}")
            px = _get(item | {"type": "add_samples"}, "pixels", list, "a list of numbers")
            if len(px) != size or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in px
            ):
                raise MessageError(
                    f"a sample of this run is {size} numbers ({'x'.join(map(str, shape))}); "
                    f"got {len(px)}"
                )
            arr = np.asarray(px, dtype=np.float64)
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                arr = np.clip(np.rint(arr), info.min, info.max)
            arrays.append(arr.astype(dtype).reshape(shape))
            labels.append(_label(item.get("label")) if item.get("label") is not None else None)

        def add(run: Run) -> list[str]:
            with run.transaction():
                out = []
                for arr, label in zip(arrays, labels, strict=True):
                    out.append(format_id(run.dataset.add(arr, label=label, split=split)))
            return out

        return add

    def overview(self, token: str) -> list[dict[str, Any]] | None:
        """The runs ``token`` may read, with state, last metrics and who is online."""
        out = []
        for name in self.hub.names():
            role = self.hub.authorize(token, name)
            if role is None:
                continue
            run = self.hub.run(name)
            if run is None:
                continue
            with run._lock:
                metrics = {}
                for m in run.metric_names():
                    s = run.metrics(m)
                    if len(s):
                        metrics[m] = {"last": s.last(), "step": int(s.step[-1])}
                room = self.rooms.get(name)
                online = sorted({s.user for s in room.sessions}) if room else []
                conns = [
                    run.members.name_of(c.session.replica)
                    for c in self.hub.connections.get(name, ())
                    if c.session.replica is not None
                ]
                out.append(
                    {
                        "name": name,
                        "state": run.control.state,
                        "samples": len(run.dataset),
                        "metrics": metrics,
                        "online": online,
                        "clients": sorted(set(conns)),
                        "role": role.label,
                    }
                )
        if not out and self.hub.authorize(token, "*") is None:
            return None
        return out


def _color_for(room: Room) -> str:
    """A presence color nobody on the run has yet (while there are some left)."""
    taken = {s.color for s in room.sessions}
    free = [c for c in COLORS if c not in taken]
    return free[0] if free else COLORS[random.randrange(len(COLORS))]


async def _send_loop(websocket: WebSocket, session: Session) -> None:
    while True:
        text = await session.queue.get()
        if text is None:
            with contextlib.suppress(Exception):
                await websocket.close(code=1013)
            return
        try:
            await websocket.send_text(text)
        except Exception:  # the browser went away: the receive loop ends the session
            session.closing = True
            return


def _parse(text: str) -> dict[str, Any]:
    if len(text) > MAX_MESSAGE:
        raise MessageError(f"message of {len(text):,} characters; at most {MAX_MESSAGE:,}")
    try:
        msg = json.loads(text)
    except ValueError as err:
        raise MessageError(f"not JSON: {err}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise MessageError('a message is a JSON object with a "type"')
    return msg


def dashboard_routes(hub: Hub) -> list[BaseRoute]:
    """The dashboard's pages, files and channel, for `create_app`."""
    dashboard = Dashboard(hub)

    async def index(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
        return PlainTextResponse(
            f"convergent hub {__version__}\n"
            "dashboard: open this address in a browser (token in the URL: #token=...)\n"
            "sync: ws://HOST/runs/NAME/sync   ui: ws://HOST/runs/NAME/ui   "
            "api: /api/runs   health: /health\n"
        )

    async def run_page(request: Request) -> Response:
        return FileResponse(STATIC / "run.html", headers={"Cache-Control": "no-cache"})

    async def overview(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        runs = dashboard.overview(token) if token else None
        if runs is None:
            return JSONResponse({"error": "a valid token is needed"}, status_code=401)
        return JSONResponse(runs)

    async def channel(websocket: WebSocket) -> None:
        await websocket.accept()
        name = websocket.path_params["name"]
        session: Session | None = None
        room: Room | None = None
        sender: asyncio.Task[None] | None = None

        async def refuse(message: str) -> None:
            refusal = {"type": "error", "id": None, "message": message, "fatal": True}
            with contextlib.suppress(Exception):
                await websocket.send_text(json.dumps(refusal))
                await websocket.close(code=1008)

        try:
            first = await websocket.receive()
            if first["type"] == "websocket.disconnect":
                return
            try:
                msg = _parse(first.get("text") or "")
                session, room, first_messages = dashboard.hello(name, msg)
            except (MessageError, AuthError) as err:
                await refuse(str(err))
                return
            sender = asyncio.create_task(_send_loop(websocket, session))
            for opening in first_messages:
                session.send(opening)
                await asyncio.sleep(0)  # the welcome leaves before the long series are encoded
            while not session.closing:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                cid = None
                try:
                    text = message.get("text")
                    if text is None:
                        raise MessageError("the dashboard channel speaks JSON text messages")
                    msg = _parse(text)
                    cid = msg.get("id") if isinstance(msg.get("id"), int | str) else None
                    reply = dashboard.handle(session, room, msg)
                except (MessageError, SchemaError, AuthError) as err:
                    reply = {"type": "error", "id": cid, "message": str(err)}
                except KeyError as err:
                    reply = {"type": "error", "id": cid, "message": str(err.args[0])}
                except ConvergentError as err:
                    reply = {"type": "error", "id": cid, "message": f"not done: {err}"}
                except (TypeError, ValueError) as err:  # a value no check above foresaw
                    reply = {"type": "error", "id": cid, "message": f"not done: {err}"}
                if reply is not None:
                    session.send(reply)
        except WebSocketDisconnect:
            pass
        finally:
            if session is not None and room is not None:
                room.leave(session)
                session.closing = True
                with contextlib.suppress(asyncio.QueueFull):
                    session.queue.put_nowait(None)
            if sender is not None:
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(sender, timeout=5)
                sender.cancel()

    return [
        Route("/", index),
        Route("/runs/{name}", run_page),
        Route("/api/overview", overview),
        WebSocketRoute("/runs/{name}/ui", channel),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
