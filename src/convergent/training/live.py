"""`attach`: a live binding between a `Run` and the user's own PyTorch loop.

    live = convergent.training.attach(run, model, optimizer)
    for x, y in live.batches():
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(); loss.backward(); live.clip_gradients(); optimizer.step()
        live.step(loss=loss.item())

Edits apply at step boundaries, never mid-step: `batches` compares the revisions of the
config, its rules and the control (four ints, O(1)) before each batch and only when they
moved applies what changed: lr, momentum, betas and weight decay go into
``optimizer.param_groups``, the batch size into the sampler, the clipping norm into
`clip_gradients`, any other key to the callback registered with `on_config`. Each applied
change is recorded with the step it took effect at (``run.config.record_applied``), so the
history says "lr 0.1 -> 0.02 by alice, in effect at step 1,200". A merged value that breaks
the schema is ignored (the last valid one stays) and reported in `Live.problems`.

Metrics logged by `Live.step` wait in a buffer and are committed as one op per
``flush_every`` seconds by a background thread (a commit costs a few hundred microseconds, a
whole MLP step about as much): the step itself only appends to a queue. `Live.flush`
commits at once; pausing, stopping, a checkpoint and `Live.detach` flush too.

Control: ``paused`` blocks `batches` until someone resumes (the model and optimizer keep
their state), ``stopped`` ends it, and a "checkpoint" command saves the model's and the
optimizer's state to the run's checkpoints and marks the command done.
"""

from __future__ import annotations

import dataclasses
import io
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convergent.crdt.replica import Subscription
from convergent.crdt.values import Value
from convergent.errors import ConvergentError
from convergent.run import Choice, Float, Int, Param, Part, Run, RunChange

# Keys the live binding understands, with the rules it declares when a run lacks them.
KNOWN: dict[str, Param] = {
    "lr": Float(0.01, min=0.0, max=10.0, help="learning rate of every parameter group"),
    "momentum": Float(0.0, min=0.0, max=1.0, help="SGD momentum"),
    "weight_decay": Float(0.0, min=0.0, max=1.0, help="L2 penalty"),
    "batch_size": Int(32, min=1, max=65536, help="samples per step"),
    "grad_clip": Float(0.0, min=0.0, help="max gradient norm (0: no clipping)"),
    "schedule": Choice("constant", ["constant", "cosine"], help="lr schedule over samples"),
    "warmup_samples": Int(0, min=0, help="linear lr warm-up, in samples seen"),
    "total_samples": Int(1_000_000, min=1, help="samples over which the cosine decays"),
}
_GROUP_KEYS = ("lr", "momentum", "weight_decay")
_WATCHED = (Part.SCHEMA, Part.CONFIG, Part.CONTROL, Part.COMMANDS)


@dataclass
class Applied:
    """A config change the trainer applied: which key, old -> new, at which step."""

    key: str
    old: Value
    new: Value
    step: int


