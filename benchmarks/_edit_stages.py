"""One edit's path, stage by stage, in one process: what `benchmarks.instructions` counts.

Usage::

    python -m benchmarks._edit_stages SYSTEM STAGES N

SYSTEM is ``convergent`` or ``pycrdt``; the process warms up with 30 edits through every
stage, then makes N more edits (``lr`` set to a new float in a map) and takes each through
the first STAGES of:

1. the writer: the edit and the bytes it sends (convergent: ``run.config["lr"] = v`` and
   `ClientSession.outgoing`; pycrdt: ``m["lr"] = v`` in a transaction, its update message);
2. the server: convergent's `HubSession` on a SQLite run (decode, role and schema checks,
   commit, the ack and the forwarded frame) and the writer reading its ack; pycrdt: the
   room's document applying the update (what pycrdt-websocket's room does with it);
3. one other client applying the forwarded bytes and reading the value back.

Sockets are left out, so the counts are the systems' own work per edit. The difference
between two runs that differ only in STAGES is that stage's cost.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

WARM_UP = 30


def convergent(stages: int, n: int, folder: Path) -> None:
    from convergent.run import Float, Run
    from convergent.storage import SQLiteStore
    from convergent.sync import ClientSession
    from convergent.sync.protocol import Role
    from convergent.sync.session import HubSession

    hub = Run(SQLiteStore(folder / "hub.convergent"), user="hub")

    def connect(run: Run) -> tuple[ClientSession, HubSession]:
        client = ClientSession(run, "r", "token")
        server = HubSession("r", lambda _: hub, lambda _t, _r: Role.ADMIN)
        for frame in server.receive(client.hello()).reply:
            client.receive(frame)
        return client, server

    writer, other = Run(), Run()
    w_session, h_session = connect(writer)
    o_session, _ = connect(other)
    writer.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
    for frame in w_session.outgoing():
        for forwarded in h_session.receive(frame).broadcast:
            o_session.receive(forwarded)

    def edit(i: int, upto: int) -> None:
        value = (i + 1) / 1e7
        writer.config["lr"] = value
        [frame] = w_session.outgoing()
        if upto < 2:
            return
        out = h_session.receive(frame)
        for reply in out.reply:
            w_session.receive(reply)
        if upto < 3:
            return
        for forwarded in out.broadcast:
            o_session.receive(forwarded)
        if other.config["lr"] != value:
            raise AssertionError("the other client did not apply the edit")

    _drive(edit, stages, n)


def pycrdt(stages: int, n: int, folder: Path) -> None:
    from pycrdt import Doc, Map, create_update_message, handle_sync_message

    writer, room, other = Doc(), Doc(), Doc()
    w_map = writer.get("m", type=Map)
    o_map = other.get("m", type=Map)
    sent: list[bytes] = []
    writer.observe(lambda event: sent.append(create_update_message(event.update)))

    def edit(i: int, upto: int) -> None:
        value = (i + 1) / 1e7
        with writer.transaction():
            w_map["lr"] = value
        message = sent.pop()
        if upto < 2:
            return
        handle_sync_message(message[1:], room)
        if upto < 3:
            return
        handle_sync_message(message[1:], other)
        if o_map.get("lr") != value:
            raise AssertionError("the other client did not apply the edit")

    _drive(edit, stages, n)


def _drive(edit: Callable[[int, int], None], stages: int, n: int) -> None:
    for i in range(WARM_UP):
        edit(i, 3)
    if stages:
        for i in range(WARM_UP, WARM_UP + n):
            edit(i, stages)


def main(argv: list[str]) -> int:
    system, stages, n = argv[0], int(argv[1]), int(argv[2])
    with tempfile.TemporaryDirectory(prefix="convergent-stages-") as folder:
        {"convergent": convergent, "pycrdt": pycrdt}[system](stages, n, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
