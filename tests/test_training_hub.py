"""A trainer against a real hub: an edit made by another client reaches the optimizer at the
next step, and a trainer that loses the hub keeps training, its metrics arriving after the
reconnect with nothing lost or duplicated."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import torch

import convergent
from convergent.training import attach
from convergent.training.live import Live
from test_hub import start_hub


def train_steps(
    live: Live, model: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int
) -> None:
    """``n`` optimizer steps on the live run's batches, each reported to ``live.step``."""
    batches = live.batches()
    for _ in range(n):
        xb, yb = next(batches)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        live.step(loss=loss.item())
    live.flush()  # commit the buffered points now (the flusher would, within 0.2 s)


def test_a_trainer_keeps_training_through_a_hub_outage(tmp_path: Path) -> None:
    store = tmp_path / "hub"
    hub = start_hub(store)
    port, admin = hub.port, hub.admin
    trainer = convergent.connect(hub.url(), admin, path=tmp_path / "t.convergent", user="t")
    editor = convergent.connect(hub.url(), admin, user="alice")
    try:
        x = np.stack([np.full(4, k, dtype=np.float32) for k in range(16)])
        editor.dataset.add_many(x, labels=[k % 2 for k in range(16)])
        editor.wait_synced()
        trainer.wait_until(lambda: len(trainer.dataset) == 16)
        model = torch.nn.Linear(4, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        live = attach(trainer, model, optimizer)
        trainer.wait_synced()
        editor.wait_until(lambda: "lr" in editor.schema)

        train_steps(live, model, optimizer, 10)
        editor.config["lr"] = 0.02  # another client, through the hub
        editor.wait_synced()
        trainer.wait_until(lambda: trainer.config["lr"] == 0.02)
        train_steps(live, model, optimizer, 1)
        assert optimizer.param_groups[0]["lr"] == 0.02
        trainer.wait_synced()  # the trainer's "in effect at step 10" reaches everyone
        editor.wait_until(
            lambda: (
                [(e.new, e.step) for e in editor.history("config", "lr") if e.user == "alice"]
                == [(0.02, 10)]
            )
        )

        hub.proc.send_signal(signal.SIGKILL)  # the hub goes away mid-run
        hub.proc.wait(timeout=10)
        trainer.wait_until(lambda: not trainer.status.online, timeout=20)
        # Training goes on offline; metrics go to the local store.
        train_steps(live, model, optimizer, 30)
        assert trainer.status.pending > 0
        hub = start_hub(store, port)
        trainer.wait_synced(timeout=30)
        editor.wait_until(lambda: len(editor.metrics("loss")) == 41, timeout=30)
        loss_steps = editor.metrics("loss").step.tolist()
        assert loss_steps == list(range(1, 42))  # every step once: none lost, none twice
    finally:
        trainer.close()
        editor.close()
        hub.proc.kill()
        hub.proc.wait(timeout=10)


def test_a_worker_token_trains_with_the_rules_the_run_has(tmp_path: Path) -> None:
    """A worker may not write the run's rules: attach declares nothing through its token,
    so the hub refuses nothing, and the keys an editor declared still apply live."""
    hub = start_hub(tmp_path / "hub")
    editor = convergent.connect(hub.url(), hub.admin, user="alice")
    trainer = convergent.connect(hub.url(), hub.token("worker"), user="w")
    try:
        x = np.stack([np.full(4, k, dtype=np.float32) for k in range(8)])
        editor.dataset.add_many(x, labels=[k % 2 for k in range(8)])
        editor.config.declare({"lr": convergent.run.Float(0.1, min=0.0)})
        editor.wait_synced()
        trainer.wait_until(lambda: len(trainer.dataset) == 8 and "lr" in trainer.schema)
        model = torch.nn.Linear(4, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        live = attach(trainer, model, optimizer)
        assert sorted(trainer.schema) == ["lr"]  # momentum etc. were not declared
        assert optimizer.param_groups[0]["lr"] == 0.1  # the run's lr, applied
        assert optimizer.param_groups[0]["momentum"] == 0.9  # the optimizer's own
        train_steps(live, model, optimizer, 3)
        trainer.wait_synced(30)  # nothing refused: metrics are a worker's to write
        editor.wait_until(lambda: len(editor.metrics("loss")) == 3, timeout=30)
    finally:
        trainer.close()
        editor.close()
        hub.proc.kill()
        hub.proc.wait(timeout=10)