@dataclass(eq=False)
class Live:
    """The binding; build it with `attach`."""

    run: Run
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    split: str = "train"
    seed: int = 0
    log_every: int = 1
    flush_every: float = 0.2  # seconds a logged point may wait in the buffer
    step_count: int = 0
    samples_seen: int = 0
    batch_size: int = 32
    grad_clip: float = 0.0
    stopped: bool = False
    base_lr: float | None = None
    paused: bool = False  # true while `batches` waits for a resume
    problems: list[str] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    _in_effect: dict[str, Value] = field(default_factory=dict)
    _callbacks: dict[str, list[Callable[[Value], None]]] = field(default_factory=dict)
    _revision: tuple[int, ...] = ()
    _reported: set[tuple[str, str]] = field(default_factory=set)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _handle: Subscription | None = None
    _rng: np.random.Generator | None = None
    _last_batch: int = 0
    _state: str = "running"
    _pool_cache: tuple[Any, Any, Any, Any] | None = None
    _points: deque[tuple[int, int, dict[str, float]]] = field(default_factory=deque)
    _flusher: threading.Thread | None = None
    _detached: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.flush_every > 0:
            raise ValueError(f"flush_every is a number of seconds > 0, not {self.flush_every!r}")
        self._rng = np.random.default_rng(self.seed)
        self._handle = self.run.on_change(self._wake)
        self._boundary()

    def _wake(self, change: RunChange) -> None:
        # Only what a paused or data-starved loop waits for: not the trainer's own metrics.
        if change.parts - {"metrics", "metric_names"}:
            with self._changed:
                self._changed.notify_all()

    # -- config --------------------------------------------------------------------------
    def on_config(self, key: str, callback: Callable[[Value], None]) -> Subscription:
        """Call ``callback(value)`` at the step boundary where ``key`` changes (and now)."""
        self._callbacks.setdefault(key, []).append(callback)
        if key in self._in_effect:
            callback(self._in_effect[key])
        return Subscription(lambda: self._callbacks.get(key, []).remove(callback))

    @property
    def _scheduled(self) -> bool:
        warm = self._in_effect.get("warmup_samples", 0)
        return self._in_effect.get("schedule", "constant") != "constant" or (
            isinstance(warm, int) and warm > 0
        )

    def _apply_config(self) -> None:
        config = self.run.config
        bad = {key: why for key, _, why in config.invalid()}
        for key in config:
            value = config[key]
            if key in bad:
                if (key, bad[key]) not in self._reported:
                    self._reported.add((key, bad[key]))
                    kept = self._in_effect.get(key, config.schema[key].default)
                    self.problems.append(f"step {self.step_count}: {bad[key]}; keeping {kept!r}")
                continue
            old = self._in_effect.get(key)
            if key in self._in_effect and old == value and type(old) is type(value):
                continue
            first = key not in self._in_effect
            self._in_effect[key] = value
            self._set(key, value)
            if not first:
                self.applied.append(Applied(key, old, value, self.step_count))
                if config.written(key):
                    config.record_applied(key, self.step_count)

    def _set(self, key: str, value: Value) -> None:
        if key == "lr" and isinstance(value, int | float):
            self.base_lr = float(value)
            self._schedule_lr()
        elif key in ("schedule", "warmup_samples", "total_samples"):
            self._schedule_lr()
        elif key in _GROUP_KEYS and isinstance(value, int | float):
            for group in self.optimizer.param_groups:
                if key in group:
                    group[key] = float(value)
        elif key == "betas" and isinstance(value, tuple) and len(value) == 2:
            for group in self.optimizer.param_groups:
                if "betas" in group:
                    group["betas"] = (float(value[0]), float(value[1]))  # type: ignore[arg-type]
        elif key == "batch_size" and isinstance(value, int):
            self.batch_size = value
        elif key == "grad_clip" and isinstance(value, int | float):
            self.grad_clip = float(value)
        for callback in list(self._callbacks.get(key, ())):
            callback(value)

    # -- control ---------------------------------------------------------------------------
    def _boundary(self) -> None:
        """Apply what changed since the last step; honour pause, stop and commands."""
        while True:
            rev = self._watched()
            if rev != self._revision:  # four int compares when nothing changed
                self._revision = rev
                self._apply_config()
                self._commands()
                self._state = self.run.control.state
            state = self._state
            if state == "stopped":
                self.stopped = True
                self.flush()
                return
            if state != "paused":
                self.paused = False
                return
            if not self.paused:
                self.flush()  # whoever looks at a paused run sees every step it made
            with self._changed:  # paused: wait for the next change, then look again
                self.paused = True
                self._changed.notify_all()
                self._changed.wait_for(lambda: self._watched() != self._revision, 1.0)

    def _watched(self) -> tuple[int, ...]:
        """Revisions that move when the config, its rules or the control change (metric
        points logged by this trainer do not move them)."""
        run = self.run
        return tuple(run._part_revision(p) for p in _WATCHED)

    def _wait_for_change(self, revision: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self.run.revision != revision, 1.0)

    def _commands(self) -> None:
        for command in self.run.control.pending():
            if command.name == "checkpoint":
                self.checkpoint()
                self.run.control.done(command.id)

    def checkpoint(self, name: str = "") -> str:
        """Save the model's and optimizer's state to the run's checkpoints."""
        self.flush()  # the checkpoint's metrics are the last ones logged
        buf = io.BytesIO()
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step_count,
                "samples_seen": self.samples_seen,
            },
            buf,
        )
        metrics = {}
        for m in self.run.metric_names():
            last = self.run.metrics(m).last()
            if last is not None and math.isfinite(last):
                metrics[m] = last
        return self.run.checkpoints.add(
            buf.getvalue(), step=self.step_count, metrics=metrics, name=name
        )

    def resume_from(self, checkpoint_id: str | None = None) -> None:
        """Load a checkpoint (the latest if none given) into the model and optimizer."""
        ckpt = (
            self.run.checkpoints[checkpoint_id]
            if checkpoint_id is not None
            else self.run.checkpoints.latest()
        )
        if ckpt is None:
            return
        state = torch.load(io.BytesIO(self.run.checkpoints.load(ckpt.id)), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state["step"])
        self.samples_seen = int(state["samples_seen"])
        self._in_effect.clear()
        self._revision = ()
        self._boundary()

    # -- data ------------------------------------------------------------------------------
    def _pool(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The split's ids, labels and stacked payloads, rebuilt only when the dataset view
        changes (payloads are content-addressed: stacking reuses the decoded arrays)."""
        view = self.run.dataset.view()
        if self._pool_cache is None or self._pool_cache[0] is not view:
            mask = view.splits == self.split
            ids, labels = view.ids[mask], view.labels[mask]
            if labels.dtype == object:  # unlabeled samples are not trained on
                keep = np.array([isinstance(v, int) for v in labels.tolist()], dtype=np.bool_)
                ids, labels = ids[keep], labels[keep].astype(np.int64)
            x = (
                np.stack([self.run.dataset.payload(int(i)) for i in ids.tolist()])
                if len(ids)
                else np.empty((0,))
            )
            self._pool_cache = (view, ids, labels, x)
        return self._pool_cache[1], self._pool_cache[2], self._pool_cache[3]

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(x, y)`` from the run's current dataset, until the run is stopped.

        Added samples enter the next batches; removed samples are never drawn again; a
        relabel applies the next time the sample is drawn (labels are read at draw time).
        """
        while True:
            self._boundary()
            if self.stopped:
                return
            ids, labels, pool = self._pool()
            n = min(self.batch_size, len(ids))
            if not n:
                self._wait_for_change(self.run.revision)  # no data yet: wait for some
                continue
            assert self._rng is not None
            pick = self._rng.choice(len(ids), size=n, replace=False)
            self._last_batch = n
            yield (
                torch.as_tensor(pool[pick], dtype=torch.float32),
                torch.as_tensor(labels[pick]),
            )

    def clip_gradients(self) -> float | None:
        """Clip the model's gradient norm to the run's ``grad_clip`` (0: off)."""
        if self.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.grad is not None]
            return float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        return None

    def lr_factor(self) -> float:
        """The schedule's factor at ``samples_seen``: a function of a replicated, monotone
        quantity (not a local step counter), so an edit of the base lr rescales the
        schedule rather than restarting it, and a resumed trainer continues it."""
        cfg = self._in_effect
        seen = self.samples_seen
        warm = cfg.get("warmup_samples", 0)
        if isinstance(warm, int) and warm > 0 and seen < warm:
            return (seen + 1) / warm
        if cfg.get("schedule") == "cosine":
            total = cfg.get("total_samples", 1)
            assert isinstance(total, int)
            t = min(max(seen - (warm if isinstance(warm, int) else 0), 0) / total, 1.0)
            return 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    def _schedule_lr(self) -> None:
        if self.base_lr is None:
            return
        lr = self.base_lr * self.lr_factor()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, **metrics: float) -> None:
        """Close a step: count it and its samples (advancing the lr schedule), and log
        ``metrics`` every ``log_every`` steps."""
        self.step_count += 1
        self.samples_seen += self._last_batch
        if self._scheduled:
            self._schedule_lr()
        if metrics and self.step_count % self.log_every == 0:
            point = {**metrics, "samples_seen": float(self.samples_seen)}
            self._points.append((self.step_count, time.time_ns() // 1_000_000, point))
            if self._flusher is None:
                self._start_flusher()

    def flush(self) -> None:
        """Commit the buffered metric points now, as one op."""
        points = self._points
        n = len(points)  # deque appends and poplefts are atomic: the step thread goes on
        if not n:
            return
        rows = [points.popleft() for _ in range(n)]
        self.run.log_many([r[0] for r in rows], [r[2] for r in rows], times=[r[1] for r in rows])

    def _start_flusher(self) -> None:
        def loop() -> None:
            while not self._detached.wait(self.flush_every) and not self.run._closed:
                try:
                    self.flush()
                except ConvergentError as err:  # a closed run or a failed commit
                    self.problems.append(f"metrics not stored: {err}")
                    return

        self._flusher = threading.Thread(target=loop, name="convergent-metrics", daemon=True)
        self._flusher.start()

    def in_effect(self) -> Mapping[str, Value]:
        """The config values the trainer applies now."""
        return dict(self._in_effect)

    def detach(self) -> None:
        """Flush the buffered metrics and stop listening to the run's changes."""
        self._detached.set()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class LiveBatches(torch.utils.data.IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """`Live.batches` as a torch ``IterableDataset`` of whole batches (use
    ``DataLoader(LiveBatches(live), batch_size=None)``, in the main process: the run is not
    shared with worker processes)."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.live.batches()


def attach(
    run: Run,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    split: str = "train",
    seed: int = 0,
    log_every: int = 1,
    flush_every: float = 0.2,
    declare: bool = True,
) -> Live:
    """Bind ``run`` to a model and optimizer; see the module docstring for the loop.

    Args:
        log_every: log the metrics given to `Live.step` every this many steps.
        flush_every: commit the logged points at least this often, in seconds.
        declare: declare the keys the binding understands (`KNOWN`: lr, momentum,
            weight_decay, batch_size, grad_clip, schedule, warmup_samples, total_samples) if
            the run lacks them, with the optimizer's current values as defaults (not through
            a hub token that may not write them: a worker's, a viewer's).
    """
    # A worker's token may not write the run's rules (the hub would refuse the op): it then
    # trains with the keys the run declares and its optimizer's own values for the rest.
    role = getattr(getattr(run, "status", None), "role", None)
    if declare and role in (None, "editor", "admin"):
        group = optimizer.param_groups[0]
        missing: dict[str, Param] = {}
        for key, param in KNOWN.items():
            if key in run.schema:
                continue
            default = group.get(key, param.default)
            if key in _GROUP_KEYS and key not in group:
                continue
            # The optimizer's own value (lr=0.05, momentum=0.9) is the run's default.
            if param.kind == "float" and isinstance(default, int | float):
                missing[key] = dataclasses.replace(param, default=float(default))
            else:
                missing[key] = param
        if missing:
            run.config.declare(missing)
    return Live(
        run,
        model,
        optimizer,
        split=split,
        seed=seed,
        log_every=log_every,
        flush_every=flush_every,
    )
