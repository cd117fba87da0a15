"""Sans-IO sync sessions: the protocol's state machines, with no sockets and no clocks.

`ClientSession` runs beside a client's `Run`; `HubSession` runs in the hub, one per
connection, beside the hub's replica of the run. Each turns received bytes into bytes to
send (``receive``), so the same sessions run over WebSocket and over the seeded simulated
network of `convergent.testing` (the automerge ``generate/receive_sync_message`` shape).

    client                          hub
    HELLO(run, replica, token, version)  ->
                                    <-  WELCOME(run id, role, version)
                                    <-  OPS(catch-up: what the client lacks)
    OPS(what the hub lacks)         ->
                                    <-  ACK(id)   after the ops are durable
    ... live OPS both ways, ACKs, PRESENCE ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from convergent.codec.tags import Tag
from convergent.crdt import CausalContext, ORMap
from convergent.crdt.register import MVRegister
from convergent.errors import DecodeError, ProtocolError, SchemaError, StorageError
from convergent.run import Run, Version
from convergent.run.config import schema_of
from convergent.run.document import read_bundle
from convergent.run.ops import Bundle, Op, Part, decode_bundle, encode_bundle, split_bundle
from convergent.run.weights import foreign_contribution
from convergent.sync.protocol import (
    DEFAULT_MAX_FRAME,
    FRAME_OVERHEAD,
    PROTOCOL_VERSION,
    Ack,
    Code,
    Error,
    Frame,
    Hello,
    Ops,
    Presence,
    Role,
    Welcome,
    decode_frame,
    encode_frame,
)

# The parts each role may write (DESIGN.md section 4). Members and replicas: everyone who
# writes says who they are.
_PEOPLE = frozenset({Part.MEMBERS, Part.REPLICAS})
WRITABLE: dict[Role, frozenset[Part]] = {
    Role.VIEWER: frozenset(),
    Role.EDITOR: _PEOPLE
    | {
        Part.SCHEMA,
        Part.CONFIG,
        Part.SAMPLES,
        Part.LABELS,
        Part.SPLITS,
        Part.TAGS,
        Part.PAYLOADS,
        Part.COMMENTS,
        Part.DESCRIPTION,
        Part.CONTROL,
        Part.COMMANDS,
    },
    Role.WORKER: _PEOPLE
    | {
        Part.METRICS,
        Part.METRIC_NAMES,
        Part.CHECKPOINTS,
        Part.APPLIED,
        Part.COMMANDS,
        Part.WEIGHTS,
    },
    Role.ADMIN: frozenset(Part),
}


# -- client ---------------------------------------------------------------------------------
class ClientSession:
    """The client side: keeps a `Run` and the hub in step.

    Args:
        run: the client's replica.
        name: the run's name on the hub.
        token: the access token.
    """

    def __init__(self, run: Run, name: str, token: str, max_frame: int = DEFAULT_MAX_FRAME):
        self.run = run
        self.name = name
        self.token = token
        self.max_frame = max_frame
        self.role: Role | None = None
        self.hub_max_frame = DEFAULT_MAX_FRAME
        self.error: Error | None = None
        self.refused: list[Error] = []
        self.presence: dict[int, Presence] = {}
        self._sent = CausalContext()  # ops the hub holds or has been sent
        # The run's store position up to which every op is in _sent (None until the first
        # send after WELCOME): later sends look only at the ops stored after it.
        self._scanned: int | None = None
        self._inflight: dict[int, int] = {}  # OPS id -> ops in it, until acked
        self._next_id = 0
        self._caught_up = False

    def hello(self) -> bytes:
        """The first frame to send."""
        return encode_frame(
            Hello(
                self.name,
                self.run.replica_id,
                self.token,
                self.run.version.to_bytes(),
                max_frame=self.max_frame,
            )
        )

    @property
    def welcomed(self) -> bool:
        return self.role is not None

    @property
    def caught_up(self) -> bool:
        """The hub's catch-up (what this replica lacked when it connected) has arrived."""
        return self._caught_up

    @property
    def pending(self) -> int:
        """Ops sent and not yet acknowledged, plus local ops not yet sent."""
        run = self.run
        with run._lock:
            if self._scanned == run._position:
                unsent = 0  # nothing stored since everything before was sent
            elif self._scanned is None or run._closed:
                unsent = run._version.join(self._sent).dot_count() - self._sent.dot_count()
            else:  # the few ops stored since the last send (received ones move _scanned)
                sent = self._sent
                unsent = sum(
                    1
                    for _, op in run._store.ops_after(self._scanned)
                    if (op.origin, op.seq) not in sent
                )
        return sum(self._inflight.values()) + max(unsent, 0)

    @property
    def synced(self) -> bool:
        """Welcomed, caught up, and every local op acknowledged by the hub."""
        return self.welcomed and self._caught_up and self.pending == 0

    def receive(self, data: bytes) -> list[bytes]:
        """Handle one frame from the hub; returns the frames to send back.

        Raises:
            ProtocolError: the hub sent something this client cannot accept (the caller
                closes the connection and reconnects later).
        """
        try:
            frame = decode_frame(data)
        except DecodeError as err:
            raise ProtocolError(f"the hub sent a malformed frame: {err}") from None
        if isinstance(frame, Error):
            if frame.code.closes:
                self.error = frame
                raise ProtocolError(f"the hub refused the connection: {frame.message}")
            self.refused.append(frame)
            self._inflight.pop(frame.ref, None)
            return []
        if not self.welcomed:
            if not isinstance(frame, Welcome):
                raise ProtocolError(f"expected WELCOME, got {type(frame).__name__}")
            self.role = frame.role
            self.hub_max_frame = frame.max_frame
            self._sent = Version.from_bytes(frame.version).context
            self._scanned = None
            if self.run.version.ops and frame.run_id != self.run.id:
                raise ProtocolError(
                    f"this replica belongs to run {self.run.id}; the hub's {self.name!r} is "
                    f"run {frame.run_id}: use another local store"
                )
            return self.outgoing()
        if isinstance(frame, Ops):
            incoming = read_bundle(frame.bundle)  # decoded once: merged, then counted
            with self.run._lock:
                # Nothing unsent before these ops (the usual case): they are the hub's, so
                # the send position moves past them and `pending` never reads them back.
                moves = self._scanned is not None and self._scanned == self.run._position
                self.run.merge(incoming)
                for op, _, _ in incoming.ops:
                    self._sent.add(op.origin, op.seq)
                if moves:
                    self._scanned = self.run._position
            if frame.id <= 1:  # the catch-up's last frame (1), or live ops after it (0)
                self._caught_up = True
            return []
        if isinstance(frame, Ack):
            self._inflight.pop(frame.id, None)
            return []
        if isinstance(frame, Presence):
            self.presence[frame.replica] = frame
            return []
        raise ProtocolError(f"unexpected {type(frame).__name__} from the hub")

    def outgoing(self) -> list[bytes]:
        """Frames carrying the local ops the hub has not been sent yet."""
        if not self.welcomed or self.role is Role.VIEWER:
            return []
        run = self.run
        with run._lock:
            if self._scanned is None:  # the first send of a connection: all the hub lacks
                bundle, ids = run._export(self._sent, run._version.replicas_beyond(self._sent))
                self._scanned = run._position
            else:  # then only what was stored since the last send
                bundle, ids, self._scanned = run._export_after(self._scanned, self._sent)
            if not ids:
                return []
            for origin, seq in ids:
                self._sent.add(origin, seq)
        limit = min(self.max_frame, self.hub_max_frame) - FRAME_OVERHEAD
        parts, too_big = split_bundle(bundle, limit)
        for origin, seq in too_big:
            self.refused.append(
                Error(
                    Code.SKIPPED,
                    0,
                    f"op {seq} of replica {origin:016x} is larger than the hub accepts "
                    f"({limit:,} bytes): it stays on this replica",
                )
            )
        frames = []
        for part, n in parts:
            if n:
                self._next_id += 1
                self._inflight[self._next_id] = n
                frames.append(encode_frame(Ops(self._next_id, part)))
        return frames

    def presence_frame(self, user: str, state: str) -> bytes:
        return encode_frame(Presence(self.run.replica_id, user, state))


