"""``run.weights``: the run's model, trained by many workers without a parameter server.

A thin view over the run's `Weights` part (DESIGN.md section 5): every edit is one op, which
travels through the hub like any other (a worker's role may write it); every read is a pure
function of the merged state, so every replica of the run reads bit-identical weights.

Contribution payloads live *inside* the part, not in blobs. The read must be a function of
the state alone: with a digest in the slot and the bytes in a blob, a round could be decided
(every slot filled) yet not readable (a blob still in flight), and decided rounds must be
readable by every replica that sees them decided. A payload is also short-lived (compaction
folds it into the checkpoint after a few rounds) and sent exactly once, in the op that
publishes it, so a content address would save nothing.

Example:
    >>> import numpy as np
    >>> from convergent.run import Run
    >>> run = Run()
    >>> run.weights.initialize(np.zeros(4))
    >>> first = run.weights.enroll(at_round=1)
    >>> base = run.weights.fold(0).digest
    >>> run.weights.contribute(1, np.full(4, 0.5), n_samples=32, base=base)
    >>> run.weights.decided_round(), run.weights.fold().weights.round(3).tolist()
    (1, [-0.665, -0.665, -0.665, -0.665])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convergent.crdt import Weights
from convergent.crdt.weights import (
    CodecName,
    Contribution,
    FoldState,
    Model,
    quantize,
)
from convergent.run.ops import Op, Part

if TYPE_CHECKING:
    from convergent.run.document import Run

JOIN_LAG = 2
"""Rounds ahead of everything a replica knows that a join or a setting is scheduled."""


def foreign_contribution(op: Op) -> str | None:
    """Why ``op`` may not be stored: it writes a contribution into another worker's slot.

    Only a worker writes its own contribution (anyone may write Skip), so a hub refuses an
    op whose contribution names any worker but the op's origin.
    """
    delta = op.deltas.get(Part.WEIGHTS)
    if not isinstance(delta, Weights):
        return None
    for (round, worker), slot in delta.slots.items():
        if isinstance(slot, Contribution) and worker != op.origin:
            return (
                f"replica {op.origin:016x} may not contribute for worker {worker:016x} "
                f"(round {round})"
            )
    return None


class RunWeights:
    """The run's shared model: enrollment, contributions, skips, settings and the read."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def _state(self) -> Weights:
        state: Weights = self._run._state(Part.WEIGHTS)
        return state

    def _edit(self, mutator: Any, *args: Any, **kwargs: Any) -> None:
        self._run._edit(Part.WEIGHTS, mutator, *args, **kwargs)

    # -- reading --------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        """Grows with every change to the weights part: an O(1) "anything new?"."""
        return self._run._part_revision(Part.WEIGHTS)

    def state(self) -> Weights:
        """A copy of the part's state, safe to read on another thread."""
        with self._run._lock:
            return self._state().copy()

    def decided_round(self) -> int:
        """The last round such that every round up to it is decided (-1: no weights yet)."""
        with self._run._lock:
            return self._state().decided_round()

    def is_decided(self, round: int) -> bool:
        """Whether every expected slot of ``round`` is filled (earlier rounds may not be)."""
        with self._run._lock:
            return self._state().is_decided(round)

    def expected(self, round: int) -> list[int]:
        """The workers (replica ids) round ``round`` waits for."""
        with self._run._lock:
            return self._state().expected(round)

    def missing(self, round: int) -> list[int]:
        """Expected workers whose slot in ``round`` is still empty."""
        with self._run._lock:
            return self._state().missing(round)

    def members(self) -> dict[int, tuple[int, int]]:
        """worker -> (join round, leave round); `convergent.crdt.weights.NEVER` if none."""
        with self._run._lock:
            return dict(self._state().members)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The parameter count of each tensor (empty before `initialize`)."""
        with self._run._lock:
            return self._state().sizes

    def fold(self, through: int | None = None) -> FoldState:
        """The outer optimizer's state after round ``through`` (default: the decided round)."""
        with self._run._lock:
            return self._state().fold(through)

    def model(self) -> Model:
        """The weights after the last decided round: ``(round, float32 weights, digest)``."""
        with self._run._lock:
            return self._state().value()

    def setting(self, key: str, round: int | None = None) -> float:
        """An outer-step setting in effect at ``round`` (default: the next undecided round)."""
        with self._run._lock:
            s = self._state()
            return s.setting(key, s.decided_round() + 1 if round is None else round)

    # -- editing --------------------------------------------------------------------------
    def initialize(self, weights: NDArray[Any], sizes: Sequence[int] | None = None) -> None:
        """Publish the starting weights (round 0) and the size of each tensor."""
        self._edit(Weights.initialize, np.asarray(weights, dtype=np.float64), sizes)

    def enroll(self, at_round: int | None = None) -> int:
        """Join the training from ``at_round`` (default: `JOIN_LAG` rounds ahead); returns it."""
        with self._run.transaction():
            if at_round is None:
                at_round = max(1, self._state().join_round(JOIN_LAG))
            self._edit(Weights.enroll, at_round)
        return at_round

    def leave(self, at_round: int | None = None, *, member: int | None = None) -> int:
        """Stop contributing from ``at_round`` (default: the first round not yet written)."""
        with self._run.transaction():
            s = self._state()
            rid = self._run.replica_id if member is None else member
            if at_round is None:
                mine = [r for r, w in s.slots if w == rid]
                at_round = max([s.decided_round() + 1, *(r + 1 for r in mine), 1])
            self._edit(Weights.leave, at_round, member=member)
        return at_round

    def contribute(
        self,
        round: int,
        pseudo_gradient: NDArray[Any] | bytes,
        *,
        n_samples: int,
        base: bytes,
        codec: CodecName = "fp16",
    ) -> None:
        """Publish this worker's pseudo-gradient (``start - local``) for ``round``.

        Args:
            round: the round trained (from the fold of ``round - 1``).
            pseudo_gradient: the float vector, quantized here, or a payload already quantized
                with `convergent.crdt.weights.quantize` (a worker keeping error feedback).
            n_samples: samples trained on.
            base: ``fold(round - 1).digest``.
            codec: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        """
        payload = (
            pseudo_gradient
            if isinstance(pseudo_gradient, bytes)
            else quantize(pseudo_gradient, self.sizes, codec)
        )
        self._edit(Weights.contribute, round, payload, n_samples=n_samples, codec=codec, base=base)

    def skip(self, round: int, member: int) -> None:
        """Give up waiting for ``member`` in ``round`` (after a timeout; skip wins)."""
        self._edit(Weights.skip, round, member)

    def time_out(self, round: int) -> list[int]:
        """Skip the workers still missing from ``round`` (see `Weights.time_out`); returns them."""
        with self._run.transaction():
            missing = self._state().missing(round)
            if missing:
                self._edit(Weights.time_out, round)
        return missing

    def configure(self, key: str, value: float, from_round: int | None = None) -> int:
        """Schedule an outer-step setting (default: `JOIN_LAG` rounds ahead); returns the round.

        Example: ``run.weights.configure("outer_lr", 1.0)`` with ``outer_momentum`` 0 makes
        the fold federated averaging.
        """
        with self._run.transaction():
            if from_round is None:
                from_round = max(1, self._state().decided_round() + JOIN_LAG)
            self._edit(Weights.configure, key, value, from_round)
        return from_round

    def compact(self) -> int:
        """Fold the causally stable rounds into the checkpoint, on this replica only.

        Compaction is a local inflation of the state: the read does not change and the
        rounds' ops stay in the log, so nothing needs sending. Returns the checkpoint round.
        """
        with self._run._lock:
            s = self._state()
            if s.checkpoint is None:
                return -1
            stable = s.stable_round()
            if stable > s.checkpoint.round:
                s.join_inplace(s.compact(stable, by=self._run._actor(Part.WEIGHTS)))
            return s.checkpoint.round

    def __repr__(self) -> str:
        with self._run._lock:
            return repr(self._state())
