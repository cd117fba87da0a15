"""Table 5: what the live layer costs a training loop.

The digits MLP (``convergent train``'s task) on scikit-learn's digits, batch 32, on the CPU:
a plain PyTorch loop over a tensor of the same data against the same loop through
`convergent.training.attach` (batches from the run's live dataset view, an O(1) revision
check per step, a metric logged every step or every 10 steps), and the same with an edit
from another replica arriving every 100 steps.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.harness import SETTINGS, Table, progress, scaled


def _plain(steps: int) -> float:
    import torch
    from sklearn.datasets import load_digits

    from convergent.training.tasks import digits_mlp

    d = load_digits()
    x = torch.as_tensor(d.images.astype(np.uint8), dtype=torch.float32)
    y = torch.as_tensor(d.target)
    model, optimizer = digits_mlp()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(steps):
        pick = torch.as_tensor(rng.choice(len(x), size=32, replace=False))
        loss = torch.nn.functional.cross_entropy(model(x[pick]), y[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
    return time.perf_counter() - started


def _live(steps: int, log_every: int, edit_every: int | None) -> float:
    import torch

    from convergent.run import Run
    from convergent.training import attach
    from convergent.training.tasks import digits_mlp, ensure_digits

    run = Run()
    ensure_digits(run)
    run.dataset.split(run.dataset.ids(), "train")  # the whole set, as the plain loop uses
    editor = Run(join=run.export_since())
    model, optimizer = digits_mlp()
    live = attach(run, model, optimizer, log_every=log_every)
    editor.merge_bytes(run.export_since(editor.version))
    batches = live.batches()
    started = time.perf_counter()
    for i in range(steps):
        x, y = next(batches)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        live.step(loss=loss.item())
        if edit_every and i % edit_every == edit_every - 1:
            editor.config["lr"] = 0.05 if i % (2 * edit_every) else 0.04
            run.merge_bytes(editor.export_since(run.version))
    return time.perf_counter() - started


def table5(errors: list[str]) -> Table:
    steps = scaled(2000, 200)
    t = Table(
        "Table 5: a training loop with the live layer (digits MLP, batch 32, CPU)",
        ["loop", "steps", "s", "steps/s", "vs plain"],
    )
    try:
        progress("table 5: plain loop")
        base = min(_plain(steps) for _ in range(3))
        t.add(
            "plain PyTorch (tensor indexing)",
            f"{steps:,}",
            f"{base:.2f}",
            f"{steps / base:,.0f}",
            "1.00x",
        )
        for label, log_every, edit in (
            ("live: metrics logged every step", 1, None),
            ("live: metrics every 10 steps", 10, None),
            ("live: every 10 steps, an lr edit merged every 100", 10, 100),
        ):
            progress(f"table 5: {label}")
            took = min(_live(steps, log_every, edit) for _ in range(3))
            t.add(label, f"{steps:,}", f"{took:.2f}", f"{steps / took:,.0f}", f"{base / took:.2f}x")
    except Exception as exc:  # a broken row must not hide the others
        errors.append(f"table 5: {type(exc).__name__}: {exc}")
        t.add("ERROR", f"{type(exc).__name__}: {exc}"[:80], "", "", "")
    t.note("best of 3 runs; the live loop draws from the run's dataset view (payloads cached).")
    t.note(f"scale {SETTINGS.scale:g}.")
    return t
