"""Table 4: the hub over real sockets, convergent side by side with pycrdt-websocket.

Each server runs in its own process on 127.0.0.1: ``python -m convergent serve`` (SQLite
store; an edit is acknowledged after its commit) and pycrdt-websocket's Yjs room server
(``WebsocketServer`` + ``ASGIServer`` under uvicorn, rooms in memory, no acks; see
``benchmarks._yroom_server``). Every client lives in this process, on one asyncio loop, over
``websockets``: a convergent client is a `Run` driven by the sans-IO `ClientSession` (what
`convergent.connect` runs on a thread, without the thread), a Yjs client is a pycrdt `Doc`
speaking the y-sync protocol (step 1, step 2, updates; like y-websocket, it sends only its
own updates). Both run one small map set per edit: ``run.config["lr"] = v`` and
``m["lr"] = v`` in its own transaction.

Sections: (1) edit-to-all-others latency, one edit at a time; (2) fan-out throughput, one
writer sending as fast as its socket accepts; (3) catch-up of a client that missed 10,000
edits; (4) durability of acknowledged edits across SIGKILL restarts of the convergent hub.
Since every client shares this process, client-side work (decoding, merging 50 copies of
each edit) is part of every number, equally for both systems.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    ROOT,
    Table,
    Targets,
    child_env,
    fmt_float,
    fmt_int,
    fmt_ms,
    fmt_rate,
    fmt_size,
    progress,
    scaled,
)
from convergent.errors import ProtocolError
from convergent.run import Float, Run
from convergent.run.ops import decode_bundle
from convergent.sync import ClientSession, Code
from convergent.sync.protocol import DEFAULT_MAX_FRAME
from convergent.testing.hub import spawn_hub

try:
    from pycrdt import (
        Doc,
        Map,
        YMessageType,
        YSyncMessageType,
        create_sync_message,
        create_update_message,
        handle_sync_message,
    )
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed
except ImportError:  # the bench and server extras are not both installed
    ws_connect = None

RUN = "digits"
DURABLE_RUN = "durability"  # its own run, so its checks do not replay the others' ops
SIZES = (2, 10, 50)  # clients, the writer included
FANOUT = (10, 50)  # subscribers, beside the writer
WAIT_S = 120.0  # the longest any single wait may take before the section is reported failed
NA = "n/a"


# -- servers --------------------------------------------------------------------------------
@dataclass
class Server:
    """A server process and what its start printed."""

    proc: subprocess.Popen[str]
    port: int
    token: str = ""

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far (Linux ``/proc``)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def _spawn(args: list[str]) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _port_of(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> Server:
    """The port from the server's "Listening on http://127.0.0.1:PORT/" line."""
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"the server did not start within 60 s: {seen[-3:]}") from None
        seen.append(line.strip())
        if line.startswith("Listening on http://127.0.0.1:"):
            return Server(proc, int(line.rsplit(":", 1)[1].strip().rstrip("/")))


def start_convergent(store: Path, port: int = 0) -> Server:
    """``convergent serve`` on ``store``; a restart (the store exists) prints no token."""
    first = not store.exists()
    hub = spawn_hub(store, "--run", DURABLE_RUN, port=port, run=RUN)
    if first and not hub.admin:
        hub.stop()
        raise RuntimeError("the hub printed no admin token on its first start")
    return Server(hub.proc, hub.port, hub.admin)


def start_yroom() -> Server:
    proc, lines = _spawn(["-m", "benchmarks._yroom_server"])
    return _port_of(proc, lines)


