"""pycrdt-websocket's Yjs room server under uvicorn, the reference hub of ``benchmarks.hub``.

Usage::

    python -m benchmarks._yroom_server

Binds 127.0.0.1 on a free port, prints ``Listening on http://127.0.0.1:PORT/`` and serves
every path as a room (``WebsocketServer`` + ``ASGIServer``, as pycrdt-websocket's own tests
run it) until killed. Rooms are in memory: this server has no store and sends no acks.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer


async def main() -> None:
    sock = socket.socket(socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # clients may connect as soon as the line below is printed
    # Rooms stay when their last client leaves: a client that reconnects catches up.
    async with WebsocketServer(auto_clean_rooms=False) as rooms:
        print(f"Listening on http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
        config = uvicorn.Config(ASGIServer(rooms), log_level="warning", lifespan="on")
        await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main())
