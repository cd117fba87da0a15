"""``convergent serve`` and ``convergent token``: run a hub and hand out access tokens."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TextIO

from convergent.errors import ConvergentError
from convergent.server.hub import DEFAULT_QUEUE_MIB
from convergent.sync.protocol import DEFAULT_MAX_FRAME, Role

DEFAULT_PORT = 7433  # not taken by MLflow, TensorBoard, Jupyter, Ray, Gradio, W&B, Dask...
DEFAULT_STORE = "./convergent-data"


def data_folder(store: str) -> Path:
    """The data folder named by ``--store`` (a path, or ``sqlite:///path``)."""
    if store.startswith("sqlite://"):
        store = store[len("sqlite://") :]
        if store.startswith("/./"):
            store = store[1:]
    elif "://" in store:
        raise ConvergentError(
            f"store {store!r}: only the embedded SQLite store exists so far (sqlite:///PATH)"
        )
    return Path(store)


def serve(
    host: str,
    port: int,
    store: str,
    runs: list[str],
    max_frame: int = DEFAULT_MAX_FRAME,
    durability: str = "normal",
    queue_mib: float = DEFAULT_QUEUE_MIB,
    out: TextIO = sys.stdout,
) -> None:
    """Start a hub and serve until interrupted."""
    import uvicorn

    from convergent.server import Hub, create_app

    hub = Hub(
        data_folder(store),
        max_frame=max_frame,
        queue_mib=queue_mib,
        durability="full" if durability == "full" else "normal",
    )
    for name in runs:
        hub.create_run(name)
    admin = hub.ensure_admin_token()
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"Data in {hub.data.resolve()}", file=out, flush=True)
    if admin is not None:
        print(f"Admin token (shown once, keep it): {admin}", file=out, flush=True)
    print(f"Listening on http://{shown}:{bound}/", file=out, flush=True)  # always the last
    config = uvicorn.Config(
        create_app(hub),
        log_level="warning",
        # The hub answers frames up to 4x its limit itself, with an ERROR TOO_LARGE; beyond
        # that the WebSocket layer closes with 1009 before the hub sees them.
        ws_max_size=4 * max_frame,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port) for uvicorn.

    Raises:
        ConvergentError: the address cannot be bound (in use, not this machine's).
    """
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only
    # on sockets that say they are TCP, and accepted sockets inherit this one's protocol.
    # With Nagle on, a small frame written while the previous one waited for its delayed
    # ACK (40 ms on Linux) waited too: a forwarded edit arrived 40 ms late.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConvergentError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    sock.listen(2048)  # clients may connect as soon as the hub prints its Listening line
    return sock


def create_token(store: str, run: str, role: str) -> str:
    from convergent.server.tokens import TokenStore

    tokens = TokenStore(data_folder(store) / "tokens.sqlite")
    try:
        return tokens.create(run, Role.parse(role))
    finally:
        tokens.close()
