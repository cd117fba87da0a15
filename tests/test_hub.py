"""A real hub (``convergent serve``: uvicorn on 127.0.0.1, in a subprocess) with real clients:
convergence of concurrent editors, offline edits merged on reconnect, roles, bad frames
against the live hub, and a hub killed with SIGKILL that keeps every acknowledged edit."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect as ws_connect

import convergent
from convergent.codec import encode
from convergent.errors import AuthError, ProtocolError
from convergent.run import Float, Part, Run
from convergent.sync import Code, Role, decode_frame, encode_frame
from convergent.sync.client import LiveRun
from convergent.sync.protocol import Error, Hello, Ops
from convergent.testing.hub import SRC as SRC_DIR
from convergent.testing.hub import HubProcess, hub_env, spawn_hub

SRC = SRC_DIR
_env = hub_env


def start_hub(store: Path, port: int = 0) -> HubProcess:
    """``convergent serve`` for these tests (the shared helper in convergent.testing)."""
    return spawn_hub(store, port=port)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    h = start_hub(tmp_path / "hub")
    yield h
    h.proc.kill()
    h.proc.wait(timeout=10)


def state(run: Run) -> dict[Part, bytes]:
    with run._lock:
        return {p: encode(run._state(p)) for p in Part}


def test_five_clients_editing_concurrently_converge(hub: HubProcess) -> None:
    clients = [convergent.connect(hub.url(), hub.admin, user=f"user{i}") for i in range(5)]
    try:
        clients[0].config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
        clients[0].wait_synced()

        def work(i: int, run: LiveRun) -> None:
            run.wait_until(lambda: "lr" in run.schema)
            for k in range(20):
                run.config["lr"] = (i * 20 + k) / 1000
                run.log({"loss": float(k)}, step=k)
                run.dataset.add(np.array([i, k], dtype=np.uint8), label=k % 10)

        threads = [threading.Thread(target=work, args=(i, r)) for i, r in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for run in clients:
            run.wait_synced()
        total = clients[0].version.ops
        target = max(r.version.ops for r in clients)
        for run in clients:
            run.wait_until(lambda run=run: run.version.ops >= target)
        first = state(clients[0])
        assert total <= target
        for run in clients[1:]:
            assert state(run) == first
        assert len(clients[0].dataset) == 100
        assert len(clients[0].metrics("loss")) == 100
        summary = hub.get("/api/runs/digits", hub.admin)
        assert summary["samples"] == 100 and summary["ops"] == target
    finally:
        for run in clients:
            run.close()


def test_offline_edits_merge_on_reconnect_with_conflicts_surfaced(
    hub: HubProcess, tmp_path: Path
) -> None:
    paths = [tmp_path / "alice.convergent", tmp_path / "bob.convergent"]
    for p, user in zip(paths, ["alice", "bob"], strict=True):
        with convergent.connect(hub.url(), hub.admin, path=p, user=user) as run:
            run.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
            run.wait_synced()
    # both edit their own file while no hub is reachable
    with convergent.open(paths[0]) as alice:
        alice.config["lr"] = 0.02
        alice.notes.add("alice was offline")
    with convergent.open(paths[1]) as bob:
        bob.config["lr"] = 0.05
    runs = [convergent.connect(hub.url(), hub.admin, path=p) for p in paths]
    try:
        for run in runs:
            run.wait_synced()
        for run in runs:
            run.wait_until(lambda run=run: len(run.config.conflicts()) == 1)
            [conflict] = run.config.conflicts()
            assert sorted(w.value for w in conflict.values) == [0.02, 0.05]
        assert [c.text for c in runs[1].notes.list()] == ["alice was offline"]
    finally:
        for run in runs:
            run.close()


def test_roles_are_enforced_by_the_hub(hub: HubProcess) -> None:
    editor = convergent.connect(hub.url(), hub.token("editor"), user="ed")
    viewer = convergent.connect(hub.url(), hub.token("viewer"), user="vi")
    worker = convergent.connect(hub.url(), hub.token("worker"), user="wo")
    try:
        editor.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
        editor.wait_synced()
        for run in (viewer, worker):
            run.wait_until(lambda run=run: "lr" in run.schema)
        viewer.config["lr"] = 0.9  # kept locally, never sent
        assert viewer.status.role == "viewer" and viewer.status.pending > 0
        worker.config["lr"] = 0.8  # sent, refused
        worker.wait_until(lambda: worker.status.refused == 1)
        with pytest.raises(ProtocolError, match="may not write config"):
            worker.wait_synced()  # a refused edit is reported, never counted as synced
        worker.log({"loss": 0.5})
        worker.wait_synced()
        editor.wait_until(lambda: len(editor.metrics("loss")) == 1)
        assert editor.config["lr"] == 0.1
        assert hub.get("/api/runs/digits", hub.admin)["config"]["lr"] == 0.1
    finally:
        for run in (editor, viewer, worker):
            run.close()
    with pytest.raises(AuthError, match="token"):
        convergent.connect(hub.url(), "cvg_not-a-token", wait=5)
    with pytest.raises(urllib.error.HTTPError) as err:
        hub.get("/api/runs/digits", "cvg_not-a-token")
    assert err.value.code == 401


def raw(hub: HubProcess) -> Any:
    return ws_connect(f"ws://127.0.0.1:{hub.port}/runs/digits/sync", open_timeout=10)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00\x01garbage", Code.MALFORMED),
        (b"\x42\x01", Code.MALFORMED),  # an OPS frame cut short
        (encode_frame(Ops(1, b"x")), Code.OUT_OF_PROTOCOL),  # OPS before HELLO
        (encode_frame(Hello("digits", 1, "cvg_wrong", b"")), Code.AUTH),
        (encode_frame(Hello("digits", 1, "ADMIN", b"\x13\x01\xff")), Code.MALFORMED),
        (os.urandom(300), None),  # whatever it is, it gets an error and a close
    ],
)
def test_fuzzed_frames_get_an_error_and_a_close_and_disturb_nobody(
    hub: HubProcess, frame: bytes, code: Code | None
) -> None:
    good = convergent.connect(hub.url(), hub.admin, user="good")
    try:
        with raw(hub) as ws:
            ws.send(frame.replace(b"ADMIN", hub.admin.encode()))
            reply = decode_frame(ws.recv(timeout=10))
            assert isinstance(reply, Error) and reply.code.closes
            assert code is None or reply.code is code
            with pytest.raises(Exception):  # noqa: B017 - the hub closes the socket
                ws.recv(timeout=10)
        good.notes.add("still here")
        good.wait_synced()
        assert hub.get("/health")["status"] == "ok"
    finally:
        good.close()


def test_a_text_frame_and_a_second_hello_are_out_of_protocol(hub: HubProcess) -> None:
    with raw(hub) as ws:
        ws.send("hello")
        reply = decode_frame(ws.recv(timeout=10))
        assert isinstance(reply, Error) and reply.code is Code.MALFORMED
    with raw(hub) as ws:
        hello = encode_frame(Hello("digits", 7, hub.admin, Run().version.to_bytes()))
        ws.send(hello)
        frames = [decode_frame(ws.recv(timeout=10)) for _ in range(2)]  # WELCOME, catch-up
        assert frames[0].role is Role.ADMIN  # type: ignore[union-attr]
        ws.send(hello)
        reply = decode_frame(ws.recv(timeout=10))
        assert isinstance(reply, Error) and reply.code is Code.OUT_OF_PROTOCOL


def test_a_hub_killed_with_sigkill_keeps_every_acknowledged_edit(tmp_path: Path) -> None:
    store = tmp_path / "hub"
    hub = start_hub(store)
    port, admin = hub.port, hub.admin
    acked = 0
    local = tmp_path / "client.convergent"
    try:
        for restart in range(3):
            with convergent.connect(hub.url(), admin, path=local, user="w") as run:
                for i in range(30):
                    run.log({"loss": float(acked + i)}, step=acked + i)
                run.wait_synced()  # acknowledged: durable on the hub
                acked += 30
                for i in range(5):  # sent, maybe not acknowledged, when the hub dies
                    run.log({"loss": -1.0}, step=10_000 * (restart + 1) + i)
                hub.proc.send_signal(signal.SIGKILL)
                hub.proc.wait(timeout=10)
            hub = start_hub(store, port)
            with convergent.connect(hub.url(), admin, user="check") as check:
                steps = set(check.metrics("loss").step.tolist())
                assert set(range(acked)) <= steps
    finally:
        hub.proc.kill()
        hub.proc.wait(timeout=10)


def test_the_hub_socket_turns_nagle_off_on_every_connection() -> None:
    """The served socket names TCP, so asyncio sets TCP_NODELAY on each accepted one (with
    Nagle on, a small forwarded frame waited for the previous frame's delayed ACK)."""
    import asyncio
    import socket

    from convergent.cli.hub import listen

    sock = listen("127.0.0.1", 0)
    nodelay: list[int] = []

    async def main() -> None:
        accepted = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("socket")
            nodelay.append(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            accepted.set()
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            await accepted.wait()
            writer.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert nodelay == [1]
