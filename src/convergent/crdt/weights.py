"""`Weights`: model weights trained by many workers, as a lattice of contributions.

Averaging weights is not a CRDT: it is not idempotent, not associative, and float sums depend
on their order. So the replicated object is the *set of contributions*, and the model is
*computed* from it (DESIGN.md section 5, decided-round DiLoCo):

* ``members``: worker -> (join round, leave round); join takes the minimum of each, so a leave
  is a tombstone and a join announced for a future round never moves later;
* ``slots``: (round, worker) -> ⊥ < `Contribution` < `SKIP`; only the worker writes its own
  contribution, anyone may write Skip for a slot it gave up waiting for (skip wins); two
  contributions for one slot (a misbehaving writer) resolve to the larger digest;
* ``checkpoint``: the compacted fold of every round up to its own (larger round wins), which
  also carries the initial weights (round 0) and the tensor sizes;
* ``settings``: round-scheduled outer-step settings, key -> value from a round on (a
  grow-only set; the entry in effect at round r is the newest one scheduled at or before r).

The read is a pure function of the state. Round r is *decided* when every member expected in
r has a filled slot. `Weights.fold` folds decided rounds in order: the sample-weighted mean of
the round's contributions, summed in sorted worker order in float64, then the outer step
(Nesterov momentum: DiLoCo by default, FedAvg with lr 1 and momentum 0), and casts once to
float32. Every replica holding the same state computes bit-identical weights: the sums are
elementwise IEEE operations in one fixed order. A contribution is folded only if its writer is
expected in its round and it was trained from that round's base (its ``base`` digest), so a
stale or malformed contribution counts as a Skip on every replica alike.

Contributions are quantized once, at the sender (`quantize`: fp32, fp16, or int8 with one
scale per tensor); the error-feedback residual stays with the sender, outside the state.

Example:
    >>> import numpy as np
    >>> from convergent.crdt import Actor, ReplicaId
    >>> a, b = Actor(ReplicaId(1)), Actor(ReplicaId(2))
    >>> s = Weights.initial()
    >>> s.join_inplace(s.initialize(np.zeros(3), by=a))
    >>> s.join_inplace(s.enroll(1, by=a)); s.join_inplace(s.enroll(1, by=b))
    >>> base = s.fold().digest
    >>> for who, x in ((a, [1.0, 0, 0]), (b, [0, 1.0, 0])):
    ...     payload = quantize(np.array(x), s.sizes, "fp32")
    ...     s.join_inplace(s.contribute(1, payload, n_samples=10, codec="fp32", base=base, by=who))
    >>> s.decided_round(), s.fold().weights.round(3).tolist()    # DiLoCo: w - 0.7 (g + 0.9 m)
    (1, [-0.665, -0.665, 0.0])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, NamedTuple, Self

import numpy as np
from numpy.typing import NDArray

from convergent.crdt.base import Actor, Crdt

NEVER = (1 << 63) - 1
"""A round that never comes: the join or leave round of a worker that has none."""

MAX_ROUND = (1 << 62) - 1
"""The largest round a mutator accepts (far beyond any run; keeps arithmetic in int64)."""

DIGEST_SIZE = 16

DEFAULTS: Mapping[str, float] = {"outer_lr": 0.7, "outer_momentum": 0.9}
"""Outer-step settings in effect until a `Weights.configure` says otherwise (DiLoCo)."""

FEDAVG: Mapping[str, float] = {"outer_lr": 1.0, "outer_momentum": 0.0}
"""The outer step that makes the fold plain federated averaging."""


class Codec(IntEnum):
    """How a contribution's pseudo-gradient is laid out in its payload (part of the format)."""

    FP32 = 1
    FP16 = 2
    INT8 = 3  # one float32 scale per tensor, then one int8 per parameter


CodecName = Literal["fp32", "fp16", "int8"]
_CODECS: dict[str, Codec] = {"fp32": Codec.FP32, "fp16": Codec.FP16, "int8": Codec.INT8}
_FP16_MAX = 65504.0


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.digest()


