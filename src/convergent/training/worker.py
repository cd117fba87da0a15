"""Decentralized training: a worker that trains one model with others, without a server.

Each worker holds a replica of the run. A round ``r`` goes like this (DESIGN.md section 5):

1. wait until round ``r - 1`` is decided (every expected worker's slot is filled); after
   ``skip_timeout`` seconds, write Skip into the slots still empty (and tombstone a worker
   that missed the round before too: it has crashed, or is too slow to wait for);
2. read the merged model (the fold of every decided round, bit-identical everywhere);
3. train ``inner_steps`` steps on this worker's shard of the live dataset, with the live
   config (``lr``, ``momentum``, ``batch_size`` where the run declares them);
4. publish the pseudo-gradient ``start - local``, quantized once here; what quantization
   lost is added to the next round's (error feedback, kept local).

With no timeout firing this is exactly synchronous DiLoCo: the whole trajectory is a function
of the seeds, whatever the order, duplication or delay of messages.

    with convergent.connect(url, token) as run:      # a `worker` token of the run
        model, optimizer = digits_mlp64()             # from convergent.training.tasks
        report = train_worker(run, model, optimizer, rounds=20, inner_steps=32)

`InnerLoop` and `ErrorFeedback` are the parts the in-process simulator
(`convergent.training.simulation`) shares with this loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TextIO

import numpy as np
import torch
from numpy.typing import NDArray

from convergent.crdt.weights import CodecName, dequantize, quantize
from convergent.run import Run, RunChange

Sharding = Literal["iid", "label"]


# -- the pieces a worker is made of ---------------------------------------------------------


def model_vector(model: torch.nn.Module) -> tuple[NDArray[np.float64], tuple[int, ...]]:
    """The model's parameters as one float64 vector, and the size of each tensor."""
    params = [p.detach().reshape(-1).to(torch.float64) for p in model.parameters()]
    sizes = tuple(int(p.numel()) for p in params)
    return torch.cat(params).numpy(), sizes


def load_vector(model: torch.nn.Module, vector: NDArray[np.floating]) -> None:
    """Copy a flat vector (float32, as the fold casts it once) into the model's parameters."""
    flat = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
    torch.nn.utils.vector_to_parameters(flat, model.parameters())


def shard(
    labels: NDArray[np.integer], index: int, count: int, how: Sharding, seed: int
) -> NDArray[np.int64]:
    """The positions of worker ``index`` of ``count``: a random cut, or sorted by label.

    ``"label"`` sorts the samples by label and cuts them into ``count`` contiguous pieces, so
    each worker sees only a few classes (the non-IID case).
    """
    n = len(labels)
    if how == "label":
        order = np.argsort(labels, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(n)
    return np.array_split(order, count)[index].astype(np.int64)


class InnerLoop:
    """H steps of the worker's own optimizer on its shard, from given starting weights.

    The inner optimizer's state (momentum) stays with the worker across rounds, as in DiLoCo.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self.use(x, y)

    def use(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Train on these samples from now on (a new shard after a join or a leave)."""
        self.x, self.y = x, y
        self._order: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._at = 0

    def batches(self) -> Iterator[NDArray[np.int64]]:
        """Row indices of the next batches: epochs of seeded permutations, endless."""
        while True:
            if self._at + self.batch_size > len(self._order):
                self._order = self._rng.permutation(len(self.x)).astype(np.int64)
                self._at = 0
            yield self._order[self._at : self._at + self.batch_size]
            self._at += self.batch_size

    def train(
        self, start: NDArray[np.floating], steps: int
    ) -> tuple[NDArray[np.float64], int, float]:
        """Train ``steps`` steps from ``start``; returns (local weights, samples, last loss)."""
        load_vector(self.model, start)
        self.model.train()
        batches = self.batches()
        loss = torch.zeros(())
        seen = 0
        for _ in range(steps):
            idx = torch.from_numpy(next(batches))
            loss = torch.nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx])
            self.optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            seen += len(idx)
        return model_vector(self.model)[0], seen, float(loss.item())


@dataclass
class ErrorFeedback:
    """Quantize a pseudo-gradient once, keeping what was lost for the next round.

    The residual is local: it is never part of the replicated state (the fold must not
    depend on anything a replica cannot see).
    """

    sizes: tuple[int, ...]
    codec: CodecName = "fp16"
    residual: NDArray[np.float64] | None = None

    def encode(self, pseudo_gradient: NDArray[np.float64]) -> bytes:
        target = pseudo_gradient if self.residual is None else pseudo_gradient + self.residual
        payload = quantize(target, self.sizes, self.codec)
        sent = dequantize(payload, self.sizes, self.codec)
        assert sent is not None  # quantize writes what dequantize reads
        self.residual = target - sent
        return payload


