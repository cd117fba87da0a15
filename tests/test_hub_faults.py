"""The hub under faults and load: fifty clients joining at once, a client back after
thousands of missed edits (catch-up bytes follow what it missed, not the run's history), slow
subscribers against bounded queues, oversized frames, and garbage floods beside live clients.

Most tests run ``convergent serve`` in a subprocess (as tests/test_hub.py does). The
back-pressure test serves its `Hub` in this process instead (``queue_mib=0.125``, what
``convergent serve --queue-mib 0.125`` builds; uvicorn in a thread, on a socket bound
before it starts), so that it can watch every connection's queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

import convergent
from convergent.errors import ProtocolError
from convergent.run import Float, Run, RunChange, Version
from convergent.run.document import read_bundle
from convergent.server import Hub, create_app
from convergent.server.hub import FRAME_COST, Connection
from convergent.sync import Code, HubSession, decode_frame, encode_frame
from convergent.sync.client import LiveRun
from convergent.sync.protocol import Ack, Error, Frame, Hello, Ops, Presence, Welcome
from convergent.testing.hub import spawn_hub
from test_hub import HubProcess, state


class Deadline:
    """One deadline shared by a sequence of waits."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.01)


def serve(store: Path, *options: str) -> HubProcess:
    """``convergent serve`` with extra ``options``, once it listens."""
    return spawn_hub(store, *options)


def stop(hub: HubProcess) -> None:
    hub.proc.kill()
    hub.proc.wait(timeout=10)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    h = serve(tmp_path / "hub")
    yield h
    stop(h)


def raw(port: int, **options: Any) -> ClientConnection:
    """A plain WebSocket to the run ``digits``: the test speaks the protocol itself."""
    return ws_connect(f"ws://127.0.0.1:{port}/runs/digits/sync", open_timeout=10, **options)


def recv(ws: ClientConnection, timeout: float = 10) -> Frame:
    data = ws.recv(timeout=timeout)
    assert isinstance(data, bytes), "the hub sent a text frame"
    return decode_frame(data)


def health(port: int) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
        return json.loads(resp.read())


