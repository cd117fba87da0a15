"""Built-in example tasks (``convergent train --task NAME``) and the trainer loop they share.

A task builds a model and an optimizer for a run whose samples are scikit-learn's bundled
digits (8x8 images, 10 classes; no download). `train` is the loop a person can follow top to
bottom: batches from the live dataset, one optimizer step, a step boundary where edits apply.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np
import torch

from convergent.run import Run
from convergent.training.live import Live, attach

Task = Callable[[], tuple[torch.nn.Module, torch.optim.Optimizer]]


def _mlp(hidden: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(
        _Pixels(),
        torch.nn.Flatten(),
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def digits_mlp() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A 64-128-10 MLP with SGD + momentum."""
    return _mlp(128)


def digits_mlp64() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A 64-64-10 MLP (4,810 parameters) with SGD + momentum: the decentralized benchmark's."""
    return _mlp(64)


def digits_cnn() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A small CNN: two 3x3 convolutions, then a linear layer."""
    model = torch.nn.Sequential(
        _Pixels(),
        _AddChannel(),
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(128, 10),
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


class _Pixels(torch.nn.Module):
    """Digits pixels are 0..16: scale them to 0..1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 16.0


class _AddChannel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), 1, 8, 8)


TASKS: dict[str, Task] = {
    "digits-mlp": digits_mlp,
    "digits-mlp64": digits_mlp64,
    "digits-cnn": digits_cnn,
}


def load_task(name: str) -> Task:
    """A built-in task by name, or ``module:function`` for your own."""
    if name in TASKS:
        return TASKS[name]
    module, _, attr = name.partition(":")
    if not attr:
        known = ", ".join(TASKS)
        raise ValueError(f"unknown task {name!r}: one of {known}, or module:function")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise ValueError(f"{name} is not callable")
    return fn  # type: ignore[no-any-return]


def ensure_digits(run: Run) -> int:
    """Import the digits (with a 20 % validation split) if the run has no samples yet."""
    if len(run.dataset):
        return 0
    with run.transaction():
        ids = run.dataset.from_sklearn("digits")
        run.dataset.assign_splits(val=0.2)
    return len(ids)


def evaluate(live: Live, split: str = "val") -> float | None:
    """Accuracy on a split of the current dataset (``None`` if it is empty)."""
    ids = live.run.dataset.ids(split)
    labels = live.run.dataset.labels(split)
    if not len(ids) or labels.dtype == object:
        return None
    x = torch.as_tensor(
        np.stack([live.run.dataset.payload(int(i)) for i in ids.tolist()]), dtype=torch.float32
    )
    with torch.no_grad():
        pred = live.model(x).argmax(dim=1).numpy()
    return float((pred == labels).mean())


def train(
    run: Run,
    task: Task,
    *,
    steps: int | None = None,
    log_every: int = 10,
    eval_every: int = 100,
    out: TextIO | None = None,
    resume: bool = False,
) -> Live:
    """Train until the run is stopped (or for ``steps`` steps); returns the binding."""
    model, optimizer = task()
    live = attach(run, model, optimizer, log_every=log_every)
    if resume:
        live.resume_from()
    started = time.perf_counter()
    for x, y in live.batches():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        live.clip_gradients()
        optimizer.step()
        live.step(loss=loss.item())
        if live.step_count % eval_every == 0:
            acc = evaluate(live)
            if acc is not None:
                run.log({"val_acc": acc}, step=live.step_count)
            if out is not None:
                rate = live.step_count / max(time.perf_counter() - started, 1e-9)
                shown = "-" if acc is None else f"{acc:.3f}"
                lr = optimizer.param_groups[0]["lr"]
                print(
                    f"step {live.step_count:>6,}  loss {loss.item():.4f}  val_acc {shown}  "
                    f"lr {lr:g}  batch {live.batch_size}  samples {len(run.dataset):,}  "
                    f"{rate:.0f} steps/s",
                    file=out,
                    flush=True,
                )
        if steps is not None and live.step_count >= steps:
            break
    live.flush()
    for problem in live.problems:
        if out is not None:
            print(f"note: {problem}", file=out)
    return live
