"""The sans-IO sync sessions over the seeded simulated network: clients and a hub converge
through partitions and reconnects; roles, schema and bad frames are refused as specified."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convergent.codec import encode
from convergent.crdt import CausalContext, ORMap
from convergent.errors import ProtocolError
from convergent.run import Float, Int, Part, Run
from convergent.run.ops import decode_bundle, decode_op
from convergent.sync import ClientSession, Code, HubSession, Role, decode_frame, encode_frame
from convergent.sync.protocol import Ack, Error, Hello, Ops, Presence, Welcome
from convergent.testing.network import Faults, SimulatedNetwork

SCHEMA = {"lr": Float(0.1, min=0.0, max=1.0), "batch_size": Int(64, min=1)}
TOKENS = {"ed": Role.EDITOR, "view": Role.VIEWER, "work": Role.WORKER, "adm": Role.ADMIN}


def state(run: Run) -> dict[Part, bytes]:
    return {p: encode(run._state(p)) for p in Part}


class Sim:
    """A hub and clients wired through a `SimulatedNetwork`.

    Each message carries its connection's number, so frames of a connection that was cut
    never reach the next one (as on a real socket).
    """

    def __init__(self, clients: dict[str, str], seed: int = 0) -> None:
        self.hub = Run(config=SCHEMA)
        # A WebSocket is a reliable, ordered channel: no drops, no reordering. Partitions
        # cut connections; a healed client reconnects with a new session.
        self.net: SimulatedNetwork[str] = SimulatedNetwork(
            ["hub", *clients], seed=seed, faults=Faults(reorder=False)
        )
        self.tokens = clients
        self.runs = {name: Run() for name in clients}
        self.clients: dict[str, ClientSession] = {}
        self.hub_side: dict[str, HubSession] = {}
        self.epoch: dict[str, int] = dict.fromkeys(clients, 0)
        self.closed: list[tuple[str, Error]] = []
        for name in clients:
            self.connect(name)

    def send(self, src: str, dst: str, frame: bytes) -> None:
        client = dst if src == "hub" else src
        self.net.send(src, dst, bytes([self.epoch[client] % 256]) + frame)

    def connect(self, name: str) -> None:
        self.epoch[name] += 1
        self.clients[name] = ClientSession(self.runs[name], "digits", self.tokens[name])
        self.hub_side[name] = HubSession(
            "digits", lambda n: self.hub if n == "digits" else None, lambda t, _: TOKENS.get(t)
        )
        self.send(name, "hub", self.clients[name].hello())

    def handle(self, src: str, dst: str, msg: bytes) -> None:
        client = dst if src == "hub" else src
        if msg[0] != self.epoch[client] % 256:
            return  # a frame of a connection that no longer exists
        msg = msg[1:]
        if dst == "hub":
            session = self.hub_side.get(src)
            if session is None:
                return  # the connection was closed
            out = session.receive(msg)
            for frame in out.reply:
                self.send("hub", src, frame)
            for frame in out.broadcast:
                for other, s in self.hub_side.items():
                    if other != src and s.run is not None:
                        self.send("hub", other, frame)
            if out.close:
                err = decode_frame(out.reply[-1])
                assert isinstance(err, Error)
                self.closed.append((src, err))
                del self.hub_side[src]
        else:
            for frame in self.clients[dst].receive(msg):
                self.send(dst, "hub", frame)

    def push(self, name: str) -> None:
        for frame in self.clients[name].outgoing():
            self.send(name, "hub", frame)

    def settle(self) -> None:
        self.net.deliver_all(self.handle)


def edit(run: Run, kind: int, value: int) -> None:
    if kind == 0:
        run.config["lr"] = value / 10
    elif kind == 1:
        run.dataset.add(np.full(2, value, dtype=np.uint8), label=value)
    elif kind == 2:
        run.notes.add(f"note {value}")
    else:
        run.log({"loss": float(value)}, step=value)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    plan=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(1, 9), st.booleans()),
        min_size=1,
        max_size=30,
    ),
)
def test_clients_converge_through_partitions_and_reconnects(
    seed: int, plan: list[tuple[int, int, int, bool]]
) -> None:
    names = [f"c{i}" for i in range(5)]
    sim = Sim({n: "adm" for n in names}, seed=seed)
    sim.settle()
    cut: set[str] = set()
    for who, kind, value, flip in plan:
        name = names[who]
        if flip:  # cut this client from the hub, or heal it (and reconnect)
            if name in cut:
                cut.discard(name)
                sim.net.heal()
                if cut:
                    sim.net.partition({"hub", *(set(names) - cut)}, cut)
                sim.connect(name)
            else:
                cut.add(name)
                sim.net.partition({"hub", *(set(names) - cut)}, cut)
        edit(sim.runs[name], kind, value)
        sim.push(name)
        item = sim.net.deliver_one()
        if item is not None:
            sim.handle(*item)
    sim.net.heal()
    for name in cut:
        sim.connect(name)
    sim.settle()
    for name in names:
        sim.push(name)
    sim.settle()
    hub = state(sim.hub)
    for name in names:
        assert state(sim.runs[name]) == hub, name
        assert sim.clients[name].synced
    assert sim.closed == []


def test_a_client_that_was_offline_resyncs_with_what_it_missed() -> None:
    sim = Sim({"a": "ed", "b": "ed"})
    sim.settle()
    sim.net.partition({"hub", "a"}, {"b"})
    for i in range(200):
        sim.runs["a"].config["lr"] = i / 1000
        sim.push("a")
    sim.runs["b"].config["lr"] = 0.9  # offline, concurrent
    sim.settle()
    sim.net.heal()
    sim.connect("b")
    sim.settle()
    sim.push("b")
    sim.settle()
    assert state(sim.runs["a"]) == state(sim.runs["b"]) == state(sim.hub)
    [conflict] = sim.runs["a"].config.conflicts()
    assert sorted(w.value for w in conflict.values) == [0.199, 0.9]


def test_roles_are_enforced_and_refused_ops_are_neither_stored_nor_forwarded() -> None:
    sim = Sim({"viewer": "view", "worker": "work", "editor": "ed"})
    sim.settle()
    before = state(sim.hub)
    sim.runs["viewer"].config["lr"] = 0.5
    assert sim.clients["viewer"].outgoing() == []  # a viewer's client does not even send
    # ... and a forged OPS frame from a viewer is refused by the hub
    forged = encode_frame(Ops(7, sim.runs["viewer"].export_since(sim.hub.version)))
    out = sim.hub_side["viewer"].receive(forged)
    [err] = [decode_frame(f) for f in out.reply]
    assert isinstance(err, Error) and err.code is Code.FORBIDDEN and err.ref == 7
    assert "viewer may not write config" in err.message and not out.close and not out.broadcast
    sim.runs["worker"].config["lr"] = 0.6  # a worker may log metrics, not edit config
    sim.push("worker")
    sim.settle()
    assert [e.code for e in sim.clients["worker"].refused] == [Code.FORBIDDEN]
    assert state(sim.hub) == before
    assert sim.runs["editor"].config["lr"] == 0.1  # nothing was forwarded
    sim.runs["worker"].log({"loss": 1.0})
    sim.push("worker")
    sim.settle()
    assert sim.runs["editor"].metrics("loss").value.tolist() == [1.0]


def test_a_value_that_breaks_the_schema_is_refused() -> None:
    sim = Sim({"a": "ed", "b": "ed"})
    sim.settle()
    run = sim.runs["a"]
    run._edit(Part.CONFIG, ORMap.set, "lr", 5.0)  # past the edge check, as a buggy build
    sim.push("a")
    sim.settle()
    [err] = sim.clients["a"].refused
    assert err.code is Code.INVALID and "5.0 is above the maximum 1.0" in err.message
    assert sim.hub.config["lr"] == sim.runs["b"].config["lr"] == 0.1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"", Code.MALFORMED),
        (b"\x42\x01\xff", Code.MALFORMED),
        (b"\x99\x01", Code.MALFORMED),
        (encode_frame(Ops(1, b"x")), Code.OUT_OF_PROTOCOL),  # OPS before HELLO
        (encode_frame(Ack(1)), Code.OUT_OF_PROTOCOL),
        (encode_frame(Hello("digits", 1, "nope", b"")), Code.AUTH),
        (encode_frame(Hello("other", 1, "ed", b"")), Code.OUT_OF_PROTOCOL),
        (encode_frame(Hello("digits", 1, "ed", b"", protocol=9)), Code.UNSUPPORTED),
        (encode_frame(Hello("digits", 1, "ed", b"junk")), Code.MALFORMED),
        (b"\x40\x01" + b"\x00" * 100, Code.TOO_LARGE),
    ],
)
def test_bad_first_frames_get_an_error_and_a_close(frame: bytes, code: Code) -> None:
    hub = Run(config=SCHEMA)
    session = HubSession("digits", lambda _: hub, lambda t, _: TOKENS.get(t), max_frame=64)
    out = session.receive(frame)
    [err] = [decode_frame(f) for f in out.reply]
    assert isinstance(err, Error) and err.code is code
    assert out.close and not out.broadcast


def test_bad_frames_after_hello_close_only_that_connection() -> None:
    sim = Sim({"a": "ed", "b": "ed"})
    sim.settle()
    for bad in (b"\x42\x01garbage", encode_frame(Welcome("x", Role.ADMIN, b""))):
        out = sim.hub_side["a"].receive(bad)
        assert out.close and not out.broadcast
    sim.runs["b"].config["lr"] = 0.3
    sim.push("b")
    sim.settle()
    assert sim.hub.config["lr"] == 0.3


def test_presence_is_relayed_not_stored() -> None:
    sim = Sim({"a": "ed", "b": "ed"})
    sim.settle()
    before = state(sim.hub)
    sim.send("a", "hub", sim.clients["a"].presence_frame("alice", "dataset"))
    sim.settle()
    [p] = sim.clients["b"].presence.values()
    assert (p.user, p.state) == ("alice", "dataset")
    assert state(sim.hub) == before
    spoof = encode_frame(Presence(12345, "mallory", "x"))
    assert sim.hub_side["a"].receive(spoof).close


def test_a_client_refuses_a_hub_that_breaks_the_protocol() -> None:
    session = ClientSession(Run(), "digits", "ed")
    with pytest.raises(ProtocolError, match="expected WELCOME"):
        session.receive(encode_frame(Ack(1)))
    with pytest.raises(ProtocolError, match="malformed"):
        session.receive(b"\x00")
    with pytest.raises(ProtocolError, match="refused the connection"):
        session.receive(encode_frame(Error(Code.AUTH, 0, "bad token")))


def test_coalesce_packs_adjacent_live_ops_and_keeps_everything_else_in_place() -> None:
    from convergent.sync.session import coalesce

    writer = Run(config=SCHEMA)
    reader = Run(join=writer.export_since())
    live = []
    for i in range(6):
        before = writer.version
        writer.config["lr"] = i / 10
        live.append(encode_frame(Ops(0, writer.export_since(before))))
    ack, catchup = encode_frame(Ack(7)), encode_frame(Ops(1, writer.export_since()))
    frames = [live[0], live[1], live[2], ack, live[3], catchup, live[4], live[5]]
    out = coalesce(frames, 1 << 20)
    kinds = [(type(f).__name__, getattr(f, "id", None)) for f in map(decode_frame, out)]
    assert kinds == [("Ops", 0), ("Ack", 7), ("Ops", 0), ("Ops", 1), ("Ops", 0)]
    assert out[1] == ack and out[2] == live[3] and out[3] == catchup
    session = ClientSession(reader, "r", "t")
    session.receive(encode_frame(Welcome(writer.id, Role.EDITOR, reader.version.to_bytes())))
    for frame in out:
        session.receive(frame)
    assert reader.version.ops == writer.version.ops and reader.config["lr"] == 0.5
    assert state(reader) == state(writer)
    # A limit below the packed size: several frames, each within it, every op once, in order.
    limit = len(live[0]) * 3
    small = coalesce(live, limit)
    assert 1 < len(small) < len(live) and all(len(f) <= limit for f in small)
    seqs = [
        decode_op(raw).seq
        for f in small
        for raw, _ in decode_bundle(decode_frame(f).bundle).ops  # type: ignore[union-attr]
    ]
    assert seqs == sorted(seqs) and len(seqs) == 6


def test_ops_merged_from_elsewhere_after_connecting_are_counted_and_sent() -> None:
    sim = Sim({"a": "ed", "b": "ed"})
    sim.settle()
    offline = Run()  # a replica that never connects: its ops reach "a" as a file would
    offline.merge_bytes(sim.runs["a"].export_since())
    for i in range(3):
        offline.notes.add(f"from the field {i}")
    sim.runs["a"].merge_bytes(offline.export_since(sim.runs["a"].version))
    assert sim.clients["a"].pending == 3
    sim.push("a")
    sim.settle()
    assert sim.clients["a"].synced and sim.clients["b"].synced
    assert state(sim.runs["b"]) == state(sim.hub) == state(sim.runs["a"])
    assert len(sim.runs["b"].notes.list()) == 3


def test_a_live_edit_does_not_walk_every_replica_the_run_has_had(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a run 2,000 replicas have written to, sending an edit reads the store twice (the
    ops stored since the last send, their blobs), accepting it at the hub not at all, and
    neither copies a version vector (walking every replica cost 32 ms per edit at 5,000)."""
    sim = Sim({"a": "ed"})
    for i in range(2000):
        with sim.hub.acting_as(1_000_000 + i):
            sim.hub.notes.add(f"note {i}")
    sim.settle()
    run, client = sim.runs["a"], sim.clients["a"]
    run.config["lr"] = 0.5
    sim.push("a")
    sim.settle()
    reads: list[tuple[str, object]] = []
    copied: list[int] = []
    for where, store in (("writer", run._store), ("hub", sim.hub._store)):
        for name in ("ops_of", "ops_after", "blobs_of", "get_op"):
            read = getattr(store, name)
            monkeypatch.setattr(
                store,
                name,
                lambda *a, f=read, key=f"{where}.{name}": reads.append((key, a[0])) or f(*a),
            )
    copy = CausalContext.copy
    monkeypatch.setattr(
        CausalContext, "copy", lambda self: copied.append(len(self.replicas())) or copy(self)
    )
    for i in range(3):
        run.config["lr"] = i / 10
        sim.push("a")
        assert client.pending == 1
        sim.settle()
        assert client.synced
    # Per edit, one read of what was stored since the last send and one of the blobs the
    # writer's new op brought; nothing per replica, and nothing at the hub.
    assert [key for key, _ in reads] == ["writer.ops_after", "writer.blobs_of"] * 3
    assert {arg for key, arg in reads if key == "writer.blobs_of"} == {run.replica_id}
    assert max(copied, default=0) < 5  # only an edit's own small contexts are copied
    assert sim.hub.config["lr"] == 0.2


def test_pending_reads_nothing_back_for_a_client_that_only_receives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`synced` (what `wait_synced` and `status` ask on every frame) stays O(1) for a client
    that receives thousands of ops and sends none, and still answers once the run is closed."""
    sim = Sim({"reader": "ed", "writer": "ed"})
    sim.settle()
    for i in range(300):
        sim.runs["writer"].notes.add(f"note {i}")
        sim.push("writer")
    sim.settle()
    reader = sim.clients["reader"]
    reads: list[int] = []
    store = sim.runs["reader"]._store
    ops_after = store.ops_after
    monkeypatch.setattr(store, "ops_after", lambda p, *a: reads.append(p) or ops_after(p, *a))
    assert reader.synced and reader.pending == 0
    assert reads == []
    sim.runs["reader"].notes.add("not sent yet")
    assert reader.pending == 1
    sim.runs["reader"].close()
    assert reader.pending == 1  # from memory: the closed store is not read
