"""The live binding with real PyTorch on the CPU: edits from another replica reach the
optimizer at the next step boundary, the sampler follows the live dataset, control is
honoured, invalid merged values are ignored and reported, checkpoints resume."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import torch

from convergent.errors import SchemaError
from convergent.run import Float, Run
from convergent.training import attach

torch.manual_seed(0)


def sync(*runs: Run) -> None:
    for a in runs:
        for b in runs:
            if a is not b:
                b.merge_bytes(a.export_since(b.version))


def setup(n: int = 12) -> tuple[Run, Run, torch.nn.Module, torch.optim.Optimizer, list[int]]:
    """A trainer's replica and an editor's replica of one run with ``n`` 4-value samples
    (sample k is all k, so a row of a batch says which sample it is)."""
    trainer = Run(user="trainer")
    x = np.stack([np.full(4, k, dtype=np.float32) for k in range(n)])
    ids = trainer.dataset.add_many(x, labels=[k % 3 for k in range(n)])
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0)
    editor = Run(join=trainer.export_since(), user="alice")
    return trainer, editor, model, optimizer, ids


def train_step(live: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    loss = torch.nn.functional.cross_entropy(live.model(x), y)
    live.optimizer.zero_grad()
    loss.backward()
    live.clip_gradients()
    live.optimizer.step()
    live.step(loss=loss.item())
    return float(loss.item())


def test_an_lr_edit_from_another_replica_applies_at_the_next_step() -> None:
    trainer, editor, model, optimizer, _ = setup()
    live = attach(trainer, model, optimizer)
    assert trainer.config["lr"] == 0.1  # declared from the optimizer
    sync(trainer, editor)
    lrs = []
    for i, (x, y) in enumerate(live.batches()):
        lrs.append(optimizer.param_groups[0]["lr"])
        train_step(live, x, y)
        if i == 4:
            editor.config["lr"] = 0.02
            sync(trainer, editor)
        if i == 7:
            break
    assert lrs == [0.1] * 5 + [0.02] * 3  # never mid-step: from the next boundary on
    [entry] = [e for e in trainer.history("config", "lr") if e.user == "alice"]
    assert (entry.old, entry.new, entry.step) == (0.1, 0.02, 5)
    assert live.applied[-1].key == "lr" and live.applied[-1].step == 5
    live.flush()
    assert len(trainer.metrics("loss")) == 8


def test_the_sampler_follows_the_live_dataset() -> None:
    trainer, editor, model, optimizer, ids = setup()
    editor.config.declare({"batch_size": __import__("convergent").run.Int(4, min=1)})
    sync(trainer, editor)
    live = attach(trainer, model, optimizer, seed=1)
    editor.dataset.remove(ids[0])
    added = editor.dataset.add(np.full(4, 99, dtype=np.float32), label=2)
    editor.dataset.relabel(ids[5], 0)
    sync(trainer, editor)
    drawn: set[int] = set()
    targets: dict[int, set[int]] = {}
    for i, (x, y) in enumerate(live.batches()):
        rows = x[:, 0].int().tolist()
        drawn.update(rows)
        for r, t in zip(rows, y.tolist(), strict=True):
            targets.setdefault(r, set()).add(t)
        assert len(rows) == 4
        train_step(live, x, y)
        if i == 40:
            break
    assert 99 in drawn  # added mid-run: drawn
    assert 0 not in drawn  # removed: never drawn again
    assert targets[5] == {0}  # relabelled: the new target is used
    assert added in trainer.dataset


def test_pause_stops_steps_and_resume_continues_from_the_same_state() -> None:
    trainer, editor, model, optimizer, _ = setup()
    live = attach(trainer, model, optimizer)
    steps: list[int] = []
    done = threading.Event()

    def loop() -> None:
        for x, y in live.batches():
            train_step(live, x, y)
            steps.append(live.step_count)
            if live.step_count == 20:
                break
        done.set()

    thread = threading.Thread(target=loop)
    trainer.control.pause()  # paused before the first step
    thread.start()
    with live._changed:
        assert live._changed.wait_for(lambda: live.paused, timeout=10)
    assert steps == []
    before = [p.detach().clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    editor.control.resume()
    trainer.merge_bytes(editor.export_since(trainer.version))
    assert done.wait(timeout=30)
    thread.join(timeout=10)
    assert steps == list(range(1, 21))
    trainer.control.stop()
    assert list(live.batches()) == [] and live.stopped


def test_an_invalid_merged_value_is_ignored_and_reported() -> None:
    trainer, editor, model, optimizer, _ = setup()
    live = attach(trainer, model, optimizer)
    sync(trainer, editor)
    editor.config.declare({"lr": Float(0.1, min=0.0, max=20.0)})  # a looser rule elsewhere
    editor.config["lr"] = 15.0
    editor.config.declare({"lr": Float(0.1, min=0.0, max=10.0)})  # then tightened again
    sync(trainer, editor)
    next(iter(live.batches()))
    assert optimizer.param_groups[0]["lr"] == 0.1  # the last valid value stays
    [problem] = live.problems
    assert "15.0 is above the maximum 10.0" in problem and "keeping 0.1" in problem


def test_checkpoint_now_saves_and_resume_restores() -> None:
    trainer, editor, model, optimizer, _ = setup()
    live = attach(trainer, model, optimizer)
    batches = live.batches()
    for _ in range(3):
        train_step(live, *next(batches))
    editor.control.checkpoint_now()
    sync(trainer, editor)
    x, y = next(batches)  # the command runs at this step's boundary, before the step
    saved = [p.detach().clone() for p in model.parameters()]
    train_step(live, x, y)
    [ckpt] = trainer.checkpoints.list()
    assert ckpt.step == 3 and "loss" in ckpt.metrics
    assert trainer.control.pending() == []
    for _ in range(3):
        train_step(live, *next(batches))  # keep training: the weights move on
    fresh = torch.nn.Linear(4, 3)
    resumed = attach(trainer, fresh, torch.optim.SGD(fresh.parameters(), lr=0.5))
    resumed.resume_from()
    assert resumed.step_count == 3
    assert all(torch.equal(a, b) for a, b in zip(saved, fresh.parameters(), strict=True))
    with pytest.raises(StopIteration):
        trainer.control.stop()
        next(resumed.batches())


def test_the_lr_schedule_follows_samples_seen_and_an_edit_rescales_it() -> None:
    trainer, editor, model, optimizer, _ = setup(40)
    live = attach(trainer, model, optimizer)
    trainer.config.update_many(
        {"schedule": "cosine", "warmup_samples": 64, "total_samples": 640, "batch_size": 8}
    )
    sync(trainer, editor)
    seen, lrs = [], []
    for i, (x, y) in enumerate(live.batches()):
        train_step(live, x, y)
        seen.append(live.samples_seen)
        lrs.append(optimizer.param_groups[0]["lr"])
        if i == 20:
            editor.config["lr"] = 0.05  # halve the base: the schedule is rescaled, not reset
            sync(trainer, editor)
        if i == 40:
            break
    assert lrs[0] < lrs[6]  # warming up over the first 64 samples
    assert lrs[10] == pytest.approx(0.1 * live_factor(seen[10], 64, 640), rel=1e-6)
    before, after = lrs[20], lrs[21]
    assert after == pytest.approx(before / 2, rel=0.05)  # the same point of the curve, halved
    assert lrs[-1] < lrs[21]  # and the cosine keeps decaying with samples seen


def live_factor(seen: int, warm: int, total: int) -> float:
    import math

    t = min(max(seen - warm, 0) / total, 1.0)
    return 0.5 * (1 + math.cos(math.pi * t))


def test_the_live_batches_are_a_torch_iterable_dataset() -> None:
    from torch.utils.data import DataLoader

    from convergent.training import LiveBatches

    trainer, _, model, optimizer, _ = setup()
    live = attach(trainer, model, optimizer)
    loader = DataLoader(LiveBatches(live), batch_size=None)
    for i, (x, y) in enumerate(loader):
        assert x.shape[1] == 4 and len(x) == len(y)
        train_step(live, x, y)
        if i == 3:
            break
    assert live.step_count == 4


def test_logged_points_are_committed_in_the_background_as_one_op() -> None:
    trainer, _, model, optimizer, _ = setup()
    live = attach(trainer, model, optimizer, flush_every=0.5)
    ops_before = trainer.version.ops
    batches = live.batches()
    for _ in range(5):
        train_step(live, *next(batches))
    # No flush called: the background thread commits within flush_every.
    changed = threading.Event()
    handle = trainer.on_change(lambda c: changed.set() if "metrics" in c.parts else None)
    deadline = time.monotonic() + 30
    while len(trainer.metrics("loss")) < 5:
        assert changed.wait(max(deadline - time.monotonic(), 0)), "never flushed"
        changed.clear()
    handle.remove()
    assert trainer.metrics("loss").step.tolist() == [1, 2, 3, 4, 5]
    assert trainer.version.ops - ops_before <= 2  # one op (or two), not five
    assert trainer.metrics("samples_seen").value.tolist() == [12.0, 24.0, 36.0, 48.0, 60.0]
    for _ in range(3):
        train_step(live, *next(batches))
    live.detach()  # flushes what is left
    assert trainer.metrics("loss").step.tolist() == list(range(1, 9))


def test_log_many_checks_every_row_before_it_writes() -> None:
    run = Run()
    with pytest.raises(SchemaError, match="not a number"):
        run.log_many([1, 2], [{"loss": 0.5}, {"loss": "x"}])  # type: ignore[dict-item]
    with pytest.raises(SchemaError, match="as many steps"):
        run.log_many([1], [{"loss": 0.5}, {"loss": 0.4}])
    assert run.metric_names() == []
    run.log_many([3, 4], [{"loss": 0.5, "acc": 0.1}, {"loss": 0.4}], times=[1000, 2000])
    assert run.metrics("loss").step.tolist() == [3, 4]
    assert run.metrics("loss").time.tolist() == [1000, 2000]
    assert run.metrics("acc").value.tolist() == [0.1]
    run.log({"loss": 0.3})  # the default step follows the rows
    assert run.metrics("loss").step.tolist() == [3, 4, 5]