# -- hub ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What the hub does after one frame: reply on this connection, send to the run's other
    connections, and whether to close this one."""

    reply: list[bytes] = field(default_factory=list)
    broadcast: list[bytes] = field(default_factory=list)
    close: bool = False


Authorize = Callable[[str, str], Role | None]  # (token, run name) -> role, None if refused


class HubSession:
    """The hub side of one connection.

    Args:
        name: the run's name (from the URL).
        find: the hub's replica of a run by name (``None``: no such run).
        authorize: the role a token grants on a run, or ``None``.
    """

    def __init__(
        self,
        name: str,
        find: Callable[[str], Run | None],
        authorize: Authorize,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.name = name
        self.find = find
        self.authorize = authorize
        self.max_frame = max_frame
        self.run: Run | None = None
        self.role: Role | None = None
        self.replica: int | None = None
        self.frame_limit = max_frame  # the largest frame both sides take (known at HELLO)

    def _fail(self, code: Code, message: str, ref: int = 0) -> Outcome:
        return Outcome(reply=[encode_frame(Error(code, ref, message))], close=code.closes)

    def receive(self, data: bytes) -> Outcome:
        """Handle one frame from the client. Never raises on bad input: bad input gets an
        error frame (and a close, for anything but a refused OPS frame)."""
        if len(data) > self.max_frame:
            return self._fail(Code.TOO_LARGE, f"frame of {len(data)} bytes > {self.max_frame}")
        try:
            frame: Frame = decode_frame(data)
        except DecodeError as err:
            return self._fail(Code.MALFORMED, f"malformed frame: {err}")
        if self.run is None:
            if not isinstance(frame, Hello):
                return self._fail(Code.OUT_OF_PROTOCOL, "the first frame must be HELLO")
            return self._hello(frame)
        if isinstance(frame, Ops):
            return self._ops(frame)
        if isinstance(frame, Presence):
            if frame.replica != self.replica:
                return self._fail(Code.OUT_OF_PROTOCOL, "presence for another replica")
            return Outcome(broadcast=[data])
        return self._fail(Code.OUT_OF_PROTOCOL, f"unexpected {type(frame).__name__} frame")

    def _hello(self, hello: Hello) -> Outcome:
        if hello.protocol != PROTOCOL_VERSION:
            return self._fail(
                Code.UNSUPPORTED,
                f"protocol version {hello.protocol}; this hub speaks {PROTOCOL_VERSION}",
            )
        if hello.run != self.name:
            return self._fail(Code.OUT_OF_PROTOCOL, f"HELLO names run {hello.run!r}")
        role = self.authorize(hello.token, self.name)
        if role is None:
            return self._fail(Code.AUTH, "unknown or revoked token for this run")
        run = self.find(self.name)
        if run is None:
            return self._fail(Code.UNKNOWN_RUN, f"no run {self.name!r} on this hub")
        try:
            theirs = Version.from_bytes(hello.version)
        except DecodeError as err:
            return self._fail(Code.MALFORMED, f"malformed version in HELLO: {err}")
        self.run, self.role, self.replica = run, role, hello.replica
        welcome = Welcome(run.id, role, run.version.to_bytes(), max_frame=self.max_frame)
        out = Outcome(reply=[encode_frame(welcome)])
        # The catch-up is always sent (maybe empty), in frames the client accepts, counted
        # down to 1: the last one tells the client it has caught up.
        self.frame_limit = min(self.max_frame, hello.max_frame)
        parts, too_big = split_bundle(run.export_since(theirs), self.frame_limit - FRAME_OVERHEAD)
        if too_big:
            skipped = Error(Code.SKIPPED, 0, f"{len(too_big)} ops are larger than your limit")
            out.reply.append(encode_frame(skipped))
        for i, (part, _) in enumerate(parts):
            out.reply.append(encode_frame(Ops(len(parts) - i, part)))
        return out

    def _ops(self, frame: Ops) -> Outcome:
        assert self.run is not None and self.role is not None
        run = self.run
        try:
            incoming = read_bundle(frame.bundle)
        except DecodeError as err:
            return self._fail(Code.MALFORMED, f"malformed ops: {err}", frame.id)
        ops = [op for op, _, _ in incoming.ops]
        allowed = WRITABLE[self.role]
        for op in ops:
            denied = sorted(p.label for p in op.deltas if p not in allowed)
            if denied:
                return self._fail(
                    Code.FORBIDDEN,
                    f"a {self.role.label} may not write {', '.join(denied)}",
                    frame.id,
                )
        for op, stored, _ in incoming.ops:
            if run.holds(op.origin, op.seq):
                held = run._store.get_op(op.origin, op.seq)
                if held is not None and held.data != stored.data:
                    return self._fail(
                        Code.INVALID,
                        f"replica {op.origin:016x} reused op id {op.seq} for another op "
                        "(a copied replica file?); give the copy a new store",
                        frame.id,
                    )
        problem = _schema_problem(run, ops)
        for op in ops:  # only a worker writes its own contribution (anyone may skip)
            problem = problem or foreign_contribution(op)
        if problem is not None:
            return self._fail(Code.INVALID, problem, frame.id)
        try:
            new = run.merge(incoming)
        except DecodeError as err:  # ops of another run
            return self._fail(Code.INVALID, str(err), frame.id)
        except StorageError as err:
            return self._fail(Code.INTERNAL, f"not stored: {err}", frame.id)
        if new and any(Part.WEIGHTS in op.deltas for op in ops):
            # The hub holds every worker's contributions: fold the rounds no replica can see
            # change any more into the checkpoint, so its state (and snapshots) stay the size
            # of a few rounds. A local inflation: the ops stay in the log, nothing is sent.
            run.weights.compact()
        out = Outcome(reply=[encode_frame(Ack(frame.id))])
        if new:
            out.broadcast.append(encode_frame(Ops(0, frame.bundle)))
        return out


def coalesce(frames: list[bytes], limit: int) -> list[bytes]:
    """The same frames with each run of adjacent live OPS frames (id 0) packed into as few
    frames of at most ``limit`` bytes as hold them, everything else in place.

    A subscriber that fell behind by many single-op frames then pays one frame (one
    WebSocket message, one merge and one store commit) per batch instead of per op. Ops
    keep their order, and a merge of several ops is the merge of each: the client cannot
    tell. Frames the hub made itself are trusted to decode.
    """
    out: list[bytes] = []
    group: list[Ops] = []

    def flush() -> None:
        if len(group) == 1:
            out.append(encode_frame(group[0]))
        elif group:
            first = decode_bundle(group[0].bundle)
            ops = [op for f in group for op in decode_bundle(f.bundle).ops]
            packed = encode_bundle(Bundle(first.run_id, tuple(ops)))
            parts, too_big = split_bundle(packed, limit - FRAME_OVERHEAD)
            if too_big:  # larger than this client takes: leave them as they came
                out.extend(encode_frame(f) for f in group)
            else:
                out.extend(encode_frame(Ops(0, part)) for part, _ in parts)
        group.clear()

    for data in frames:
        frame = decode_frame(data) if data[:1] == bytes([Tag.OPS]) else None
        if isinstance(frame, Ops) and frame.id == 0:
            group.append(frame)
            continue
        flush()
        out.append(data)
    flush()
    return out


def _schema_problem(run: Run, ops: list[Op]) -> str | None:
    """Why a config value in ``ops`` breaks the run's schema (with the ops' own rules)."""
    configs = [op.deltas[Part.CONFIG] for op in ops if Part.CONFIG in op.deltas]
    if not configs:
        return None
    declared = [op.deltas[Part.SCHEMA] for op in ops if Part.SCHEMA in op.deltas]
    if declared:  # rules declared in the same frame count (rare: build them afresh)
        rules = run._state(Part.SCHEMA).copy()
        for delta in declared:
            rules.join_inplace(delta)
        schema, _ = schema_of(rules)
    else:
        schema = run.schema  # cached until the rules change
    for delta in configs:
        assert isinstance(delta, ORMap)
        for key, reg in delta.items():
            if not isinstance(reg, MVRegister):
                continue
            for entry in reg.sorted_entries():
                try:
                    schema.check(str(key), entry.value)
                except SchemaError as err:
                    return str(err)
    return None