# -- the worker loop against a run ----------------------------------------------------------


@dataclass
class RoundReport:
    """What one round did on this worker."""

    round: int
    loss: float
    waited_s: float
    trained_s: float
    skipped: tuple[int, ...] = ()


@dataclass
class WorkerReport:
    """What a worker did: its rounds, the final model's round and digest, bytes it sent."""

    worker: int
    rounds: list[RoundReport] = field(default_factory=list)
    final_round: int = -1
    digest: bytes = b""
    bytes_sent: int = 0
    wall_s: float = 0.0  # from the start barrier to the final read
    left_early: bool = False


class _Changes:
    """Wakes a waiting worker on every change to the run (local or merged)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.event = threading.Event()
        self.handle = run.on_change(self._changed)

    def _changed(self, change: RunChange) -> None:
        # Called holding the run's lock: only set a flag. Taking another lock here while the
        # waiter holds it and asks for the run's lock (in the predicate) would deadlock.
        self.event.set()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Whether ``predicate`` held within ``timeout`` seconds (checked after each change)."""
        deadline = time.monotonic() + timeout
        while True:
            self.event.clear()  # before the check: a change after it sets the flag again
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.event.wait(left)


def _live_settings(run: Run, loop: InnerLoop) -> None:
    """Apply the run's requested lr, momentum and batch size, where the run declares them."""
    values = run.config.to_dict()
    for group in loop.optimizer.param_groups:
        for key in ("lr", "momentum"):
            v = values.get(key)
            if isinstance(v, float | int) and not isinstance(v, bool) and key in group:
                group[key] = float(v)
    b = values.get("batch_size")
    if isinstance(b, int) and not isinstance(b, bool) and b >= 1:
        loop.batch_size = b


def _dataset(run: Run, split: str) -> tuple[torch.Tensor, torch.Tensor, NDArray[np.int64]]:
    x, y = run.dataset.arrays(split)
    if not len(x):
        raise ValueError(f"the run has no {split!r} samples to train on")
    labels = np.asarray(y, dtype=np.int64)
    return torch.as_tensor(x, dtype=torch.float32), torch.from_numpy(labels), labels


