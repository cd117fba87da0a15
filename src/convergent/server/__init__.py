"""The hub: runs, tokens and live connections (`Hub`), served over HTTP and WebSocket by a
Starlette app (`create_app`) on uvicorn (`serve`)."""

from convergent.server.app import create_app
from convergent.server.hub import Hub
from convergent.server.tokens import TokenStore

__all__ = ["Hub", "TokenStore", "create_app"]