def _frozen(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """A read-only float64 copy: states share arrays between copies, so nobody may write."""
    out = np.array(a, dtype=np.float64, copy=True).reshape(-1)
    out.flags.writeable = False
    return out


def codec_of(codec: CodecName | Codec | int) -> Codec:
    """`Codec` from its name (``"fp32"``, ``"fp16"``, ``"int8"``)."""
    if isinstance(codec, Codec):
        return codec
    try:
        return Codec(codec) if isinstance(codec, int) else _CODECS[codec]
    except (KeyError, ValueError):
        raise ValueError(f"unknown codec {codec!r}: one of {', '.join(_CODECS)}") from None


# -- quantization -------------------------------------------------------------------------


def quantize(vector: NDArray[Any], sizes: Sequence[int], codec: CodecName | Codec) -> bytes:
    """A pseudo-gradient as payload bytes: the one lossy step, done once by the sender.

    Args:
        vector: the flat pseudo-gradient (any float dtype; must be finite).
        sizes: the parameter count of each tensor (int8 takes one scale per tensor).
        codec: ``"fp32"``, ``"fp16"`` (clipped to the fp16 range) or ``"int8"``.

    Example:
        >>> q = quantize(np.array([0.5, -1.0, 2.0]), [2, 1], "int8")
        >>> len(q), dequantize(q, [2, 1], "int8").round(2).tolist()   # 2 scales, 3 bytes
        (11, [0.5, -1.0, 2.0])
    """
    c = codec_of(codec)
    x = np.asarray(vector, dtype=np.float64).reshape(-1)
    if len(x) != sum(sizes):
        raise ValueError(f"vector has {len(x)} values, the sizes say {sum(sizes)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantize a vector with NaN or infinite values")
    if c is Codec.FP32:
        return x.astype("<f4").tobytes()
    if c is Codec.FP16:
        return np.clip(x, -_FP16_MAX, _FP16_MAX).astype("<f2").tobytes()
    scales = np.zeros(len(sizes), dtype="<f4")
    q = np.zeros(len(x), dtype=np.int8)
    start = 0
    for i, n in enumerate(sizes):
        part = x[start : start + n]
        top = float(np.max(np.abs(part))) if n else 0.0
        if top > 0.0:
            scale = np.float32(top / 127.0)
            scales[i] = scale
            q[start : start + n] = np.clip(np.rint(part / np.float64(scale)), -127, 127)
        start += n
    return scales.tobytes() + q.tobytes()


def dequantize(
    payload: bytes, sizes: Sequence[int], codec: CodecName | Codec
) -> NDArray[np.float64] | None:
    """The pseudo-gradient a payload holds, in float64; ``None`` if it does not fit ``sizes``.

    A payload that does not fit (wrong length, non-finite values) is never an error here: the
    fold treats such a contribution as a Skip, the same way on every replica.
    """
    c = codec_of(codec)
    total = sum(sizes)
    x: NDArray[np.float64]
    if c is Codec.FP32:
        if len(payload) != 4 * total:
            return None
        x = np.frombuffer(payload, dtype="<f4").astype(np.float64)
    elif c is Codec.FP16:
        if len(payload) != 2 * total:
            return None
        x = np.frombuffer(payload, dtype="<f2").astype(np.float64)
    else:
        t = len(sizes)
        if len(payload) != 4 * t + total:
            return None
        scales = np.frombuffer(payload, dtype="<f4", count=t).astype(np.float64)
        q = np.frombuffer(payload, dtype=np.int8, offset=4 * t).astype(np.float64)
        x = q * np.repeat(scales, np.asarray(sizes, dtype=np.int64))
    return x if bool(np.all(np.isfinite(x))) else None


# -- the elements of the lattice ----------------------------------------------------------


@dataclass(frozen=True)
class Contribution:
    """One worker's pseudo-gradient for one round (``start - local`` weights, quantized).

    Attributes:
        n_samples: how many samples it was trained on (its weight in the round's mean).
        codec: the payload layout.
        base: the digest of the fold it was trained from (`FoldState.digest` of round r-1).
        payload: the quantized values.
        digest: what identifies it (and orders two contributions for one slot).
    """

    n_samples: int
    codec: Codec
    base: bytes
    payload: bytes
    digest: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if type(self.n_samples) is not int or not 1 <= self.n_samples <= MAX_ROUND:
            raise ValueError(f"n_samples must be a positive int, not {self.n_samples!r}")
        if len(self.base) != DIGEST_SIZE:
            raise ValueError(f"base must be a {DIGEST_SIZE}-byte digest")
        object.__setattr__(self, "codec", codec_of(self.codec))
        d = _digest(
            self.n_samples.to_bytes(8, "little"), bytes([self.codec]), self.base, self.payload
        )
        object.__setattr__(self, "digest", d)


class _Skip:
    """The top of a slot: the round went on without this worker."""

    __slots__ = ()
    digest = b"\xff" * (DIGEST_SIZE + 1)  # above every contribution digest in signatures

    def __repr__(self) -> str:
        return "SKIP"

    def __reduce__(self) -> str:
        return "SKIP"


SKIP = _Skip()
"""The Skip written into a slot nobody waits for any longer (skip wins over a contribution)."""

Slot = Contribution | _Skip


def join_slot(a: Slot | None, b: Slot | None) -> Slot | None:
    """⊥ < Contribution < Skip; two contributions resolve to the larger digest."""
    if a is None:
        return b
    if b is None:
        return a
    return _join_filled(a, b)


def _join_filled(a: Slot, b: Slot) -> Slot:
    # The Skip digest is above every contribution digest, so one comparison is the order.
    return a if a.digest >= b.digest else b


@dataclass(frozen=True)
class FoldState:
    """The outer optimizer's state after folding every round up to ``round``.

    ``weights`` and ``momentum`` are float64 and read-only; ``digest`` identifies all three
    (a worker names it as the ``base`` of its next contribution).
    """

    round: int
    weights: NDArray[np.float64]
    momentum: NDArray[np.float64]
    digest: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "digest",
            _digest(
                self.round.to_bytes(8, "little"),
                self.weights.astype("<f8").tobytes(),
                self.momentum.astype("<f8").tobytes(),
            ),
        )

    def model(self) -> NDArray[np.float32]:
        """The weights as the model uses them: one cast from the float64 fold."""
        return self.weights.astype(np.float32)