# -- 1. fifty clients at once -------------------------------------------------------------
def test_fifty_clients_joining_at_the_same_moment_all_sync(hub: HubProcess) -> None:
    n = 50
    clients: list[LiveRun | None] = [None] * n
    start = threading.Barrier(n)

    def arrive(i: int) -> None:
        start.wait()
        clients[i] = convergent.connect(hub.url(), hub.admin, user=f"user{i}", wait=None)

    threads = [threading.Thread(target=arrive, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [c for c in clients if c is not None]
    try:
        assert len(runs) == n
        deadline = Deadline(60)
        for run in runs:
            run.wait_synced(timeout=deadline.left())
        # Each client names itself once caught up: every one of those ops reaches everyone.
        for run in runs:
            run.wait_until(lambda run=run: len(run.members.list()) == n + 1, deadline.left())
        runs[0].notes.add("one edit for all")
        runs[0].wait_synced(timeout=deadline.left())
        for run in runs[1:]:
            run.wait_until(
                lambda run=run: [c.text for c in run.notes.list()] == ["one edit for all"],
                deadline.left(),
            )
        first = state(runs[0])
        assert all(state(run) == first for run in runs[1:])
        summary = hub.get("/api/runs/digits", hub.admin)
        assert summary["connections"] == n and summary["ops"] == runs[0].version.ops
    finally:
        for run in runs:
            run.close()


# -- 2. catch-up bytes follow what a client missed ----------------------------------------
def exchange(
    port: int, token: str, have: Version, answer: Callable[[Version], bytes] | None = None
) -> tuple[Welcome, Ops, int]:
    """One connection speaking the protocol by hand: HELLO with ``have``; WELCOME and the
    catch-up OPS back; then, if ``answer`` is given, ``OPS(1, answer(hub's version))`` and
    its ACK. Returns the WELCOME, the catch-up and the catch-up frame's size in bytes."""
    with raw(port, max_size=None, compression=None) as ws:
        ws.send(encode_frame(Hello("digits", 0x0FF1, token, have.to_bytes())))
        welcome, catch_up = recv(ws, 30), ws.recv(timeout=30)
        assert isinstance(welcome, Welcome) and isinstance(catch_up, bytes)
        ops = decode_frame(catch_up)
        assert isinstance(ops, Ops) and ops.id == 1  # the catch-up's last (and only) frame
        if answer is not None:
            ws.send(encode_frame(Ops(1, answer(Version.from_bytes(welcome.version)))))
            assert recv(ws, 60) == Ack(1)
        return welcome, ops, len(catch_up)


def join(port: int, token: str, run: Run) -> None:
    """An empty replica takes the hub's run (its id and rules)."""
    run.merge_bytes(exchange(port, token, run.version)[1].bundle)


def push(port: int, token: str, run: Run, seen: Version | None = None) -> None:
    """Send the hub what ``run`` holds and the hub lacks: a write-only client, which merges
    nothing it is sent, and says it holds ``seen`` too (so the hub spares it the catch-up)."""
    have = run.version if seen is None else Version(run.version.context.join(seen.context))
    exchange(port, token, have, run.export_since)


def catch_up(port: int, token: str, have: Version) -> tuple[set[tuple[int, int]], int]:
    """What a client holding ``have`` receives on connecting: op ids, and the frame's bytes."""
    _, ops, size = exchange(port, token, have)
    return {(op.origin, op.seq) for op, _, _ in read_bundle(ops.bundle).ops}, size


def made_since(run: Run, have: Version) -> set[tuple[int, int]]:
    """The ops ``run`` wrote itself that ``have`` lacks (a writer's seqs count up from 1)."""
    [(first, last)] = run.version.context.intervals(run.replica_id)
    held = have.context.intervals(run.replica_id)
    after = held[-1][1] if held else first - 1
    return {(run.replica_id, seq) for seq in range(after + 1, last + 1)}


def test_a_client_back_after_thousands_of_edits_receives_bytes_for_what_it_missed(
    hub: HubProcess,
) -> None:
    history, gap = 10_000, 1_000  # each gap: 1,000 edits by each of two writers
    alice, bob = Run(), Run()
    join(hub.port, hub.admin, alice)
    alice.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
    push(hub.port, hub.admin, alice)
    join(hub.port, hub.admin, bob)
    assert "lr" in bob.schema
    for i in range(history):
        alice.config["lr"] = (i % 1000) / 1000
    alice.dataset.add_many(np.random.default_rng(3).integers(0, 256, (64, 65_536), np.uint8))
    push(hub.port, hub.admin, alice)

    # A client goes offline holding all of that: 10,000 ops and 4 MiB.
    have = Version(alice.version.context.join(bob.version.context))
    assert catch_up(hub.port, hub.admin, have)[0] == set()

    def edits(rounds: int) -> tuple[set[tuple[int, int]], int]:
        """The ops the offline client now lacks, and what they weigh exported on their own."""
        for i in range(rounds):
            alice.config["lr"] = ((i * 7) % 1000) / 1000
            bob.config["lr"] = ((i * 11) % 1000) / 1000
        push(hub.port, hub.admin, alice)
        push(hub.port, hub.admin, bob, seen=alice.version)
        ids = made_since(alice, have) | made_since(bob, have)
        return ids, len(alice.export_since(have)) + len(bob.export_since(have))

    missed_1, weight_1 = edits(gap)
    ids_1, size_1 = catch_up(hub.port, hub.admin, have)
    assert len(missed_1) == 2 * gap and ids_1 == missed_1

    missed_2, weight_2 = edits(gap)
    ids_2, size_2 = catch_up(hub.port, hub.admin, have)
    assert len(missed_2) == 4 * gap and ids_2 == missed_2

    everything, full = catch_up(hub.port, hub.admin, Run().version)
    assert len(everything) == hub.get("/api/runs/digits", hub.admin)["ops"] > history

    # A catch-up weighs what the missed ops weigh (nothing in it grows with the history the
    # client already holds): twice the missed edits, about twice the bytes.
    assert size_1 < 1.1 * weight_1 and size_2 < 1.1 * weight_2
    assert 1.6 < size_2 / size_1 < 2.4
    assert size_2 * 10 < full


# -- 3. back-pressure ---------------------------------------------------------------------
QUEUE_MIB = 0.125  # room for about 8 frames of one 16 KiB sample each


class WatchedConnection(Connection):
    """A connection that remembers the most bytes it held for live frames, its largest
    live frame, and whether it was told SLOW."""

    peak = 0
    largest = 0
    told_slow = False

    def offer(self, frame: bytes, *, hello: bool = False) -> str:
        outcome = super().offer(frame, hello=hello)
        self.peak = max(self.peak, self.queued)
        if not hello:
            self.largest = max(self.largest, len(frame))
        self.told_slow |= outcome == "slow"
        return outcome


class WatchedHub(Hub):
    """A `Hub` that keeps every connection it opened, watched."""

    def __init__(self, data: Path, *, queue_mib: float) -> None:
        super().__init__(data, queue_mib=queue_mib)
        self.opened: list[WatchedConnection] = []

    def open_connection(self, name: str) -> Connection:
        plain = super().open_connection(name)
        conn = WatchedConnection(plain.session, plain.limit)  # the bound the hub chose
        self.opened.append(conn)
        return conn

    def of(self, replica: int) -> list[WatchedConnection]:
        return [c for c in list(self.opened) if c.session.replica == replica]

    def told_slow(self, replica: int) -> bool:
        return any(c.told_slow for c in self.of(replica))


@pytest.fixture
def small_queue_hub(tmp_path: Path) -> Iterator[tuple[WatchedHub, int]]:
    hub = WatchedHub(tmp_path / "hub", queue_mib=QUEUE_MIB)
    hub.create_run("digits")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    server = uvicorn.Server(uvicorn.Config(create_app(hub), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield hub, sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


def test_slow_subscribers_are_told_to_reconnect_and_the_hub_stays_bounded(
    small_queue_hub: tuple[WatchedHub, int],
) -> None:
    hub, port = small_queue_hub
    admin = hub.ensure_admin_token()
    assert admin is not None
    url = f"http://127.0.0.1:{port}/runs/digits"
    slow_replica = 0x5105
    rng = np.random.default_rng(7)
    edits = 0
    with contextlib.ExitStack() as cleanup:
        # A subscriber that says HELLO and then stops reading (its socket fills, then the
        # hub's), and a LiveRun whose every merge waits at a gate: a slow consumer.
        slow = cleanup.enter_context(raw(port, max_queue=1, max_size=None))
        writer = cleanup.enter_context(convergent.connect(url, admin, user="writer"))
        subscriber = cleanup.enter_context(convergent.connect(url, admin, user="subscriber"))
        gate = threading.Event()
        cleanup.callback(gate.set)

        def write_batch() -> None:
            # 16 KiB of noise per sample, so that no buffer compresses it away.
            nonlocal edits
            for _ in range(16):
                writer.dataset.add(rng.integers(0, 256, 16_384, dtype=np.uint8), label=edits)
                edits += 1
            writer.wait_synced(timeout=30)  # the hub keeps acknowledging the writer

        slow.send(encode_frame(Hello("digits", slow_replica, admin, Run().version.to_bytes())))
        assert isinstance(recv(slow), Welcome)
        subscriber.wait_until(lambda: len(subscriber.members.list()) == 3)  # hub, both

        def slow_consumer(change: RunChange) -> None:
            if not change.local:
                gate.wait(60)

        handle = subscriber.on_change(slow_consumer)
        # The writer goes on until the hub has told both subscribers to go.
        while not (hub.told_slow(slow_replica) and hub.told_slow(subscriber.replica_id)):
            assert edits < 4_000, "no SLOW after 64 MiB: is anything bounding the hub?"
            write_batch()
        write_batch()  # after SLOW: nothing more is queued for them
        gate.set()
        handle.remove()
        subscriber.wait_until(lambda: len(subscriber.dataset) == edits, timeout=60)
        subscriber.wait_synced()
        assert state(subscriber) == state(writer)
        assert len(hub.of(subscriber.replica_id)) >= 2  # it reconnected and caught up

        # The silent one finally reads: what was already on the wire, then SLOW, then a close.
        frames = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(recv(slow))
        *forwarded, last = frames
        assert isinstance(last, Error) and last.code is Code.SLOW
        seen = Run()
        for frame in forwarded:
            assert isinstance(frame, Ops)
            seen.merge_bytes(frame.bundle)
        assert len(seen.dataset) < edits  # the rest was dropped, not buffered

        assert health(port)["status"] == "ok"
        # Bounded memory: no queue ever held more live bytes than its limit, or than one
        # frame (that went in when nothing else was waiting).
        limit = int(QUEUE_MIB * 2**20)
        for conn in hub.opened:
            assert conn.limit == limit
            assert conn.peak <= max(limit, conn.largest + FRAME_COST)


# -- 4. oversized frames --------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_frame_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    h = serve(tmp_path_factory.mktemp("small-frames") / "hub", "--max-frame", "4096")
    yield h
    stop(h)


@pytest.mark.parametrize(
    "size",
    [
        4097,
        8000,
        16_000,  # up to 4x the limit the hub itself answers TOO_LARGE
    ],
)
def test_an_oversized_frame_gets_too_large_and_a_close_and_disturbs_nobody(
    small_frame_hub: HubProcess, size: int
) -> None:
    hub = small_frame_hub
    good = convergent.connect(hub.url(), hub.admin, user="good")
    watcher = convergent.connect(hub.url(), hub.admin, user="watcher")
    try:
        with raw(hub.port) as ws:
            ws.send(encode_frame(Hello("digits", 0xB16, hub.admin, Run().version.to_bytes())))
            assert isinstance(recv(ws), Welcome)
            assert isinstance(recv(ws), Ops)
            frame = encode_frame(Ops(1, os.urandom(size)))
            ws.send(frame)
            reply = recv(ws)
            while isinstance(reply, Ops):  # live ops of the other clients may come first
                reply = recv(ws)
            assert isinstance(reply, Error) and reply.code is Code.TOO_LARGE
            assert str(len(frame)) in reply.message
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=10)
        note = f"after a {size}-byte frame"
        good.notes.add(note)
        good.wait_synced()
        watcher.wait_until(lambda: note in [c.text for c in watcher.notes.list()])
        assert health(hub.port)["status"] == "ok"
    finally:
        good.close()
        watcher.close()


@pytest.mark.parametrize("chars", [6_000, 20_000])  # above the limit; above twice the limit
def test_an_op_above_the_limit_does_not_crash_the_hub(
    small_frame_hub: HubProcess, chars: int
) -> None:
    hub = small_frame_hub
    big = convergent.connect(hub.url(), hub.admin, user="big")
    good = convergent.connect(hub.url(), hub.admin, user="good")
    try:
        big.notes.add("x" * 3000)  # under the limit: stored and forwarded
        big.wait_synced()
        good.wait_until(lambda: "x" * 3000 in [c.text for c in good.notes.list()])
        big.notes.add("y" * chars)  # an op the hub cannot take: kept local, reported
        big.wait_until(lambda: big.status.refused >= 1)
        with pytest.raises(ProtocolError, match="larger than the hub accepts"):
            big.wait_synced()
        assert big.status.online
        big.notes.add("and big goes on")  # nothing is stuck behind the skipped op
        big.wait_synced()
        good.wait_until(lambda: "and big goes on" in [c.text for c in good.notes.list()])
        good.notes.add(f"the hub still serves ({chars})")
        good.wait_synced()
        assert health(hub.port)["status"] == "ok"
        with convergent.connect(hub.url(), hub.admin, user="late") as late:
            texts = [c.text for c in late.notes.list()]
            assert f"the hub still serves ({chars})" in texts and "y" * chars not in texts
    finally:
        big.close()
        good.close()


# -- 5. garbage beside live clients ---------------------------------------------------------
def garbage(rng: random.Random, token: str) -> tuple[bytes | None, list[bytes | str]]:
    """A HELLO to send first (or ``None``) and the bad frames to send after it."""
    valid_hello = encode_frame(
        Hello("digits", rng.getrandbits(63), token, Run().version.to_bytes())
    )
    body = rng.randbytes(rng.randint(0, 400))
    choices: list[tuple[bytes | None, list[bytes | str]]] = [
        (None, [body or b"\x00"]),
        (None, [bytes([rng.choice(list(range(0x40, 0x46))), 1]) + body]),
        (None, [encode_frame(Hello("digits", 1, "cvg_" + body.hex()[:20], b""))]),
        (None, ["not a frame"]),
        (valid_hello, [encode_frame(Ops(rng.randint(1, 99), body))]),
        (valid_hello, [bytes([rng.randint(0, 255), 1]) + body]),
        (valid_hello, [encode_frame(Presence(rng.getrandbits(63), "spoof", body.hex()))]),
        (valid_hello, [valid_hello]),
        (valid_hello, [encode_frame(Ops(1, b""))] * 20),  # a burst, no waiting
        (valid_hello, []),  # HELLO, then gone without reading anything
    ]
    return rng.choice(choices)


def test_garbage_floods_do_not_disturb_clients_of_the_same_run(hub: HubProcess) -> None:
    rng = random.Random(20240605)
    stop_flood = threading.Event()
    flooded = threading.Condition()
    counts = {"connections": 0, "errors": 0}
    surprises: list[str] = []

    def flood() -> None:
        while not stop_flood.is_set():
            hello, frames = garbage(rng, hub.admin)
            try:
                with raw(hub.port) as ws:
                    with contextlib.suppress(ConnectionClosed):  # closed while still sending
                        for frame in ([hello] if hello else []) + frames:
                            ws.send(frame)
                    while frames:  # read past WELCOME and live ops, up to the error
                        reply = recv(ws)
                        if isinstance(reply, Error):
                            if not reply.code.closes:
                                surprises.append(f"garbage kept open after {reply}")
                            with flooded:
                                counts["errors"] += 1
                            break
            except ConnectionClosed:
                if frames:
                    surprises.append(f"closed with no error frame after {frames[0]!r:.60}")
            except Exception as err:
                surprises.append(repr(err))  # anything else is a finding
            with flooded:
                counts["connections"] += 1
                flooded.notify_all()

    alice = convergent.connect(hub.url(), hub.admin, user="alice")
    bob = convergent.connect(hub.url(), hub.admin, user="bob")
    flooder = threading.Thread(target=flood, daemon=True)
    try:
        alice.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
        alice.wait_synced()
        bob.wait_until(lambda: "lr" in bob.schema)
        flooder.start()
        with flooded:
            assert flooded.wait_for(lambda: counts["connections"] >= 5, timeout=30)
            before = counts["connections"]

        overlapped: list[bool] = []

        def work(run: LiveRun, me: int) -> None:
            for k in range(150):
                if k == 75:  # halfway: the flood goes on meanwhile
                    with flooded:
                        overlapped.append(
                            flooded.wait_for(lambda: counts["connections"] >= before + 10, 30)
                        )
                run.config["lr"] = (me * 150 + k) / 1000
                run.log({"loss": 1.0 / (k + 1)}, step=me * 1000 + k)
                if k % 10 == 0:
                    run.notes.add(f"{me} {k}")

        workers = [threading.Thread(target=work, args=(r, i)) for i, r in enumerate((alice, bob))]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert overlapped == [True, True]
        stop_flood.set()
        flooder.join(timeout=30)

        deadline = Deadline(60)
        for run in (alice, bob):
            run.wait_synced(timeout=deadline.left())
        target = max(alice.version.ops, bob.version.ops)
        for run in (alice, bob):
            run.wait_until(lambda run=run: run.version.ops == target, deadline.left())
        assert state(alice) == state(bob)
        assert len(alice.metrics("loss")) == 300 and len(alice.notes.list()) == 30
        assert alice.status.refused == bob.status.refused == 0
        assert surprises == []
        assert counts["errors"] > 0
        assert health(hub.port)["status"] == "ok"
        assert hub.get("/api/runs/digits", hub.admin)["ops"] == target
    finally:
        stop_flood.set()
        alice.close()
        bob.close()


# -- 6. more than one frame's worth, and copied replica files -------------------------------
def test_more_offline_edits_than_one_frame_holds_travel_in_several(tmp_path: Path) -> None:
    hub = serve(tmp_path / "hub", "--max-frame", "65536")
    path = tmp_path / "a.convergent"
    try:
        with convergent.connect(hub.url(), hub.admin, path=path) as run:
            run.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
            run.wait_synced()
        with convergent.open(path) as run:  # 2,000 edits offline: ~140 KB of ops
            for i in range(2000):
                run.config["lr"] = (i % 1000) / 1000
        with convergent.connect(hub.url(), hub.admin, path=path, wait=30) as run:
            assert run.status.pending == 0 and run.status.refused == 0
        # and a newcomer whose own limit is small still catches up, in several frames
        with convergent.connect(hub.url(), hub.admin, wait=30, max_frame=16_384) as late:
            assert late.config["lr"] == 0.999
            assert late.version.ops >= 2002
    finally:
        stop(hub)


def test_a_copied_replica_file_becomes_a_new_replica(tmp_path: Path) -> None:
    hub = serve(tmp_path / "hub")
    try:
        with convergent.connect(hub.url(), hub.admin, path=tmp_path / "a.convergent") as a:
            a.notes.add("first")
            a.wait_synced()
            original = a.replica_id
        shutil.copy(tmp_path / "a.convergent", tmp_path / "copy.convergent")
        with convergent.open(tmp_path / "a.convergent") as a:
            a.notes.add("alice offline")
        with convergent.connect(hub.url(), hub.admin, path=tmp_path / "copy.convergent") as c:
            assert c.replica_id != original  # the copy took a new id
            c.notes.add("on the copy")
            c.wait_synced()
        texts = {"first", "alice offline", "on the copy"}
        with convergent.connect(hub.url(), hub.admin, path=tmp_path / "a.convergent") as a:
            assert a.replica_id == original
            a.wait_until(lambda: {n.text for n in a.notes.list()} == texts)
        with convergent.connect(hub.url(), hub.admin) as b:
            assert {n.text for n in b.notes.list()} == texts
    finally:
        stop(hub)


def test_a_connection_queue_is_bounded_in_bytes_and_the_catch_up_is_not_charged() -> None:
    conn = Connection(HubSession("digits", lambda _: None, lambda _t, _r: None), limit=1000)
    catch_up = [b"W" * 10, b"C" * 5000, b"C" * 5000]  # the answer to HELLO: all of it goes in
    assert [conn.offer(f, hello=True) for f in catch_up] == ["queued"] * 3
    assert conn.queued == 0
    assert conn.offer(b"L" * 2000) == "queued"  # nothing charged waits: one big frame goes in
    assert conn.offer(b"L" * 10) == "slow"  # 2,064 + 74 > 1,000
    frames = []
    while not conn.queue.empty():
        frames.append(conn.queue.get_nowait())
    *_, slow, end = frames
    error = decode_frame(slow)
    assert end is None and isinstance(error, Error) and error.code is Code.SLOW
    assert conn.offer(b"x") == "dropped"

    conn = Connection(HubSession("digits", lambda _: None, lambda _t, _r: None), limit=1000)
    for frame in catch_up:
        conn.offer(frame, hello=True)
    for _ in range(10):
        assert conn.offer(b"L" * 20) == "queued"
    assert conn.queued == 10 * (20 + FRAME_COST)
    for _ in range(3 + 10):  # the sender takes the catch-up, then the live frames
        conn.taken(conn.queue.get_nowait())
    assert conn.queued == 0 and conn.queue.empty()
