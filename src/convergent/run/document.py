"""`Run`: one training run as a replicated, durable, offline-first document.

A run is a set of parts (`Part`), each a CRDT from the core, edited through small views:
``run.config``, ``run.dataset``, ``run.notes``, ``run.checkpoints``, ``run.control``,
``run.members``, plus ``run.log``/``run.metrics`` and ``run.history``. Every public edit is
one op (or, inside ``with run.transaction():``, one op for the whole block); the op is
committed to the run's `Store` before the call returns, then subscribers hear of it.

Replicas exchange ops as bytes: ``other.merge_bytes(run.export_since(other.version))`` sends
exactly the ops the other lacks (and the blobs they brought). Ops are joins of deltas, so
order, duplication and relaying through third replicas change nothing.

Example:
    >>> from convergent.run import Float, Run
    >>> alice = Run(config={"lr": Float(0.1, min=0.0)}, user="alice")
    >>> bob = Run(join=alice.export_since(), user="bob")   # bob joins alice's run
    >>> alice.config["lr"] = 0.05; bob.config["lr"] = 0.02  # concurrent, offline
    >>> _ = bob.merge_bytes(alice.export_since(bob.version))
    >>> _ = alice.merge_bytes(bob.export_since(alice.version))
    >>> [w.value for w in alice.config.conflicts()[0].values] == [0.05, 0.02]
    True
    >>> alice.config["lr"] == bob.config["lr"]              # one resolution everywhere
    True
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from convergent.crdt import Actor, CausalContext, Crdt, HybridLogicalClock, Replica, ReplicaId
from convergent.crdt.causal import new_replica_id
from convergent.crdt.replica import Subscription
from convergent.errors import (
    AuthError,
    ConvergentError,
    DecodeError,
    InvalidError,
    StorageError,
    TruncatedError,
)
from convergent.run.ops import (
    INITIAL,
    Bundle,
    Op,
    Part,
    decode_bundle,
    decode_op,
    decode_snapshot,
    decode_version,
    encode_bundle,
    encode_op,
    encode_snapshot,
    encode_version,
)
from convergent.run.schema import Param, Schema
from convergent.storage import MemoryStore, Snapshot, Store, StoredOp

if TYPE_CHECKING:
    from convergent.run.config import LiveConfig
    from convergent.run.dataset import Dataset
    from convergent.run.history import HistoryEntry
    from convergent.run.metrics import MetricSeries
    from convergent.run.parts import Checkpoints, Control, Members, Notes
    from convergent.run.snapshot import RunSnapshot

# Reopen cost is the snapshot plus the ops after it: take a new snapshot once the tail holds
# this many ops, or more once snapshots get large (writing one costs about its size).
SNAPSHOT_MIN_OPS = 1000
SNAPSHOT_BYTES_PER_OP = 4096


def digest_of(data: bytes) -> bytes:
    """The content address of a blob: 16-byte BLAKE2b."""
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True)
class Version:
    """The set of ops a replica holds, as ``(origin, seq)`` intervals; pass it to the other
    side's `Run.export_since` to receive exactly what you lack."""

    context: CausalContext

    def to_bytes(self) -> bytes:
        return encode_version(self.context)

    @classmethod
    def from_bytes(cls, data: bytes) -> Version:
        return cls(decode_version(data))

    @property
    def ops(self) -> int:
        """How many ops this version covers."""
        return self.context.dot_count()

    def __contains__(self, op_id: object) -> bool:
        return op_id in self.context


@dataclass(frozen=True)
class Incoming:
    """A decoded, checked bundle: each op with its stored form and the blobs it brought."""

    bundle: Bundle
    ops: list[tuple[Op, StoredOp, Mapping[bytes, bytes]]]


def read_bundle(data: bytes) -> Incoming:
    """Decode a bundle and every op in it, and check every blob against its digest.

    Raises:
        DecodeError: anything malformed (an op cut short inside a complete bundle, or a
            blob that does not match its digest, is `InvalidError`).
    """
    bundle = decode_bundle(data)
    ops: list[tuple[Op, StoredOp, Mapping[bytes, bytes]]] = []
    for raw, blobs in bundle.ops:
        try:
            op = decode_op(raw)
        except TruncatedError as err:
            # Each op sits inside a complete length prefix: more bytes cannot help.
            raise InvalidError(f"an op in the bundle is cut short: {err}") from None
        for digest, payload in blobs.items():
            if digest_of(payload) != digest:
                raise InvalidError(f"blob {digest.hex()} does not match its digest")
        ops.append((op, StoredOp(op.origin, op.seq, op.hlc, op.parts, raw), blobs))
    return Incoming(bundle, ops)


