"""The hub's HTTP and WebSocket surface (Starlette, served by uvicorn).

    GET  /                      the dashboard's runs list (plain text for curl)
    GET  /runs/NAME             the dashboard's run page (dashboard.py)
    GET  /health                {"status": "ok", "runs": N}
    GET  /metrics               Prometheus text
    GET  /api/runs              runs this token may read
    POST /api/runs              {"name": ...} create a run (admin)
    GET  /api/runs/NAME         the run's state as JSON
    GET  /api/runs/NAME/export  every op of the run as bytes (``Run.merge_bytes`` reads it)
    WS   /runs/NAME/sync        the sync protocol (PROTOCOL.md)
    WS   /runs/NAME/ui          the dashboard channel (dashboard.py, PROTOCOL.md)

REST calls take ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from convergent import __version__
from convergent.errors import SchemaError
from convergent.server.dashboard import dashboard_routes
from convergent.server.hub import Connection, Hub
from convergent.sync.protocol import Role
from convergent.sync.session import coalesce

COALESCE = 256  # queued frames a connection's sender looks at together


def _token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(hub: Hub) -> Starlette:
    """The Starlette app serving ``hub``."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "runs": len(hub.names()), "version": __version__})

    async def metrics(request: Request) -> Response:
        s = hub.stats
        lines = [
            "# TYPE convergent_runs gauge",
            f"convergent_runs {len(hub.names())}",
            "# TYPE convergent_connections gauge",
            f"convergent_connections {sum(len(c) for c in hub.connections.values())}",
            "# TYPE convergent_connections_total counter",
            f"convergent_connections_total {s.connections_total}",
            "# TYPE convergent_frames_received_total counter",
            f"convergent_frames_received_total {s.frames_in}",
            "# TYPE convergent_frames_sent_total counter",
            f"convergent_frames_sent_total {s.frames_out}",
            "# TYPE convergent_acks_total counter",
            f"convergent_acks_total {s.ops_acked}",
            "# TYPE convergent_errors_total counter",
        ]
        lines += [f'convergent_errors_total{{code="{k}"}} {v}' for k, v in sorted(s.errors.items())]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def runs(request: Request) -> Response:
        token = _token(request)
        if request.method == "POST":
            if hub.authorize(token, "*") is not Role.ADMIN:
                return _refuse(403, "creating runs needs an admin token")
            try:
                body = await request.json()
            except ValueError:
                return _refuse(400, "the body is not JSON")
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str):
                return _refuse(400, 'the body needs {"name": "..."}')
            try:
                run = hub.create_run(name)
            except SchemaError as err:
                return _refuse(400, str(err))
            return JSONResponse({"name": name, "id": run.id}, status_code=201)
        visible = [n for n in hub.names() if hub.authorize(token, n) is not None]
        if not token or (not visible and hub.authorize(token, "*") is None):
            return _refuse(401, "a valid token is needed (Authorization: Bearer TOKEN)")
        return JSONResponse([{"name": n, "url": f"/runs/{n}"} for n in visible])

    async def run_state(request: Request) -> Response:
        name = request.path_params["name"]
        if hub.authorize(_token(request), name) is None:
            return _refuse(401, f"no access to run {name!r} with this token")
        summary = hub.summary(name)
        if summary is None:
            return _refuse(404, f"no run {name!r} on this hub")
        return JSONResponse(summary)

    async def run_export(request: Request) -> Response:
        name = request.path_params["name"]
        if hub.authorize(_token(request), name) is None:
            return _refuse(401, f"no access to run {name!r} with this token")
        run = hub.run(name)
        if run is None:
            return _refuse(404, f"no run {name!r} on this hub")
        return Response(run.export_since(), media_type="application/octet-stream")

    async def sync(websocket: WebSocket) -> None:
        await websocket.accept()
        conn = hub.open_connection(websocket.path_params["name"])
        sender = asyncio.create_task(_pump(websocket, conn, hub))
        try:
            while not conn.closing:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:  # a text frame: not this protocol
                    data = b"\x00"
                hub.receive(conn, data)
        except WebSocketDisconnect:
            pass
        finally:
            hub.close_connection(conn)
            if not conn.closing:
                conn.finish([])
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(sender, timeout=5)
            sender.cancel()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        hub.close()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/api/runs", runs, methods=["GET", "POST"]),
            Route("/api/runs/{name}", run_state),
            Route("/api/runs/{name}/export", run_export),
            WebSocketRoute("/runs/{name}/sync", sync),
            *dashboard_routes(hub),
        ],
        lifespan=lifespan,
    )


async def _pump(websocket: WebSocket, conn: Connection, hub: Hub) -> Any:
    """Send a connection's queued frames in order; ``None`` means close. Frames that waited
    together go out together: adjacent live OPS frames are packed into one (`coalesce`)."""
    while True:
        batch = [await conn.queue.get()]
        while batch[-1] is not None and not conn.queue.empty() and len(batch) < COALESCE:
            batch.append(conn.queue.get_nowait())
        for frame in batch:
            conn.taken(frame)
        closing = batch[-1] is None
        frames = [f for f in batch if f is not None]
        if len(frames) > 1:
            frames = coalesce(frames, conn.session.frame_limit)
        try:
            for frame in frames:
                await websocket.send_bytes(frame)
                hub.stats.frames_out += 1
        except Exception:  # the client went away: the receive loop ends the connection
            conn.closing = True
            return
        if closing:
            with contextlib.suppress(Exception):
                await websocket.close()
            return