# -- clients --------------------------------------------------------------------------------
class Client:
    """One WebSocket client on this process's loop: a reader task that handles every frame,
    counts its bytes, and resolves waits (``until``) the moment their condition holds."""

    system = ""

    def __init__(self) -> None:
        self.ws: ClientConnection | None = None
        self.bytes_in = 0
        self.frames_in = 0
        self.reconnects = 0
        self.reconnect = False  # reconnect (with backoff) when the server goes away
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._waits: list[tuple[Callable[[], bool], asyncio.Future[float]]] = []
        self.failure: BaseException | None = None

    # subclasses: the URL, the first frames, and what a received frame does
    def url(self) -> str:
        raise NotImplementedError

    def opening(self) -> list[bytes]:
        raise NotImplementedError

    def handle(self, data: bytes) -> list[bytes]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def forget_session(self) -> None:
        """Drop what the last connection knew, so `ready` waits for the next one."""

    async def connect(self) -> None:
        """Open the connection and wait until the first sync is done."""
        self._stopping = False
        self.forget_session()
        self._task = asyncio.create_task(self._run())
        await self.until(self.ready)

    async def disconnect(self) -> None:
        self._stopping = True
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await self._task
            self._task = None

    def until(self, predicate: Callable[[], bool]) -> Awaitable[float]:
        """The ``perf_counter`` time at which ``predicate()`` first held after a frame."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if predicate():
            fut.set_result(time.perf_counter())
        else:
            self._waits.append((predicate, fut))
        return _bounded(fut)

    def _check(self) -> None:
        if not self._waits:
            return
        now = time.perf_counter()
        keep = []
        for predicate, fut in self._waits:
            if fut.done():
                continue
            if predicate():
                fut.set_result(now)
            else:
                keep.append((predicate, fut))
        self._waits = keep

    async def send(self, frames: list[bytes]) -> None:
        if self.ws is None:
            return  # offline: the edit stays local, the next connection sends it
        try:
            for frame in frames:
                await self.ws.send(frame)
        except ConnectionClosed:
            pass  # the reader sees the close

    async def _run(self) -> None:
        delay = 0.02
        while not self._stopping:
            try:
                async with ws_connect(
                    self.url(), max_size=DEFAULT_MAX_FRAME, open_timeout=10, close_timeout=1
                ) as ws:
                    self.ws = ws
                    delay = 0.02
                    await self.send(self.opening())
                    async for data in ws:
                        assert isinstance(data, bytes)
                        self.bytes_in += len(data)
                        self.frames_in += 1
                        await self.send(self.handle(data))
                        self._check()
            except (OSError, ConnectionClosed, TimeoutError) as err:
                if not self.reconnect and not self._stopping:
                    self._fail(err)
                    return
            except ProtocolError as err:
                if not self._behind(err):
                    self._fail(err)
                    return
            except BaseException as err:  # handed to whoever waits, then raised
                self._fail(err)
                raise
            finally:
                self.ws = None
            if self._stopping:
                return
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _behind(self, err: ProtocolError) -> bool:
        return False

    def _fail(self, err: BaseException) -> None:
        self.failure = err
        for _, fut in self._waits:
            if not fut.done():
                fut.set_exception(RuntimeError(f"{self.system} client failed: {err!r}"))
        self._waits = []


async def _bounded(fut: asyncio.Future[float]) -> float:
    return await asyncio.wait_for(fut, WAIT_S)


class ConvergentClient(Client):
    """A `Run` (in memory) kept in step with the hub by a `ClientSession`."""

    system = "convergent"

    def __init__(self, port: int, token: str, run: Run | None = None, name: str = RUN) -> None:
        super().__init__()
        self.port = port
        self.token = token
        self.name = name
        self.run = run if run is not None else Run()
        self.session: ClientSession | None = None

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/runs/{self.name}/sync"

    def opening(self) -> list[bytes]:
        self.session = ClientSession(self.run, self.name, self.token)
        return [self.session.hello()]

    def handle(self, data: bytes) -> list[bytes]:
        assert self.session is not None
        return self.session.receive(data)

    def ready(self) -> bool:
        return self.session is not None and self.session.caught_up

    def forget_session(self) -> None:
        self.session = None

    def synced(self) -> bool:
        """Caught up, and every local op acknowledged by the hub."""
        return self.session is not None and self.ws is not None and self.session.synced

    def _behind(self, err: ProtocolError) -> bool:
        s = self.session
        return s is not None and s.error is not None and s.error.code is Code.SLOW

    def value(self) -> Any:
        return self.run.config["lr"]

    def ops(self) -> int:
        return self.run.version.ops

    async def set(self, value: float) -> None:
        self.run.config["lr"] = value
        await self.push()

    async def push(self) -> None:
        """Send the local ops the hub has not been sent (as `LiveRun` does after an edit)."""
        if self.session is not None and self.ws is not None:
            await self.send(self.session.outgoing())


class YClient(Client):
    """A pycrdt `Doc` speaking y-sync to a room: step 1/2 on connect, then updates."""

    system = "pycrdt-websocket"

    def __init__(self, port: int, doc: Doc | None = None) -> None:
        super().__init__()
        self.port = port
        self.doc = doc if doc is not None else Doc()
        self.map = self.doc.get("m", type=Map)
        self.synced_once = False
        self.updates_in = 0
        self._local = False
        self._outbox: list[bytes] = []
        self._sub = self.doc.observe(self._observed)

    def _observed(self, event: Any) -> None:
        if self._local:  # like y-websocket: send our own updates, not the ones we applied
            self._outbox.append(create_update_message(event.update))

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/{RUN}"

    def opening(self) -> list[bytes]:
        self.synced_once = False
        return [create_sync_message(self.doc)]

    def handle(self, data: bytes) -> list[bytes]:
        if data[0] != YMessageType.SYNC:
            return []  # awareness: not used here
        reply = handle_sync_message(data[1:], self.doc)
        if data[1] == YSyncMessageType.SYNC_STEP2:
            self.synced_once = True
        elif data[1] == YSyncMessageType.SYNC_UPDATE:
            self.updates_in += 1
        return [reply] if reply is not None else []

    def ready(self) -> bool:
        return self.synced_once

    def forget_session(self) -> None:
        self.synced_once = False

    def value(self) -> Any:
        return self.map.get("lr")

    async def set(self, value: float) -> None:
        self._local = True
        try:
            with self.doc.transaction():
                self.map["lr"] = value
        finally:
            self._local = False
        frames, self._outbox = self._outbox, []
        await self.send(frames)


AnyClient = ConvergentClient | YClient


# -- measurements ---------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Latency:
    p50: float
    p99: float
    ack_p50: float | None = None
    ack_p99: float | None = None
    n: int = 0


@dataclass
class Fanout:
    edits: int
    seconds: float
    reconnects: int
    hub_cpu: float
    clients_cpu: float  # this process: every client, the writer included

    @property
    def rate(self) -> float:
        return self.edits / self.seconds


@dataclass
class CatchUp:
    missed: int
    write_seconds: float  # the writer's edits until acknowledged (convergent) / echoed (Yjs)
    seconds: float
    bytes_in: int
    frames_in: int
    delta_bytes: int  # the missed edits as the system itself encodes them
    ops_bytes: int | None = None  # convergent: the sum of the missed ops' own encodings
    write_cpu: tuple[float, float] = (0.0, 0.0)  # hub, clients: CPU s of the writing


@dataclass
class Durability:
    restarts: int
    acked: int
    lost: int
    seconds: float
    restart_seconds: list[float] = field(default_factory=list)
    unacked_sent: int = 0
    unacked_kept: int = 0


class Values:
    """Distinct lr values in [0, 1], so every edit is a change."""

    def __init__(self) -> None:
        self._count = itertools.count(1)

    def __call__(self) -> float:
        return next(self._count) / 10_000_000


class System:
    """One server and the way to make its clients."""

    name = ""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.values = Values()

    def start(self) -> None:
        raise NotImplementedError

    def client(self) -> AnyClient:
        raise NotImplementedError

    async def prepare(self, writer: AnyClient) -> None:
        """Whatever the run needs before edits (convergent: the schema)."""

    def cpu(self, since: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
        """CPU seconds used so far (minus ``since``): the server's, and this process's."""
        hub = self.server.cpu_seconds() if self.server is not None else 0.0
        return hub - since[0], time.process_time() - since[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None

    async def connect(self, n: int) -> list[AnyClient]:
        clients = [self.client() for _ in range(n)]
        await asyncio.gather(*(c.connect() for c in clients))
        return clients

    async def edit_and_wait(self, writer: AnyClient, others: list[AnyClient]) -> None:
        v = self.values()
        waits = [c.until(lambda c=c: c.value() == v) for c in others]
        ack = self.ack_wait(writer)
        await writer.set(v)
        await asyncio.gather(*waits, *([ack] if ack else []))

    def ack_wait(self, writer: AnyClient) -> Awaitable[float] | None:
        """Registered before an edit: when the hub has acknowledged it (``None``: no acks)."""
        return None

    async def latency(self, clients: int, edits: int) -> Latency:
        group = await self.connect(clients)
        try:
            writer, others = group[0], group[1:]
            for _ in range(5):  # warm both ends (first frames, caches) before timing
                await self.edit_and_wait(writer, others)
            spans: list[float] = []
            acks: list[float] = []
            for _ in range(edits):
                v = self.values()
                waits = [c.until(lambda c=c, v=v: c.value() == v) for c in others]
                ack = self.ack_wait(writer)
                t0 = time.perf_counter()
                await writer.set(v)
                arrived = await asyncio.gather(*waits)
                spans.append(max(arrived) - t0)
                if ack is not None:
                    acks.append((await ack) - t0)
            return Latency(
                _pct(spans, 0.5),
                _pct(spans, 0.99),
                _pct(acks, 0.5) if acks else None,
                _pct(acks, 0.99) if acks else None,
                len(spans),
            )
        finally:
            await asyncio.gather(*(c.disconnect() for c in group))

    async def fanout(self, subscribers: int, edits: int) -> Fanout:
        group = await self.connect(subscribers + 1)
        for c in group:
            c.reconnect = True  # a subscriber the hub drops for falling behind comes back
        try:
            writer, subs = group[0], group[1:]
            values = [self.values() for _ in range(edits)]
            last = values[-1]
            target = self.expected(writer, edits)
            waits = [c.until(lambda c=c: self.has_all(c, last, target)) for c in subs]
            cpu = self.cpu()
            t0 = time.perf_counter()
            for v in values:
                await writer.set(v)  # returns once the socket took the frame
            done = await asyncio.gather(*waits)
            seconds = max(done) - t0
            hub_cpu, clients_cpu = self.cpu(cpu)
            return Fanout(edits, seconds, sum(c.reconnects for c in subs), hub_cpu, clients_cpu)
        finally:
            await asyncio.gather(*(c.disconnect() for c in group))

    def expected(self, writer: AnyClient, edits: int) -> int:
        return 0

    def has_all(self, client: AnyClient, last: float, target: int) -> bool:
        return bool(client.value() == last)

    async def catch_up(self, missed: int) -> CatchUp:
        raise NotImplementedError


class Convergent(System):
    name = "convergent"

    def __init__(self, store: Path) -> None:
        super().__init__()
        self.store = store
        self.token = ""

    def start(self) -> None:
        self.server = start_convergent(self.store)
        self.token = self.server.token

    def client(self) -> ConvergentClient:
        assert self.server is not None
        return ConvergentClient(self.server.port, self.token)

    async def prepare(self, writer: AnyClient) -> None:
        assert isinstance(writer, ConvergentClient)
        writer.run.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
        await writer.push()
        await writer.until(writer.synced)

    def ack_wait(self, writer: AnyClient) -> Awaitable[float] | None:
        assert isinstance(writer, ConvergentClient)
        target = writer.ops() + 1
        return writer.until(lambda: writer.ops() >= target and writer.synced())

    def expected(self, writer: AnyClient, edits: int) -> int:
        assert isinstance(writer, ConvergentClient)
        return writer.ops() + edits

    def has_all(self, client: AnyClient, last: float, target: int) -> bool:
        assert isinstance(client, ConvergentClient)
        return client.ops() >= target and client.value() == last

    async def catch_up(self, missed: int) -> CatchUp:
        [writer, late] = await self.connect(2)
        try:
            await late.disconnect()
            assert isinstance(writer, ConvergentClient) and isinstance(late, ConvergentClient)
            before = late.run.version
            cpu = self.cpu()
            t0 = time.perf_counter()
            for _ in range(missed):
                await writer.set(self.values())
            await writer.until(writer.synced)
            write_seconds = time.perf_counter() - t0
            write_cpu = self.cpu(cpu)
            target = writer.ops()
            export = writer.run.export_since(before)
            ops_bytes = sum(len(raw) for raw, _ in decode_bundle(export).ops)
            bytes0, frames0 = late.bytes_in, late.frames_in
            t0 = time.perf_counter()
            await late.connect()
            done = await late.until(lambda: late.ops() >= target)
            return CatchUp(
                missed,
                write_seconds,
                done - t0,
                late.bytes_in - bytes0,
                late.frames_in - frames0,
                len(export),
                ops_bytes,
                write_cpu,
            )
        finally:
            await asyncio.gather(writer.disconnect(), late.disconnect())

    async def durability(self, restarts: int, batch: int) -> Durability:
        """SIGKILL the hub right after each acknowledged batch (with a few more edits in
        flight), restart it on the same store and port, and check, with a new client, that
        every acknowledged op of the writer is on the restarted hub."""
        assert self.server is not None
        port = self.server.port
        run = Run()
        writer = ConvergentClient(port, self.token, run, DURABLE_RUN)
        writer.reconnect = True
        acked = step = kept = in_flight = 0
        lost: set[int] = set()  # seqs of acknowledged ops some restarted hub did not have
        restart_s: list[float] = []
        t_start = time.perf_counter()
        try:
            for _ in range(restarts):
                await writer.connect()
                await writer.until(writer.synced)  # resends what the last hub did not keep
                for _ in range(batch):
                    run.log({"loss": float(step)}, step=step)
                    step += 1
                await writer.push()
                await writer.until(writer.synced)
                acked = run.version.context.max_counter(run.replica_id)
                for _ in range(5):  # sent, maybe not acknowledged, when the hub dies
                    run.log({"loss": -1.0}, step=step)
                    step += 1
                await writer.push()
                self.server.kill()
                await writer.disconnect()
                t0 = time.perf_counter()
                self.server = start_convergent(self.store, port)
                restart_s.append(time.perf_counter() - t0)
                check = ConvergentClient(port, self.token, name=DURABLE_RUN)
                await check.connect()
                await check.disconnect()
                have = check.run.version
                lost.update(s for s in range(1, acked + 1) if (run.replica_id, s) not in have)
                newest = run.version.context.max_counter(run.replica_id)
                in_flight += newest - acked
                kept += sum(1 for s in range(acked + 1, newest + 1) if (run.replica_id, s) in have)
            return Durability(
                restarts,
                acked,
                len(lost),
                time.perf_counter() - t_start,
                restart_s,
                in_flight,
                kept,
            )
        finally:
            await writer.disconnect()


class YRoom(System):
    name = "pycrdt-websocket"

    def start(self) -> None:
        self.server = start_yroom()

    def client(self) -> YClient:
        assert self.server is not None
        return YClient(self.server.port)

    async def catch_up(self, missed: int) -> CatchUp:
        [writer, late] = await self.connect(2)
        try:
            await late.disconnect()
            assert isinstance(writer, YClient) and isinstance(late, YClient)
            before = late.doc.get_state()
            # No acks in y-sync: the room echoes each update to every client, the writer
            # included, so the writer's last echo says the room has applied them all.
            echoes = writer.updates_in + missed
            cpu = self.cpu()
            t0 = time.perf_counter()
            for _ in range(missed):
                await writer.set(self.values())
            await writer.until(lambda: writer.updates_in >= echoes)
            write_seconds = time.perf_counter() - t0
            write_cpu = self.cpu(cpu)
            last = writer.value()
            delta = writer.doc.get_update(before)
            bytes0, frames0 = late.bytes_in, late.frames_in
            t0 = time.perf_counter()
            await late.connect()
            done = await late.until(lambda: late.value() == last)
            return CatchUp(
                missed,
                write_seconds,
                done - t0,
                late.bytes_in - bytes0,
                late.frames_in - frames0,
                len(delta),
                None,
                write_cpu,
            )
        finally:
            await asyncio.gather(writer.disconnect(), late.disconnect())


# -- the table ------------------------------------------------------------------------------
@dataclass
class Results:
    latency: dict[tuple[str, int], Latency] = field(default_factory=dict)
    fanout: dict[tuple[str, int], Fanout] = field(default_factory=dict)
    catch_up: dict[str, CatchUp] = field(default_factory=dict)
    durability: Durability | None = None
    failed: dict[str, str] = field(default_factory=dict)


@contextmanager
def _section(results: Results, errors: list[str], key: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # reported in the table and at the end, the rest goes on
        results.failed[key] = f"{type(exc).__name__}: {exc}"[:100]
        errors.append(f"Table 4 {key}:\n{traceback.format_exc()}")


async def _measure(systems: list[System], results: Results, errors: list[str]) -> None:
    edits = scaled(200, minimum=20)
    fan_edits = scaled(2000, minimum=100)
    missed = scaled(10_000, minimum=1000)
    restarts = scaled(20, minimum=3)
    for system in systems:
        with _section(results, errors, system.name):
            assert system.server is not None
            writer = system.client()
            await writer.connect()
            await system.prepare(writer)
            await writer.disconnect()
        for n in SIZES:
            progress(f"table 4 {system.name}: latency, {n} clients x {edits} edits")
            with _section(results, errors, f"{system.name} latency {n}"):
                results.latency[system.name, n] = await system.latency(n, edits)
        for n in FANOUT:
            progress(f"table 4 {system.name}: fan-out, {fan_edits} edits to {n} subscribers")
            with _section(results, errors, f"{system.name} fanout {n}"):
                results.fanout[system.name, n] = await system.fanout(n, fan_edits)
        progress(f"table 4 {system.name}: catch-up after {missed:,} missed edits")
        with _section(results, errors, f"{system.name} catch-up"):
            results.catch_up[system.name] = await system.catch_up(missed)
        if isinstance(system, Convergent):
            progress(f"table 4 convergent: {restarts} SIGKILL restarts")
            with _section(results, errors, "durability"):
                results.durability = await system.durability(restarts, batch=50)


def _cell(results: Results, system: str, key: str, text: Callable[[], str]) -> str:
    if system in results.failed or f"{system} {key}" in results.failed:
        return "ERROR"
    try:
        return text()
    except (KeyError, AttributeError):  # not measured
        return "-"


def table4(targets: Targets, errors: list[str]) -> Table:
    """Run every section for both systems and build Table 4."""
    results = Results()
    systems: list[System] = []
    with tempfile.TemporaryDirectory(prefix="convergent-bench-hub-") as folder:
        if ws_connect is None:
            errors.append("Table 4: needs pycrdt and websockets (the bench and server extras)")
        else:
            systems = [Convergent(Path(folder) / "hub"), YRoom()]
            try:
                for system in systems:
                    with _section(results, errors, system.name):
                        system.start()
                asyncio.run(_measure([s for s in systems if s.server], results, errors))
            finally:
                for system in systems:
                    system.stop()
    return _table(results, targets)


def _cpu(f: Fanout) -> str:
    return f"{f.hub_cpu:.2f} / {f.clients_cpu:.2f}; {f.reconnects}"


def _table(r: Results, targets: Targets) -> Table:
    c, y = Convergent.name, YRoom.name
    t = Table(
        "Table 4: the hub over WebSocket on 127.0.0.1 (server in its own process, every "
        "client in this one)",
        ["measure", "size", c, y, "convergent / pycrdt"],
        "llrrr",
    )

    def lat(system: str, n: int, which: str) -> str:
        def text() -> str:
            m = r.latency[system, n]
            if which == "ack":
                if m.ack_p50 is None or m.ack_p99 is None:
                    return NA
                return f"{fmt_ms(m.ack_p50)} / {fmt_ms(m.ack_p99)}"
            return f"{fmt_ms(m.p50)} / {fmt_ms(m.p99)}"

        return _cell(r, system, f"latency {n}", text)

    def ratio(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"

    edits = next((m.n for m in r.latency.values()), 0)
    for n in SIZES:
        cl, yl = r.latency.get((c, n)), r.latency.get((y, n))
        t.add(
            f"edit -> all {n - 1} others applied it, p50 / p99 ms ({edits} edits)",
            f"{n} clients",
            lat(c, n, "all"),
            lat(y, n, "all"),
            ratio(cl.p50 if cl else None, yl.p50 if yl else None) + " (p50)",
        )
    for n in SIZES:
        t.add(
            "edit -> writer's ack (after the hub's commit), p50 / p99 ms",
            f"{n} clients",
            lat(c, n, "ack"),
            "no acks",
        )
    fan_n = next((f.edits for f in r.fanout.values()), 0)
    for n in FANOUT:
        cf, yf = r.fanout.get((c, n)), r.fanout.get((y, n))
        t.add(
            f"fan-out: {fmt_size(fan_n)} edits sent flat out, delivered to all, edits/s",
            f"{n} subscribers",
            _cell(r, c, f"fanout {n}", lambda cf=cf: fmt_rate(cf.rate) if cf else "-"),
            _cell(r, y, f"fanout {n}", lambda yf=yf: fmt_rate(yf.rate) if yf else "-"),
            ratio(cf.rate if cf else None, yf.rate if yf else None),
        )
        t.add(
            "  CPU s: hub / clients; subscribers dropped as too slow",
            f"{n} subscribers",
            _cell(r, c, f"fanout {n}", lambda cf=cf: _cpu(cf)),
            _cell(r, y, f"fanout {n}", lambda yf=yf: _cpu(yf)),
        )
    cc, yc = r.catch_up.get(c), r.catch_up.get(y)
    missed = cc.missed if cc else yc.missed if yc else 0
    label = f"{fmt_size(missed)} missed"
    t.add(
        "one writer, no one else: edits/s applied (convergent: acked; Yjs: echoed)",
        label,
        _cell(r, c, "catch-up", lambda: fmt_rate(cc.missed / cc.write_seconds) if cc else "-"),
        _cell(r, y, "catch-up", lambda: fmt_rate(yc.missed / yc.write_seconds) if yc else "-"),
        ratio(
            cc.missed / cc.write_seconds if cc else None,
            yc.missed / yc.write_seconds if yc else None,
        ),
    )
    t.add(
        "  CPU s of that writing: hub / clients",
        label,
        _cell(r, c, "catch-up", lambda: "{:.2f} / {:.2f}".format(*cc.write_cpu) if cc else "-"),
        _cell(r, y, "catch-up", lambda: "{:.2f} / {:.2f}".format(*yc.write_cpu) if yc else "-"),
    )
    t.add(
        "catch-up: reconnect -> has every missed edit, ms",
        label,
        _cell(r, c, "catch-up", lambda: fmt_ms(cc.seconds) if cc else "-"),
        _cell(r, y, "catch-up", lambda: fmt_ms(yc.seconds) if yc else "-"),
        ratio(cc.seconds if cc else None, yc.seconds if yc else None),
    )
    t.add(
        "catch-up: bytes received (frames, at the client)",
        label,
        _cell(r, c, "catch-up", lambda: f"{fmt_int(cc.bytes_in)} ({cc.frames_in})" if cc else "-"),
        _cell(r, y, "catch-up", lambda: f"{fmt_int(yc.bytes_in)} ({yc.frames_in})" if yc else "-"),
        ratio(cc.bytes_in if cc else None, yc.bytes_in if yc else None),
    )
    t.add(
        "catch-up: the missed edits' own encoding, bytes",
        label,
        _cell(
            r,
            c,
            "catch-up",
            lambda: f"{fmt_int(cc.ops_bytes)} ops, {fmt_int(cc.delta_bytes)} export" if cc else "-",
        ),
        _cell(r, y, "catch-up", lambda: f"{fmt_int(yc.delta_bytes)} update" if yc else "-"),
    )
    t.add(
        "catch-up: bytes received / missed edits' encoding",
        label,
        _cell(
            r,
            c,
            "catch-up",
            lambda: f"{cc.bytes_in / cc.ops_bytes:.2f}x" if cc and cc.ops_bytes else "-",
        ),
        _cell(r, y, "catch-up", lambda: f"{yc.bytes_in / yc.delta_bytes:.2f}x" if yc else "-"),
    )
    d = r.durability
    if d is not None:
        t.add(
            f"durability: lost acknowledged edits after {d.restarts} SIGKILL restarts",
            f"{d.restarts} restarts",
            f"{d.lost}/{d.acked}",
            "no store, no acks",
        )
        t.add(
            "durability: wall time (restart median s)",
            f"{d.restarts} restarts",
            f"{d.seconds:.1f} s ({fmt_float(statistics.median(d.restart_seconds))})",
        )
    elif "durability" in r.failed:
        t.add("durability", "", "ERROR")
    for key, why in r.failed.items():
        t.note(f"ERROR {key}: {why}")
    t.note(
        "convergent: `convergent serve` (SQLite, an edit is acknowledged after its commit, "
        "then forwarded); pycrdt-websocket: WebsocketServer + ASGIServer, rooms in memory."
    )
    t.note(
        "Both under uvicorn's defaults (permessage-deflate on); bytes are frame payloads "
        "after decompression, counted at the client."
    )
    t.note(
        "Latency: from the writer's edit call to the last other client applying it (value "
        "read back); one edit at a time, 5 warm-up edits first; all clients share one loop."
    )
    t.note(
        "Fan-out: one writer sends every edit without waiting; time until every subscriber "
        "has all (convergent: op count and last value; Yjs: last value, updates in order)."
    )
    if cc is not None:
        t.note(
            "Catch-up edits are overwrites of one key: convergent keeps and sends every op "
            "(an op log); Yjs sends the current state with deleted items garbage-collected."
        )
    if d is not None:
        t.note(
            f"Durability: each restart after {50} acked run.log edits plus 5 unacked in "
            f"flight; {d.unacked_kept}/{d.unacked_sent} unacked edits survived (resent on "
            "reconnect or stored before the kill)."
        )
    if cc is not None and cc.ops_bytes:
        ratio_c = cc.bytes_in / cc.ops_bytes
        targets.add(
            "hub catch-up bytes within 2x of the missed deltas",
            f"{fmt_int(cc.bytes_in)} B for {fmt_int(cc.ops_bytes)} B of ops ({ratio_c:.2f}x)",
            f"pycrdt-websocket {fmt_int(yc.bytes_in)} B" if yc else "-",
            ratio_c <= 2.0,
        )
    if d is not None:
        targets.add(
            "no acknowledged edit lost to a hub SIGKILL",
            f"lost {d.lost}/{d.acked} over {d.restarts} restarts",
            "-",
            d.lost == 0,
        )
    return t