@dataclass(frozen=True)
class RunChange:
    """What an `Run.on_change` callback is told: which parts changed, and whether this
    replica made the change (``local``) or merged it from ``origin``."""

    parts: frozenset[str]
    local: bool
    origin: int
    revision: int


class Run:
    """A training run: config, dataset, metrics, notes, checkpoints, control and members.

    Args:
        store: where ops, the snapshot and blobs live (`MemoryStore` if omitted); use
            `convergent.open` for a durable file.
        config: config keys to declare (``{"lr": Float(0.1, min=0.0)}``); declaring a key a
            run already has with the same rule is a no-op.
        replica_id: this replica's id (new for a new store; a reopened store keeps its own).
        clock: the HLC (tests pass one with a fake wall clock).
        user: who edits through this replica (recorded in ``run.members``).
        join: another replica's `export_since` bytes to start from: this replica joins
            that run (merged before ``config`` and ``user`` are applied).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        config: Mapping[str, Param] | None = None,
        replica_id: ReplicaId | None = None,
        clock: HybridLogicalClock | None = None,
        user: str | None = None,
        join: bytes | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._store: Store = store if store is not None else MemoryStore()
        stored_id = self._store.get_meta("replica")
        if stored_id is not None and replica_id is not None and int(stored_id) != replica_id:
            raise StorageError(f"this store belongs to replica {int(stored_id):016x}")
        rid = ReplicaId(int(stored_id)) if stored_id is not None else replica_id
        if rid is None:
            rid = new_replica_id()
        if stored_id is None:
            self._store.set_meta("replica", str(int(rid)))
        self.replica_id = rid
        self.clock = clock if clock is not None else HybridLogicalClock()
        self._id = self._store.get_meta("run")
        self._replicas: dict[Part, Replica[Any]] = {
            p: Replica(make(), rid, self.clock) for p, make in INITIAL.items()
        }
        self._version = CausalContext()
        self._seq = 0
        self._revision = 0
        self._part_revisions = dict.fromkeys(Part, 0)
        self._touched: set[Part] = set()
        self._pending_blobs: dict[bytes, bytes] = {}
        self._in_transaction = False
        self._acting: frozenset[Part] | None = None  # see acting_as
        self._subscribers: dict[int, Callable[[RunChange], None]] = {}
        self._next_handle = 0
        self._position = 0  # the store position of the last op this replica has applied
        self._snapshot_position = 0
        self._snapshot_bytes = 0
        self._tail_ops = 0
        self._closed = False
        self._last_step: int | None = None  # this replica's last metric step
        self._metric_names: tuple[int, dict[int, dict[str, int]]] = (-1, {})
        self._load()
        self._attach_views()
        if join is not None:
            self.merge_bytes(join)
        if config:
            self.config.declare(config)
        if user is not None:
            self.members.identify(user)

    def _attach_views(self) -> None:
        from convergent.run.config import LiveConfig
        from convergent.run.dataset import Dataset
        from convergent.run.parts import Checkpoints, Control, Members, Notes
        from convergent.run.weights import RunWeights

        self.config: LiveConfig = LiveConfig(self)
        self.dataset: Dataset = Dataset(self)
        self.notes: Notes = Notes(self)
        self.checkpoints: Checkpoints = Checkpoints(self)
        self.control: Control = Control(self)
        self.members: Members = Members(self)
        self.weights: RunWeights = RunWeights(self)
        self._schema_cache: tuple[int, Schema, list[tuple[str, Any, str]]] | None = None
        self._metric_cache: dict[str, Any] = {}
        self._snapshot_cache: RunSnapshot | None = None

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        snap = self._store.snapshot()
        last_hlc = 0
        if snap is not None:
            try:
                version, last_hlc, parts = decode_snapshot(snap.data)
            except DecodeError as err:
                raise StorageError(f"the store's snapshot cannot be read: {err}") from None
            for part, state in parts.items():
                self._replicas[part].state = state
            self._version = version
            self._position = self._snapshot_position = snap.position
            self._snapshot_bytes = len(snap.data)
        for position, stored in self._store.ops_after(self._position):
            try:
                op = decode_op(stored.data)
            except DecodeError as err:
                raise StorageError(
                    f"op {stored.seq} of replica {stored.origin:016x} in the store cannot be "
                    f"read: {err}"
                ) from None
            if (op.origin, op.seq) != (stored.origin, stored.seq):
                raise StorageError(f"op at log position {position} is not the op it claims")
            self._join(op)
            last_hlc = max(last_hlc, op.hlc)
            self._position = position
            self._tail_ops += 1
        if last_hlc:
            self.clock.observe(last_hlc)
        for part in Part:
            # Only ever up: views cache by revision, and a reload must not meet old keys.
            self._part_revisions[part] += 1
        self._revision += 1
        self._seq = self._version.max_counter(self.replica_id)

    def _reload(self) -> None:
        """Rebuild the state from the store (after a commit the store refused)."""
        for part, make in INITIAL.items():
            replica = self._replicas[part]
            replica.state = make()
            replica.take_outbox()
        self._version = CausalContext()
        self._position = self._snapshot_position = self._snapshot_bytes = self._tail_ops = 0
        self._last_step = None
        try:
            self._load()
        except BaseException:
            self._closed = True  # the store cannot even be read: refuse further use
            raise
        self._snapshot_cache = None

    def _join(self, op: Op) -> None:
        for part, delta in op.deltas.items():
            self._replicas[part].receive(delta, relay=False)
            self._part_revisions[part] += 1
        self._version.add(op.origin, op.seq)
        if op.origin == self.replica_id and op.seq > self._seq:
            # Our own ops coming back (a replica restored from a peer's copy): never reuse
            # an op id that others already hold.
            self._seq = op.seq

    # -- identity --------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The run's id, shared by all its replicas (given by its first op)."""
        with self._lock:
            if self._id is None:
                self._id = uuid.uuid4().hex
                self._store.set_meta("run", self._id)
            return self._id

    @property
    def version(self) -> Version:
        """The ops this replica holds."""
        with self._lock:
            return Version(self._version.copy())

    @property
    def revision(self) -> int:
        """A counter that grows with every change, local or merged: an O(1) "anything new?"."""
        return self._revision

    # -- editing ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the edits made in the block into one op, committed when the block ends.

        Edits check their input before they change anything, so an error raised by an edit
        leaves the run as it was; the edits that ran before it in the block are committed.
        """
        with self._lock:
            if self._in_transaction:
                yield
                return
            self._check_open()
            self._in_transaction = True
            try:
                yield
            finally:
                self._in_transaction = False
                self._commit()

    @contextmanager
    def acting_as(
        self, replica_id: ReplicaId, *, writable: frozenset[Part] | None = None
    ) -> Iterator[None]:
        """Make the edits of the block as replica ``replica_id``, on this replica's state.

        The hub uses this for browser sessions: each has a replica id of its own, so its
        edits are ops of that replica (attributed and merged like any other replica's),
        computed on the hub's state, which holds every op that replica made before. The
        block's ops are committed to this run's store as usual.

        Args:
            replica_id: whose ops the block makes (their next op id follows the last one this
                run holds).
            writable: the parts the block may change; an edit of another part raises
                `AuthError` before it changes anything.
        """
        with self._lock:
            self._check_open()
            if self._in_transaction or self._acting is not None:
                raise ConvergentError("acting_as cannot start inside a transaction")
            saved_id, saved_seq = self.replica_id, self._seq
            actors = {p: r.actor for p, r in self._replicas.items()}
            self.replica_id = replica_id
            self._seq = self._version.max_counter(replica_id)
            self._acting = writable if writable is not None else frozenset(Part)
            for replica in self._replicas.values():
                replica.actor = Actor(replica_id, self.clock)
            try:
                yield
            finally:
                self.replica_id, self._seq, self._acting = saved_id, saved_seq, None
                for part, actor in actors.items():
                    self._replicas[part].actor = actor

    def _edit(self, part: Part, mutator: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self._acting is not None and part not in self._acting:
            raise AuthError(f"this session may not change {part.label}")
        with self.transaction():
            self._replicas[part].update(mutator, *args, **kwargs)
            self._touched.add(part)
            self._part_revisions[part] += 1

    def _state(self, part: Part) -> Any:
        return self._replicas[part].state

    def _part_revision(self, part: Part) -> int:
        return self._part_revisions[part]

    def _actor(self, part: Part) -> Any:
        return self._replicas[part].actor

    def _put_blob(self, data: bytes) -> bytes:
        digest = digest_of(data)
        with self.transaction():
            self._pending_blobs[digest] = data
        return digest

    def _put_blobs(self, blobs: Mapping[bytes, bytes]) -> None:
        # Blobs the store already holds are skipped there (they keep their first owner).
        with self.transaction():
            self._pending_blobs.update(blobs)

    def blob(self, digest: bytes) -> bytes:
        """The bytes stored under ``digest``, checked against it.

        Raises:
            KeyError: this replica does not hold the blob (yet).
            StorageError: the stored bytes do not match their digest.
        """
        with self._lock:
            data = self._pending_blobs.get(digest) or self._store.get_blob(digest)
        if data is None:
            raise KeyError(f"blob {digest.hex()} is not on this replica")
        if digest_of(data) != digest:
            raise StorageError(f"blob {digest.hex()} is damaged: its bytes do not match")
        return data

    def _blob_by_prefix(self, prefix: bytes, what: str) -> bytes:
        with self._lock:
            found = [(d, b) for d, b in self._pending_blobs.items() if d.startswith(prefix)]
            found = found or self._store.find_blob(prefix)
        if not found:
            raise KeyError(f"the payload of sample {what} is not on this replica yet")
        if len(found) > 1:
            raise StorageError(f"two blobs share the id {what}: refusing to guess")
        digest, data = found[0]
        if digest_of(data) != digest:
            raise StorageError(f"blob {digest.hex()} is damaged: its bytes do not match")
        return data

    def _commit(self) -> None:
        touched, self._touched = self._touched, set()
        blobs, self._pending_blobs = self._pending_blobs, {}
        try:
            deltas = {}
            for part in sorted(touched):
                delta = self._replicas[part].take_outbox()
                if delta is not None:
                    deltas[part] = delta
            if not deltas:
                return
            self.id  # noqa: B018 - a run gets its id with its first op
            seq = self._seq + 1
            hlc = int(self.clock.now())
            data = encode_op(self.replica_id, seq, hlc, deltas)
            op = StoredOp(self.replica_id, seq, hlc, sum(p.bit for p in deltas), data)
            positions = self._store.append([(op, blobs)])
        except BaseException:
            # Not stored, so it never happened: go back to what the store holds, so memory,
            # file and peers never disagree, then report the failure.
            self._reload()
            raise
        self._seq = seq
        self._version.add(self.replica_id, seq)
        if positions:
            self._position = positions[-1]
        self._tail_ops += 1
        self._changed(frozenset(deltas), local=True, origin=self.replica_id)
        self._maybe_snapshot()

    def _changed(self, parts: frozenset[Part], *, local: bool, origin: int) -> None:
        self._revision += 1
        self._snapshot_cache = None
        if self._subscribers:
            change = RunChange(frozenset(p.label for p in parts), local, origin, self._revision)
            for callback in list(self._subscribers.values()):
                callback(change)

    def on_change(self, callback: Callable[[RunChange], None]) -> Subscription:
        """Call ``callback(change)`` after every committed local op and every merge.

        Returns a handle; ``handle.remove()`` stops the calls (also usable as a context
        manager). Callbacks run on the thread that made the change, holding the run's lock.
        """
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._subscribers[handle] = callback
        return Subscription(lambda: self._subscribers.pop(handle, None) and None)

    # -- exchange --------------------------------------------------------------------------
    def export_since(self, version: Version | bytes | None = None) -> bytes:
        """The ops (and the blobs they brought) that a replica at ``version`` lacks, as bytes.

        ``None`` exports everything (a full copy of the run).
        """
        if isinstance(version, bytes | bytearray | memoryview):
            version = Version.from_bytes(bytes(version))
        theirs = version.context if version is not None else CausalContext()
        with self._lock:
            # Only the replicas with something to send cost a look in the store.
            bundle, _ = self._export(theirs, self._version.replicas_beyond(theirs))
            return bundle

    def _export(
        self, theirs: CausalContext, origins: Iterable[int]
    ) -> tuple[bytes, list[tuple[int, int]]]:
        """The ops of ``origins`` that ``theirs`` lacks, with their blobs, as a bundle, and
        their ids."""
        wanted: dict[int, dict[int, bytes]] = {}
        for origin in origins:
            held = theirs.intervals(origin)
            start = held[0][1] if held and held[0][0] == 1 else 0
            for stored in self._store.ops_of(origin, start):
                if (origin, stored.seq) not in theirs:
                    wanted.setdefault(origin, {})[stored.seq] = stored.data
        return self._bundle(wanted)

    def _export_after(
        self, position: int, theirs: CausalContext
    ) -> tuple[bytes, list[tuple[int, int]], int]:
        """The ops stored after log ``position`` that ``theirs`` lacks (as `_export`), and
        the position they reach: a live client's "what is new since I last sent", read
        without walking every replica the run has ever had."""
        with self._lock:
            wanted: dict[int, dict[int, bytes]] = {}
            for _, stored in self._store.ops_after(position):
                if (stored.origin, stored.seq) not in theirs:
                    wanted.setdefault(stored.origin, {})[stored.seq] = stored.data
            return (*self._bundle(wanted), self._position)

    def _bundle(self, wanted: dict[int, dict[int, bytes]]) -> tuple[bytes, list[tuple[int, int]]]:
        """``wanted[origin][seq]`` (op bytes) with the blobs each op brought, as a bundle
        (replicas and ops in order), and the ops' ids."""
        ops: list[tuple[bytes, dict[bytes, bytes]]] = []
        ids: list[tuple[int, int]] = []
        for origin in sorted(wanted):
            of_origin = wanted[origin]
            blobs: dict[int, dict[bytes, bytes]] = {}
            for seq, digest, data in self._store.blobs_of(origin, min(of_origin) - 1):
                if seq in of_origin:
                    blobs.setdefault(seq, {})[digest] = data
            for seq in sorted(of_origin):
                ops.append((of_origin[seq], blobs.get(seq, {})))
                ids.append((origin, seq))
        return encode_bundle(Bundle(self.id, tuple(ops))), ids

    def holds(self, origin: int, seq: int) -> bool:
        """Whether this replica holds op ``seq`` of replica ``origin`` (no copy of the
        version: the hub asks this for every op it receives)."""
        with self._lock:
            return (origin, seq) in self._version

    def merge_bytes(self, data: bytes) -> int:
        """Merge what `export_since` produced on another replica; returns how many ops were new.

        The whole input is decoded and checked before anything is stored: bad bytes raise a
        `DecodeError` (or `InvalidError` for another run's ops) and change nothing.
        """
        return self.merge(read_bundle(data))

    def merge(self, incoming: Incoming) -> int:
        """Merge a bundle already decoded and checked by `read_bundle` (the hub looks at the
        ops first, to check roles and schema, without decoding them twice)."""
        bundle, ops = incoming.bundle, incoming.ops
        with self._lock:
            self._check_open()
            # An empty replica joins the run it is given; a replica with ops never mixes runs.
            if self._id not in (None, bundle.run_id) and not self._version.is_empty():
                raise InvalidError(
                    f"these ops belong to run {bundle.run_id}, this is run {self._id}"
                )
            if self._id != bundle.run_id:
                self._id = bundle.run_id
                self._store.set_meta("run", self._id)
            fresh = {(item[0].origin, item[0].seq): item for item in ops}
            new = [item for key, item in fresh.items() if key not in self._version]
            if not new:
                return 0
            positions = self._store.append([(stored, blobs) for _, stored, blobs in new])
            parts: set[Part] = set()
            origins = set()
            for op, _, _ in new:
                self._join(op)
                self.clock.observe(op.hlc)
                parts.update(op.deltas)
                origins.add(op.origin)
            if positions:
                self._position = positions[-1]
            self._tail_ops += len(new)
            origin = origins.pop() if len(origins) == 1 else 0
            self._changed(frozenset(parts), local=False, origin=origin)
            self._maybe_snapshot()
            return len(new)

    # -- snapshots and closing -------------------------------------------------------------
    def _maybe_snapshot(self) -> None:
        if self._tail_ops >= max(SNAPSHOT_MIN_OPS, self._snapshot_bytes // SNAPSHOT_BYTES_PER_OP):
            self.compact()

    def compact(self) -> None:
        """Write a snapshot of the whole run, so a reopen replays only ops made after it."""
        with self._lock:
            if self._in_transaction or self._tail_ops == 0:
                return
            parts = {p: r.state for p, r in self._replicas.items() if _nonempty(p, r.state)}
            data = encode_snapshot(self._version, int(self.clock.now()), parts)
            self._store.put_snapshot(Snapshot(self._position, data))
            self._snapshot_position = self._position
            self._snapshot_bytes = len(data)
            self._tail_ops = 0

    def _check_open(self) -> None:
        if self._closed:
            raise ConvergentError("this run is closed")

    def close(self) -> None:
        """Snapshot if useful and release the store (idempotent)."""
        with self._lock:
            if self._closed:
                return
            if self._tail_ops >= SNAPSHOT_MIN_OPS // 10:
                self.compact()
            self._closed = True
            self._store.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the rest of the API lives in small modules ----------------------------------------
    @property
    def schema(self) -> Schema:
        """The config keys this run declares, as every replica sees them once merged."""
        from convergent.run.config import schema_of

        with self._lock:
            rev = self._part_revisions[Part.SCHEMA]
            if self._schema_cache is None or self._schema_cache[0] != rev:
                self._schema_cache = (rev, *schema_of(self._state(Part.SCHEMA)))
            return self._schema_cache[1]

    def _schema_problems(self) -> list[tuple[str, Any, str]]:
        self.schema  # noqa: B018 - refreshes the cache
        assert self._schema_cache is not None
        return list(self._schema_cache[2])

    def log(self, values: Mapping[str, float], *, step: int | None = None) -> None:
        """Append metric values at ``step`` (default: one past the highest step this replica
        has logged).

        Example: ``run.log({"loss": 0.31, "acc": 0.92}, step=1200)``.
        """
        from convergent.run.metrics import log

        log(self, values, step)

    def log_many(
        self,
        steps: Sequence[int],
        values: Sequence[Mapping[str, float]],
        *,
        times: Sequence[int] | None = None,
    ) -> None:
        """Append the points of many steps as one op (a trainer flushing its buffer).

        Args:
            steps: the step of each row.
            values: each row's metric values, aligned with ``steps``.
            times: each row's wall time in Unix ms (default: now).

        Example: ``run.log_many([1, 2], [{"loss": 0.9}, {"loss": 0.8}])``.
        """
        from convergent.run.metrics import log_many

        log_many(self, steps, values, times)

    def metrics(self, name: str) -> MetricSeries:
        """Every point of metric ``name`` from every writer, ordered by step."""
        from convergent.run.metrics import series

        return series(self, name)

    def metric_names(self) -> list[str]:
        """The names of every metric logged so far, sorted."""
        with self._lock:
            from convergent.run.metrics import names_by_writer

            return sorted({n for names in names_by_writer(self).values() for n in names})

    def history(
        self,
        part: str | None = None,
        key: str | int | None = None,
        *,
        limit: int | None = None,
    ) -> list[HistoryEntry]:
        """Who changed what, when: one entry per change, oldest first.

        Args:
            part: only this part (``"config"``, ``"dataset"``, ``"notes"``, ``"control"``,
                ``"checkpoints"``, ``"members"``).
            key: only this key (a config key, a sample id (int or hex), a comment id).
            limit: only the last ``limit`` entries.
        """
        from convergent.run.history import history

        return history(self, part, key, limit)

    def snapshot(self) -> RunSnapshot:
        """An immutable view of the run now, safe to read from a training step without locks."""
        from convergent.run.snapshot import take

        with self._lock:
            if self._snapshot_cache is None:
                self._snapshot_cache = take(self)
            return self._snapshot_cache

    def __repr__(self) -> str:
        return (
            f"Run({self._id or 'new'}, replica {self.replica_id:016x}, "
            f"{self._version.dot_count()} ops)"
        )


def _nonempty(part: Part, state: Crdt) -> bool:
    return state != INITIAL[part]()
