"""`spawn_hub`: ``convergent serve`` in a subprocess, for tests, benchmarks and the demo.

``serve`` prints ``Data in ...``, then the admin token on a first start, and always ends its
start-up with ``Listening on http://HOST:PORT/`` once it accepts connections: reading up to
that line is all it takes to know the port and the token.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[2])  # the folder holding this convergent package


def hub_env() -> dict[str, str]:
    """The environment of a child process that imports this convergent (installed or not)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


@dataclass
class HubProcess:
    """A running hub: its process, port, admin token (empty after a restart) and store."""

    proc: subprocess.Popen[str]
    port: int
    admin: str
    store: Path

    def url(self, run: str = "digits") -> str:
        return f"http://127.0.0.1:{self.port}/runs/{run}"

    def token(self, role: str, run: str = "digits") -> str:
        """A new token from ``convergent token create``."""
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "convergent",
                "token",
                "create",
                "--run",
                run,
                "--role",
                role,
                "--store",
                str(self.store),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=hub_env(),
        )
        return out.stdout.strip()

    def get(self, path: str, token: str | None = None) -> Any:
        """``GET path`` on the hub: JSON decoded, anything else as bytes."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            kind = resp.headers.get_content_type()
        return json.loads(body) if kind == "application/json" else body

    def stop(self) -> None:
        """Kill the hub (SIGKILL) and reap it."""
        self.proc.kill()
        self.proc.wait(timeout=10)


def spawn_hub(
    store: Path, *options: str, port: int = 0, run: str = "digits", timeout: float = 60
) -> HubProcess:
    """Start ``convergent serve --store STORE --run RUN [OPTIONS]`` and wait until it listens.

    Raises:
        RuntimeError: it stopped or did not listen within ``timeout`` seconds (the message
            quotes its last lines).
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convergent",
            "serve",
            "--port",
            str(port),
            "--store",
            str(store),
            "--run",
            run,
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=hub_env(),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    admin = ""
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            raise RuntimeError(f"the hub did not start: {' | '.join(seen[-5:])}")
        seen.append(line.strip())
        if line.startswith("Admin token"):
            admin = line.rsplit(" ", 1)[1].strip()
        elif line.startswith("Listening on http://"):
            bound = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
            return HubProcess(proc, bound, admin, store)