def train_worker(
    run: Run,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    rounds: int,
    inner_steps: int = 32,
    batch_size: int = 16,
    codec: CodecName = "fp16",
    sharding: Sharding = "iid",
    split: str = "train",
    at_round: int | None = None,
    min_workers: int = 1,
    skip_timeout: float = 60.0,
    start_timeout: float = 120.0,
    seed: int = 0,
    out: TextIO | None = None,
) -> WorkerReport:
    """Train ``rounds`` rounds of decided-round DiLoCo as one worker of ``run``.

    Args:
        run: a replica of the run (``convergent.connect`` for one synced with a hub).
        model, optimizer: the inner model and optimizer (every worker starts from the
            run's weights; if the run has none yet, this worker's model initializes them).
        rounds: how many rounds this worker contributes to.
        inner_steps: H, optimizer steps per round.
        batch_size: per step (the run's ``batch_size`` config wins where declared).
        codec: ``"fp32"``, ``"fp16"`` or ``"int8"`` for the pseudo-gradient.
        sharding: this worker's part of the training split: ``"iid"`` (a seeded random cut)
            or ``"label"`` (sorted by label), by its place among the round's workers.
        split: the dataset split to train on.
        at_round: the round to join at (default: two rounds past anything this replica
            knows, so that no replica can have decided it without this worker).
        min_workers: wait until this many workers are enrolled in the first round (a start
            barrier for a group launched together).
        skip_timeout: seconds to wait for a round before skipping the workers still missing.
        start_timeout: seconds to wait for the start barrier.
        seed: the shard and batch-order seed.
        out: where to print one line per round (None: quiet).

    Returns:
        What the worker did; ``digest`` identifies the final model, equal on every replica.

    Example:
        >>> import numpy as np
        >>> from convergent.run import Run
        >>> from convergent.training.tasks import digits_mlp64
        >>> run = Run()                                   # or convergent.connect(url, token)
        >>> pixels = np.random.default_rng(0).integers(0, 17, (32, 8, 8), dtype=np.uint8)
        >>> _ = run.dataset.add_many(pixels, [0, 1] * 16, split="train")
        >>> model, optimizer = digits_mlp64()
        >>> report = train_worker(run, model, optimizer, rounds=2, inner_steps=4)
        >>> report.final_round, report.digest == run.weights.model().digest  # joined at 2
        (3, True)
    """
    if rounds < 1:
        raise ValueError("a worker trains at least one round")
    weights = run.weights
    changes = _Changes(run)
    report = WorkerReport(run.replica_id)
    before = _bytes_of(run)
    try:
        if weights.decided_round() < 0:
            vec, sizes = model_vector(model)
            weights.initialize(vec, sizes)
        first = weights.enroll(at_round)
        if not changes.wait(lambda: len(weights.expected(first)) >= min_workers, start_timeout):
            raise TimeoutError(f"fewer than {min_workers} workers enrolled for round {first}")
        started = time.monotonic()
        x, y, labels = _dataset(run, split)
        feedback = ErrorFeedback(weights.sizes, codec)
        loop: InnerLoop | None = None
        position: tuple[int, int] | None = None
        r = first
        for r in range(first, first + rounds):
            t0 = time.monotonic()
            skipped = _wait_decided(run, changes, r - 1, skip_timeout)
            waited = time.monotonic() - t0
            expected = weights.expected(r)
            if run.replica_id not in expected:
                report.left_early = True  # tombstoned by others (timed out): stop here
                break
            # The shard follows this worker's place among the round's workers: after a
            # join or a leave the data is cut again, so all of it keeps being used.
            here = (expected.index(run.replica_id), len(expected))
            if here != position:
                rows = shard(labels, here[0], here[1], sharding, seed)
                sub = torch.from_numpy(rows)
                if loop is None:
                    loop = InnerLoop(
                        model, optimizer, x[sub], y[sub], batch_size=batch_size, seed=seed + here[0]
                    )
                else:
                    loop.use(x[sub], y[sub])
                position = here
            assert loop is not None
            _live_settings(run, loop)
            start = weights.fold(r - 1)
            t1 = time.monotonic()
            local, n, loss = loop.train(start.model(), inner_steps)
            payload = feedback.encode(start.weights - local)
            weights.contribute(r, payload, n_samples=n, base=start.digest, codec=codec)
            weights.compact()
            report.rounds.append(RoundReport(r, loss, waited, time.monotonic() - t1, skipped))
            if out is not None:
                print(
                    f"round {r:>4}  loss {loss:.4f}  waited {waited:.2f}s  "
                    f"workers {len(expected)}" + (f"  skipped {len(skipped)}" if skipped else ""),
                    file=out,
                    flush=True,
                )
        else:
            r += 1
        weights.leave(r)  # a tombstone: nobody waits for this worker's later slots
        # The last round: wait for it, but never skip anyone in it. Only the workers that
        # go on to the next round may give up on a slot (see `Weights.stable_round`).
        changes.wait(lambda: weights.decided_round() >= r - 1, skip_timeout)
        final = weights.fold(min(r - 1, weights.decided_round()))
        load_vector(model, final.model())
        report.final_round, report.digest = final.round, final.digest
        report.wall_s = time.monotonic() - started
    finally:
        changes.handle.remove()
    report.bytes_sent = _bytes_of(run) - before
    return report


def _bytes_of(run: Run) -> int:
    """The size of every op this replica made: what it uploads (the hub fans out)."""
    return sum(len(s.data) for s in run._store.ops_of(run.replica_id, 0))


def _wait_decided(run: Run, changes: _Changes, round: int, timeout: float) -> tuple[int, ...]:
    """Wait until every round up to ``round`` is decided; after ``timeout`` s skip the slots
    still missing in each (a round before can be the one holding the fold back).

    Only a worker expected in round ``round + 1`` skips: it is about to build on ``round``,
    and `Weights.stable_round` counts on no one else giving up on a slot after that.
    """
    weights = run.weights
    if changes.wait(lambda: weights.decided_round() >= round, timeout):
        return ()
    if run.replica_id not in weights.expected(round + 1):
        return ()
    skipped: list[int] = []
    with run.transaction():
        for q in range(max(weights.decided_round(), 0) + 1, round + 1):
            skipped += weights.time_out(q)
    return tuple(skipped)
