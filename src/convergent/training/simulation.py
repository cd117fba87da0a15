"""K decentralized workers in one process, over a seeded network that delays, duplicates and
reorders every message: the harness the tests and the benchmark run.

Time is simulated: one inner step costs one unit (times a worker's slowness), a message
arrives after a random delay of up to ``max_delay`` rounds, and a copy of it arrives again
with probability ``duplicate``. Training is real (PyTorch, on scikit-learn's digits), and
every message is the encoded delta a worker's mutator returned, decoded by its receiver, so
the bytes counted are the bytes a real network would carry (all-to-all: each message to
every other worker).

Example:
    >>> outcome = simulate(Setup(workers=2, steps=64, inner_steps=32, seed=1))
    >>> outcome.identical, outcome.rounds
    (True, 2)
"""

from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convergent.codec import decode_as, encode
from convergent.crdt import Actor, ReplicaId, Weights
from convergent.crdt.weights import CodecName
from convergent.training.tasks import digits_mlp64
from convergent.training.worker import (
    ErrorFeedback,
    InnerLoop,
    Sharding,
    load_vector,
    model_vector,
    shard,
)


@dataclass(frozen=True)
class Digits:
    """scikit-learn's digits, split 75/25 stratified: raw pixels (0..16) and labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def load(cls, seed: int) -> Digits:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
        from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

        bunch = load_digits()
        x = bunch.images.reshape(len(bunch.images), 64).astype(np.float32)
        y = bunch.target.astype(np.int64)
        xa, xb, ya, yb = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
        t = torch.from_numpy
        return cls(t(xa), t(ya), t(xb), t(yb))

    def accuracy(self, model: torch.nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            pred = model(self.x_test).argmax(dim=1)
        return float((pred == self.y_test).float().mean())


@dataclass(frozen=True)
class Setup:
    """One simulated run: K workers, T inner steps each, H steps a round."""

    workers: int = 4
    steps: int = 600
    inner_steps: int = 32
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.9
    codec: CodecName = "fp16"
    sharding: Sharding = "iid"
    outer_lr: float = 0.7
    outer_momentum: float = 0.9
    max_delay: float = 0.2  # rounds
    duplicate: float = 0.2
    skip_timeout: float | None = None  # rounds; None: wait as long as it takes
    slowness: tuple[float, ...] = ()  # per worker, 1.0 when absent
    churn: bool = False  # the last worker leaves after R/3, a new one joins at R/2
    crash: bool = False  # the last worker stops without a word after R/3 (set skip_timeout)
    seed: int = 0  # data split, model, shards and batches
    network_seed: int | None = None  # delays and duplicates (default: ``seed``)

    reset_inner: bool = False  # start each round with fresh inner optimizer state

    @property
    def rounds(self) -> int:
        """Rounds each worker trains: at least ``steps`` inner steps in all."""
        return -(-self.steps // self.inner_steps)


@dataclass
class Outcome:
    """What a simulated run gave."""

    accuracy: float
    bytes_per_worker: float
    wall_s: float
    identical: bool
    rounds: int
    digest: bytes
    idle: float  # fraction of simulated time workers spent waiting
    skipped: int  # slots skipped after a timeout (by any replica, counted once)
    peak_slots: int
    params: int
    members: int  # workers that ever enrolled


@dataclass
class _Worker:
    index: int
    actor: Actor
    state: Weights
    model: torch.nn.Module
    loop: InnerLoop
    feedback: ErrorFeedback | None = None
    first: int = 1
    last: int = 0
    next_round: int = 1
    waiting_since: float | None = None
    done: bool = False
    active: bool = True  # still in the simulation (a joiner is inactive until it starts)
    idle: float = 0.0
    sent: int = 0
    position: tuple[int, int] = (-1, 0)
    pending: Any = None  # (payload, n, base) between the start and the end of a round


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    data: Any = field(compare=False)


class _Network:
    """Seeded delivery: every message to every other live replica, late, twice, in any order."""

    def __init__(self, setup: Setup, rng: random.Random) -> None:
        self.setup, self.rng = setup, rng
        self.events: list[_Event] = []
        self.seq = 0

    def at(self, t: float, kind: str, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, _Event(t, self.seq, kind, data))

    def send(self, now: float, sender: _Worker, to: list[_Worker], message: bytes) -> None:
        span = self.setup.max_delay * self.setup.inner_steps
        for w in to:
            if w is sender:
                continue
            sender.sent += len(message)
            self.at(now + self.rng.uniform(0, span), "deliver", (w, message))
            if self.rng.random() < self.setup.duplicate:
                self.at(now + self.rng.uniform(0, span), "deliver", (w, message))


def simulate(setup: Setup, data: Digits | None = None) -> Outcome:
    """Run decided-round DiLoCo with ``setup.workers`` in-process workers; see the module doc."""
    started = time.perf_counter()
    data = data if data is not None else Digits.load(setup.seed)
    rng = random.Random(setup.seed if setup.network_seed is None else setup.network_seed)
    net = _Network(setup, rng)
    labels = data.y_train.numpy()
    rounds = setup.rounds
    steps_per_round = setup.inner_steps

    def make(index: int) -> _Worker:
        torch.manual_seed(setup.seed)  # every worker builds the same initial model
        model, _ = digits_mlp64()
        opt = torch.optim.SGD(model.parameters(), lr=setup.lr, momentum=setup.momentum)
        loop = InnerLoop(
            model,
            opt,
            data.x_train,
            data.y_train,
            batch_size=setup.batch_size,
            seed=setup.seed * 1000 + index,
        )
        return _Worker(index, Actor(ReplicaId(index + 1)), Weights.initial(), model, loop)

    workers = [make(i) for i in range(setup.workers)]
    everyone = list(workers)

    def publish(now: float, w: _Worker, delta: Weights) -> None:
        w.state.join_inplace(delta)
        net.send(now, w, [v for v in everyone if v.active], encode(delta))

    # Round 0 and the first enrollments, known to all before anyone trains (the start).
    first = workers[0]
    vec, sizes = model_vector(first.model)
    setup_delta = first.state.initialize(vec, sizes, by=first.actor)
    for key, value in (("outer_lr", setup.outer_lr), ("outer_momentum", setup.outer_momentum)):
        setup_delta.join_inplace(setup_delta.configure(key, value, 1, by=first.actor))
    for w in workers:
        setup_delta.join_inplace(setup_delta.enroll(1, by=w.actor))
    for w in workers:
        w.state.join_inplace(setup_delta)
        w.feedback = ErrorFeedback(sizes, setup.codec)
        w.last = rounds
        w.waiting_since = 0.0
    leaver = workers[-1] if setup.churn else None
    if leaver is not None:
        leaver.last = max(1, rounds // 3)
    joiner: _Worker | None = None
    skipped: set[tuple[int, int]] = set()  # (round, worker) slots anyone skipped
    peak_slots = 0

    def slowness(w: _Worker) -> float:
        return setup.slowness[w.index] if w.index < len(setup.slowness) else 1.0

    def try_start(now: float, w: _Worker) -> None:
        """Start the next round if the one before is decided (the worker loop's step 1)."""
        nonlocal joiner
        r = w.next_round
        if w.done or w.waiting_since is None or w.state.decided_round() < r - 1:
            return
        expected = w.state.expected(r)
        if w.actor.replica not in expected:
            w.done = True  # tombstoned by the others
            return
        w.idle += now - w.waiting_since
        w.waiting_since = None
        here = (expected.index(w.actor.replica), len(expected))
        if here != w.position:
            rows = torch.from_numpy(shard(labels, here[0], here[1], setup.sharding, setup.seed))
            w.loop.use(data.x_train[rows], data.y_train[rows])
            w.position = here
        start = w.state.fold(r - 1)
        if setup.reset_inner:
            w.loop.optimizer.state.clear()
        local, n, _ = w.loop.train(start.model(), steps_per_round)
        assert w.feedback is not None
        w.pending = (w.feedback.encode(start.weights - local), n, start.digest)
        net.at(now + steps_per_round * slowness(w), "trained", w)
        if setup.churn and joiner is None and w.index == 0 and r >= rounds // 2:
            joiner = make(len(everyone))
            joiner.state = w.state.copy()  # a snapshot of worker 0 ...
            joiner.feedback = ErrorFeedback(sizes, setup.codec)
            everyone.append(joiner)
            # ... and another once everything in flight when it subscribed has landed.
            net.at(now + setup.max_delay * steps_per_round, "catch-up", joiner)

    def finish_round(now: float, w: _Worker) -> None:
        nonlocal peak_slots
        payload, n, base = w.pending
        r = w.next_round
        delta = w.state.contribute(
            r, payload, n_samples=n, codec=setup.codec, base=base, by=w.actor
        )
        if setup.crash and w is workers[-1] and r >= max(1, rounds // 3):
            publish(now, w, delta)  # its last message: the process dies right after
            w.done, w.active = True, False
            return
        if r >= w.last:
            delta.join_inplace(w.state.join(delta).leave(r + 1, by=w.actor))
            w.done = True
        publish(now, w, delta)
        stable = w.state.stable_round()
        assert w.state.checkpoint is not None
        if stable > w.state.checkpoint.round:
            w.state.join_inplace(w.state.compact(stable, by=w.actor))
        peak_slots = max(peak_slots, len(w.state.slots))
        w.next_round = r + 1
        w.waiting_since = now
        if setup.skip_timeout is not None and not w.done:
            net.at(now + setup.skip_timeout * steps_per_round, "timeout", (w, r))

    def timeout(now: float, w: _Worker, r: int) -> None:
        if w.done or w.next_round != r + 1 or w.state.decided_round() >= r:
            return
        if w.actor.replica not in w.state.expected(r + 1):
            return  # only a worker about to build on round r gives up on its slots
        delta = Weights.initial()
        for q in range(w.state.decided_round() + 1, r + 1):  # every round still open
            skipped.update((q, m) for m in w.state.missing(q))
            delta.join_inplace(w.state.time_out(q, by=w.actor))
        publish(now, w, delta)

    now = 0.0
    for w in workers:
        try_start(now, w)
    while net.events:
        ev = heapq.heappop(net.events)
        now = ev.at
        if ev.kind == "deliver":
            target, message = ev.data
            target.state.join_inplace(decode_as(message, Weights))
        elif ev.kind == "trained":
            finish_round(now, ev.data)
        elif ev.kind == "timeout":
            timeout(now, *ev.data)
        elif ev.kind == "catch-up":
            j: _Worker = ev.data
            j.state.join_inplace(workers[0].state)
            j.first = j.next_round = j.state.join_round(2)
            j.last = rounds
            publish(now, j, j.state.enroll(j.first, by=j.actor))
            j.waiting_since = now
        for w in everyone:
            if not w.done and w.waiting_since is not None:
                try_start(now, w)
    if not all(w.done for w in everyone):
        raise RuntimeError("the simulated run stalled: a round can never be decided")

    live = [w for w in everyone if w.active]  # a crashed worker's replica is gone
    digests = {w.state.value().digest for w in live}
    final = live[0].state
    model, _ = digits_mlp64()
    load_vector(model, final.value().weights)
    return Outcome(
        accuracy=data.accuracy(model),
        bytes_per_worker=float(np.mean([w.sent for w in workers])),
        wall_s=time.perf_counter() - started,
        identical=len(digests) == 1,
        rounds=final.decided_round(),
        digest=final.value().digest,
        idle=sum(w.idle for w in workers) / max(now * len(workers), 1e-9),
        skipped=len(skipped),
        peak_slots=peak_slots,
        params=len(vec),
        members=len(final.members),
    )


def synchronous(setup: Setup, data: Digits | None = None) -> tuple[float, float, float]:
    """The baseline: one process, each step a batch of ``batch_size`` from every worker's shard.

    Mathematically this is synchronous data-parallel training (DDP) over the same shards.
    Returns (test accuracy, bytes a ring all-reduce would send per worker, wall seconds).
    """
    started = time.perf_counter()
    data = data if data is not None else Digits.load(setup.seed)
    torch.manual_seed(setup.seed)
    model, _ = digits_mlp64()
    opt = torch.optim.SGD(model.parameters(), lr=setup.lr, momentum=setup.momentum)
    labels = data.y_train.numpy()
    k = setup.workers
    loops = []
    for i in range(k):
        rows = torch.from_numpy(shard(labels, i, k, setup.sharding, setup.seed))
        loops.append(
            InnerLoop(
                model,
                opt,
                data.x_train[rows],
                data.y_train[rows],
                batch_size=setup.batch_size,
                seed=setup.seed * 1000 + i,
            )
        )
    batches = [loop.batches() for loop in loops]
    model.train()
    for _ in range(setup.steps):
        xs, ys = [], []
        for loop, b in zip(loops, batches, strict=True):
            idx = torch.from_numpy(next(b))
            xs.append(loop.x[idx])
            ys.append(loop.y[idx])
        loss = torch.nn.functional.cross_entropy(model(torch.cat(xs)), torch.cat(ys))
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    params = sum(p.numel() for p in model.parameters())
    ring = 2 * (k - 1) / k * params * 4 * setup.steps
    return data.accuracy(model), ring, time.perf_counter() - started
