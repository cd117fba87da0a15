"""``make demo``: a hub on the embedded SQLite store, the digits run, a trainer, and the
commands to try from a second terminal while it learns."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import TextIO

from convergent.cli.hub import DEFAULT_PORT, data_folder
from convergent.errors import ConvergentError


def _start_hub(store: str, port: int) -> tuple[subprocess.Popen[str], int, str | None]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convergent",
            "serve",
            "--port",
            str(port),
            "--store",
            store,
            "--run",
            "digits",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    bound, admin = None, None
    said: list[str] = []
    while True:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            proc.kill()
            raise ConvergentError("the hub did not start within 60 s") from None
        if line is None:
            raise ConvergentError("the hub stopped: " + "".join(said[-5:]).strip())
        said.append(line)
        if line.startswith("Listening on http://"):
            bound = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        elif line.startswith("Data in") and bound is not None:
            try:  # the admin line follows on a first start
                nxt = lines.get(timeout=2)
                if nxt is not None and nxt.startswith("Admin token"):
                    admin = nxt.rsplit(" ", 1)[1].strip()
            except queue.Empty:
                pass
            return proc, bound, admin


def run_live_demo(store: str, steps: int | None, out: TextIO) -> None:
    """Start everything, train until Ctrl-C (or ``steps``), then stop the hub."""
    from convergent.server.tokens import ALL_RUNS, TokenStore
    from convergent.sync.protocol import Role

    port = DEFAULT_PORT
    try:
        proc, port, admin = _start_hub(store, port)
    except ConvergentError as err:
        if "cannot listen" not in str(err):
            raise
        proc, port, admin = _start_hub(store, 0)  # the default port is taken
    try:
        if admin is None:  # a store from an earlier demo: mint a token for this one
            tokens = TokenStore(data_folder(store) / "tokens.sqlite")
            admin = tokens.create(ALL_RUNS, Role.ADMIN, note="make demo")
            tokens.close()
        url = f"http://127.0.0.1:{port}/runs/digits"
        flag = "" if port == DEFAULT_PORT else f" --url {url}"
        print(
            f"""
convergent: a live collaborative training run
  hub        http://127.0.0.1:{port}/   (data in {Path(store).resolve()})
  run        {url}
  token      {admin}

In a second terminal, change the run while it trains:
  export CONVERGENT_TOKEN={admin}
  .venv/bin/convergent status{flag}
  .venv/bin/convergent set{flag} lr 0.01
  .venv/bin/convergent set{flag} batch_size 128
  .venv/bin/convergent config{flag}
  .venv/bin/convergent pause{flag}      then: .venv/bin/convergent resume{flag}
  .venv/bin/convergent checkpoint{flag}
  .venv/bin/convergent stop{flag}
Or from Python: convergent.connect("{url}", token).config["lr"] = 0.01

Training (Ctrl-C to stop):""",
            file=out,
            flush=True,
        )
        from convergent.cli.client import cmd_train

        try:
            cmd_train(url, admin, "digits-mlp", steps, resume=False, out=out)
        except KeyboardInterrupt:
            print("\nstopped; the run and its history stay in the store", file=out)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
