"""``make demo``: a hub on the embedded SQLite store, the digits run, a trainer, the
dashboard's address (with a token) printed first, and the commands to try from a second
terminal while it learns."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TextIO

from convergent.cli.hub import DEFAULT_PORT, data_folder
from convergent.errors import ConvergentError


def run_live_demo(store: str, steps: int | None, out: TextIO) -> None:
    """Start everything, train until Ctrl-C (or ``steps``), then stop the hub."""
    from convergent.server.tokens import ALL_RUNS, TokenStore
    from convergent.sync.protocol import Role
    from convergent.testing.hub import spawn_hub

    try:
        hub = spawn_hub(Path(store), port=DEFAULT_PORT)
    except RuntimeError as err:
        if "cannot listen" not in str(err):
            raise ConvergentError(str(err)) from None
        hub = spawn_hub(Path(store), port=0)  # the default port is taken
    port, admin = hub.port, hub.admin
    try:
        if not admin:  # a store from an earlier demo: mint a token for this one
            tokens = TokenStore(data_folder(store) / "tokens.sqlite")
            admin = tokens.create(ALL_RUNS, Role.ADMIN, note="make demo")
            tokens.close()
        url = f"http://127.0.0.1:{port}/runs/digits"
        flag = "" if port == DEFAULT_PORT else f" --url {url}"
        print(
            f"""
convergent: a live collaborative training run

  Open the dashboard:  {url}#token={admin}

  Watch the model learn, change lr or batch size, relabel digits, pause it. Open the same
  address in a second browser (or a private window) to be a second person; the token
  leaves the address bar once the page has read it.

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
        hub.proc.terminate()
        try:
            hub.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            hub.proc.kill()