@dataclass(frozen=True)
class Checkpoint:
    """A compacted fold: the rounds up to ``state.round`` folded, their slots forgotten."""

    state: FoldState
    sizes: tuple[int, ...]

    @property
    def round(self) -> int:
        return self.state.round

    def order(self) -> tuple[int, bytes, tuple[int, ...]]:
        # Equal rounds carry equal digests unless a writer misbehaved; the digest then
        # picks one everywhere (and the sizes keep the order total).
        return (self.state.round, self.state.digest, self.sizes)


class Model(NamedTuple):
    """What `Weights.value` reads: the weights after the last decided round."""

    round: int
    weights: NDArray[np.float32]
    digest: bytes


SettingKey = tuple[str, int, int, int]  # (key, from round, hlc, writer)


class Weights(Crdt):
    """Model weights trained by many workers: a lattice of per-round contributions.

    See the module docstring for the state and the read.
    """

    __slots__ = ("_memo", "checkpoint", "members", "settings", "slots")
    type_name = "Weights"

    def __init__(
        self,
        members: dict[int, tuple[int, int]] | None = None,
        slots: dict[tuple[int, int], Slot] | None = None,
        checkpoint: Checkpoint | None = None,
        settings: dict[SettingKey, float] | None = None,
    ) -> None:
        self.members: dict[int, tuple[int, int]] = members if members is not None else {}
        self.slots: dict[tuple[int, int], Slot] = slots if slots is not None else {}
        self.checkpoint = checkpoint
        self.settings: dict[SettingKey, float] = settings if settings is not None else {}
        # Folds keyed by a digest of everything they depend on (the checkpoint, then each
        # round's expected slots and settings); copies share it: its entries are immutable
        # and content-keyed, so a fill by one copy is right for every copy.
        self._memo: dict[bytes, FoldState] = {}
        if checkpoint is not None:
            self.slots = {k: v for k, v in self.slots.items() if k[0] > checkpoint.round}

    @classmethod
    def initial(cls) -> Self:
        return cls()

    # -- mutators -------------------------------------------------------------------------
    def initialize(
        self, weights: NDArray[Any], sizes: Sequence[int] | None = None, *, by: Actor
    ) -> Self:
        """Delta setting the starting weights (round 0), with the tensor sizes.

        Two concurrent initializations resolve to one everywhere (the larger digest):
        workers that start from one seed agree, others train from the winner.
        """
        del by
        w = _frozen(np.asarray(weights))
        sz = tuple(int(n) for n in (sizes if sizes is not None else (len(w),)))
        if any(n < 0 for n in sz) or sum(sz) != len(w) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite and the sizes must add up to their count")
        ck = Checkpoint(FoldState(0, w, _frozen(np.zeros(len(w)))), sz)
        return type(self)(checkpoint=ck)

    def enroll(self, at_round: int, *, by: Actor) -> Self:
        """Delta announcing that the writer contributes from round ``at_round`` on.

        Announce a round ahead of every round anyone may have decided (`Weights.join_round`),
        else a replica that decided it without you would see it change.
        """
        _check_round(at_round, "at_round", low=1)
        return self._with_members({by.replica: (at_round, NEVER)})

    def leave(self, at_round: int, *, by: Actor, member: int | None = None) -> Self:
        """Delta tombstoning a worker (the writer, or ``member``) from round ``at_round`` on.

        Its slots from ``at_round`` on are no longer waited for nor folded. Leave from a
        round you have not contributed to; others leave a member they timed out.
        """
        _check_round(at_round, "at_round", low=1)
        rid = by.replica if member is None else member
        return self._with_members({rid: (NEVER, at_round)})

    def contribute(
        self,
        round: int,
        payload: bytes,
        *,
        n_samples: int,
        codec: CodecName | Codec,
        base: bytes,
        by: Actor,
    ) -> Self:
        """Delta publishing the writer's pseudo-gradient for ``round``.

        Args:
            round: the round it is for (it was trained from the fold of ``round - 1``).
            payload: `quantize` of ``start - local`` weights.
            n_samples: samples it was trained on.
            codec: how ``payload`` is laid out.
            base: ``fold(round - 1).digest``, the weights it started from.
            by: the worker (only a worker writes its own slot).
        """
        _check_round(round, "round", low=1)
        c = Contribution(n_samples, codec_of(codec), bytes(base), bytes(payload))
        return self._with_members({}, slots={(round, by.replica): c})

    def skip(self, round: int, member: int, *, by: Actor) -> Self:
        """Delta giving up on ``member``'s slot in ``round`` (any replica, after a timeout)."""
        del by
        _check_round(round, "round", low=1)
        return self._with_members({}, slots={(round, member): SKIP})

    def time_out(self, round: int, *, by: Actor) -> Self:
        """Delta giving up on every slot of ``round`` still empty (the straggler rule).

        Each missing worker's slot becomes Skip; a worker whose slot in the round before is
        a Skip too is tombstoned from the next round on: it has crashed, or is too slow to
        wait for, and waiting a timeout per round for it would stall everyone.
        """
        delta = type(self)()
        for member in self.missing(round):
            delta.join_inplace(self.skip(round, member, by=by))
            gone = self.slots.get((round - 1, member)) is SKIP
            if gone and self.members[member][1] > round + 1:
                delta.join_inplace(self.leave(round + 1, by=by, member=member))
        return delta

    def configure(self, key: str, value: float, from_round: int, *, by: Actor) -> Self:
        """Delta scheduling an outer-step setting (``outer_lr``, ``outer_momentum``) from a round.

        Schedule it ahead of the decided round (as for `enroll`), so that every replica
        folds each round with the same values.
        """
        if type(key) is not str or not key:
            raise ValueError("a setting key is a non-empty str")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"setting {key} must be finite")
        _check_round(from_round, "from_round", low=1)
        for k in self.settings:
            by.clock.observe(k[2])
        return type(self)(settings={(key, from_round, int(by.clock.now()), by.replica): v})

    def _with_members(
        self,
        members: dict[int, tuple[int, int]],
        slots: dict[tuple[int, int], Slot] | None = None,
    ) -> Self:
        """A delta that also carries every membership its writer knows.

        Whether a round is decided depends on who is expected in it. A replica that received
        a slot or a join but not the joins its writer had seen could decide a round too
        early; carrying the (small) member table in every delta makes that impossible.
        """
        delta = type(self)(dict(self.members), slots)
        delta.join_inplace(type(self)(members))
        return delta

    def compact(self, through: int, *, by: Actor) -> Self:
        """Delta folding every round up to ``through`` (decided) into the checkpoint.

        The read does not change; the slots of those rounds are forgotten. Compact only
        rounds that are causally stable (`Weights.stable_round`): a Skip that arrives for a
        compacted round is dropped here while a replica that had not compacted would fold it.
        """
        del by
        if self.checkpoint is None or through <= self.checkpoint.round:
            return type(self)()
        if through > self.decided_round():
            raise ValueError(f"round {through} is not decided yet")
        return type(self)(checkpoint=Checkpoint(self.fold(through), self.checkpoint.sizes))

    # -- the lattice ----------------------------------------------------------------------
    def join_inplace(self, other: Self) -> None:
        members = self.members
        for rid, (j, left) in other.members.items():
            mine = members.get(rid)
            members[rid] = (j, left) if mine is None else (min(mine[0], j), min(mine[1], left))
        ck = self.checkpoint
        if other.checkpoint is not None and (ck is None or other.checkpoint.order() > ck.order()):
            ck = self.checkpoint = other.checkpoint
        floor = ck.round if ck is not None else -1
        slots = self.slots
        for key, slot in other.slots.items():
            if key[0] > floor:
                mine_s = slots.get(key)
                slots[key] = slot if mine_s is None else _join_filled(mine_s, slot)
        if ck is not None and any(k[0] <= floor for k in slots):
            self.slots = {k: v for k, v in slots.items() if k[0] > floor}
        for skey, v in other.settings.items():
            mine_v = self.settings.get(skey)
            self.settings[skey] = v if mine_v is None else max(mine_v, v)

    def copy(self) -> Self:
        out = type(self)(dict(self.members), dict(self.slots), self.checkpoint, dict(self.settings))
        out._memo = self._memo
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Weights):
            return NotImplemented
        a, b = self.checkpoint, other.checkpoint
        same_ck = (a is None and b is None) or (
            a is not None and b is not None and a.order() == b.order()
        )
        return (
            same_ck
            and self.members == other.members
            and self.settings == other.settings
            and self.slots.keys() == other.slots.keys()
            and all(s.digest == other.slots[k].digest for k, s in self.slots.items())
        )

    def __repr__(self) -> str:
        c = "-" if self.checkpoint is None else self.checkpoint.round
        return (
            f"Weights({len(self.members)} members, {len(self.slots)} slots, checkpoint {c}, "
            f"decided {self.decided_round()})"
        )

    # -- reading --------------------------------------------------------------------------
    @property
    def sizes(self) -> tuple[int, ...]:
        """The parameter count of each tensor (empty before `initialize`)."""
        return self.checkpoint.sizes if self.checkpoint is not None else ()

    def expected(self, round: int) -> list[int]:
        """The workers whose slots round ``round`` waits for, in sorted order."""
        return sorted(rid for rid, (j, left) in self.members.items() if j <= round < left)

    def missing(self, round: int) -> list[int]:
        """Expected workers whose slot in ``round`` is still empty."""
        return [rid for rid in self.expected(round) if (round, rid) not in self.slots]

    def is_decided(self, round: int) -> bool:
        """Whether every expected slot of ``round`` is filled (monotone in the state)."""
        if self.checkpoint is None:
            return False
        return round <= self.checkpoint.round or not self.missing(round)

    def last_round(self) -> int:
        """The highest round anything names: a slot, a join or the checkpoint."""
        top = self.checkpoint.round if self.checkpoint is not None else 0
        if self.slots:
            top = max(top, *(r for r, _ in self.slots))
        for j, _ in self.members.values():
            top = max(top, j if j != NEVER else 0)
        return top

    def decided_round(self) -> int:
        """D: the last round such that every round up to it is decided (-1 before `initialize`).

        Rounds past every slot, join and leave the state names are not decided, else D
        would be unbounded whenever no member is expected.
        """
        if self.checkpoint is None:
            return -1
        r = self.checkpoint.round
        top = self.last_round()
        while r < top and not self.missing(r + 1):
            r += 1
        return r

    def join_round(self, lag: int = 2) -> int:
        """The round a new worker should announce: ``lag`` rounds past everything named."""
        return max(self.last_round(), self.decided_round()) + lag

    def setting(self, key: str, round: int) -> float:
        """The value of ``key`` in effect at ``round`` (newest scheduled at or before it)."""
        best: tuple[int, int, int, float] | None = None
        for (k, at, hlc, rid), v in self.settings.items():
            if k == key and at <= round:
                cand = (at, hlc, rid, v)
                if best is None or cand > best:
                    best = cand
        if best is not None:
            return best[3]
        return DEFAULTS.get(key, math.nan)

    def fold(self, through: int | None = None) -> FoldState:
        """The outer optimizer's state after every round up to ``through`` (default: D).

        Raises:
            ValueError: before `initialize`, or if ``through`` is not decided.
        """
        ck = self.checkpoint
        if ck is None:
            raise ValueError("no weights yet: nobody has initialized them")
        d = self.decided_round()
        through = d if through is None else through
        if not ck.round <= through <= d:
            raise ValueError(f"round {through} is not a decided round after the checkpoint")
        state = ck.state
        chain = _digest(ck.state.digest, repr(ck.sizes).encode())
        memo = self._memo
        for r in range(ck.round + 1, through + 1):
            chain = _digest(chain, self._signature(r))
            hit = memo.get(chain)
            if hit is not None:
                state = hit
                continue
            state = self._step(state, r, ck.sizes)
            memo[chain] = state
        # Keep a few chains per round (copies that diverged share the memo); drop the oldest.
        while len(memo) > 4 * (through - ck.round) + 16:
            del memo[next(iter(memo))]
        return state

    def value(self) -> Model:
        """The model after the last decided round (empty weights before `initialize`)."""
        if self.checkpoint is None:
            return Model(-1, np.zeros(0, dtype=np.float32), b"")
        state = self.fold()
        return Model(state.round, state.model(), state.digest)

    def stable_round(self) -> int:
        """The last round no honest replica can still see change: safe to `compact`.

        Round r is stable once every worker expected in round r+1 has contributed to it
        *from this replica's fold of r* (its ``base``): each of them had seen round r
        exactly as this replica does, and a worker waits for r before writing r+1. This
        holds if only workers expected in round r+1 skip slots of round r (the worker
        loop's rule): a Skip from anyone else could still arrive and change round r.
        """
        if self.checkpoint is None:
            return -1
        stable = self.checkpoint.round
        d = self.decided_round()
        for r in range(stable, d):
            base = self.fold(r).digest
            nxt = self.expected(r + 1)
            if not nxt:
                break
            for rid in nxt:
                slot = self.slots.get((r + 1, rid))
                if not isinstance(slot, Contribution) or slot.base != base:
                    return stable
            stable = r
        return stable

    # -- the fold -------------------------------------------------------------------------
    def _signature(self, r: int) -> bytes:
        """Everything round ``r``'s step depends on besides the state before it."""
        out = bytearray()
        for rid in self.expected(r):
            slot = self.slots.get((r, rid))
            out += rid.to_bytes(8, "little")
            out += slot.digest if slot is not None else b"\0"
        lr, mu = self.setting("outer_lr", r), self.setting("outer_momentum", r)
        out += np.array([lr, mu], dtype="<f8").tobytes()
        return bytes(out)

    def _step(self, state: FoldState, r: int, sizes: tuple[int, ...]) -> FoldState:
        """One outer step: mean of the round's valid contributions, then Nesterov."""
        total = 0
        acc: NDArray[np.float64] | None = None
        for rid in self.expected(r):  # sorted: the order of the sum is part of the result
            slot = self.slots.get((r, rid))
            if not isinstance(slot, Contribution) or slot.base != state.digest:
                continue
            x = dequantize(slot.payload, sizes, slot.codec)
            if x is None:
                continue
            acc = slot.n_samples * x if acc is None else acc + slot.n_samples * x
            total += slot.n_samples
        if acc is None:
            # Nobody's work counts this round: the weights stay, the round still passes.
            return FoldState(r, state.weights, state.momentum)
        g = acc / float(total)
        lr, mu = self.setting("outer_lr", r), self.setting("outer_momentum", r)
        m = mu * state.momentum + g
        w = state.weights - lr * (g + mu * m)
        return FoldState(r, _frozen(w), _frozen(m))

    # -- for codecs and tests -------------------------------------------------------------
    def summary(self) -> tuple[Any, ...]:
        """Plain, ``==``-comparable Python describing the whole state (no arrays)."""
        ck = self.checkpoint
        return (
            None if ck is None else (ck.round, ck.state.digest, ck.sizes),
            tuple(sorted(self.members.items())),
            tuple(sorted((k, s.digest) for k, s in self.slots.items())),
            tuple(sorted(self.settings.items())),
        )


def _check_round(r: int, what: str, *, low: int) -> None:
    if type(r) is not int or not low <= r <= MAX_ROUND:
        raise ValueError(f"{what} must be an int in [{low}, {MAX_ROUND}], not {r!r}")


def flatten(arrays: Iterable[NDArray[Any]]) -> tuple[NDArray[np.float64], tuple[int, ...]]:
    """Tensors as one float64 vector and their sizes (the layout `Weights` folds in)."""
    parts = [np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    sizes = tuple(len(p) for p in parts)
    return (np.concatenate(parts) if parts else np.zeros(0)), sizes
