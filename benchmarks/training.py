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


def _plain(steps: int, task: str = "digits-mlp") -> float:
    import torch
    from sklearn.datasets import load_digits

    from convergent.training.tasks import load_task

    d = load_digits()
    x = torch.as_tensor(d.images.astype(np.uint8), dtype=torch.float32)
    y = torch.as_tensor(d.target)
    model, optimizer = load_task(task)()
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


def _live(steps: int, log_every: int, edit_every: int | None, task: str = "digits-mlp") -> float:
    import torch

    from convergent.run import Run
    from convergent.training import attach
    from convergent.training.tasks import ensure_digits, load_task

    run = Run()
    ensure_digits(run)
    run.dataset.split(run.dataset.ids(), "train")  # the whole set, as the plain loop uses
    editor = Run(join=run.export_since())
    model, optimizer = load_task(task)()
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
    took = time.perf_counter() - started
    live.detach()
    return took


def _edit_to_applied(edits: int) -> tuple[float, float]:
    """Milliseconds from an editor's ``config["lr"] = v`` to the trainer applying it (its
    ``on_config`` callback), through a real hub, with the trainer stepping."""
    import tempfile
    import threading
    from pathlib import Path

    import torch

    import convergent
    from convergent.testing.hub import spawn_hub
    from convergent.training import attach
    from convergent.training.tasks import digits_mlp, ensure_digits

    with tempfile.TemporaryDirectory() as tmp:
        hub = spawn_hub(Path(tmp) / "hub")
        try:
            trainer = convergent.connect(hub.url(), hub.admin, user="trainer")
            editor = convergent.connect(hub.url(), hub.admin, user="alice")
            ensure_digits(trainer)
            model, optimizer = digits_mlp()
            live = attach(trainer, model, optimizer, log_every=10)
            trainer.wait_synced(30)
            editor.wait_until(lambda: "lr" in editor.schema, 30)
            applied: dict[float, float] = {}
            live.on_config("lr", lambda v: applied.setdefault(float(v), time.perf_counter()))
            stop = threading.Event()

            def loop() -> None:
                for x, y in live.batches():
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    live.step(loss=loss.item())
                    if stop.is_set():
                        return

            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            took = []
            for i in range(edits):
                value = 0.01 + i / 10_000
                sent = time.perf_counter()
                editor.config["lr"] = value
                deadline = sent + 5
                while value not in applied and time.perf_counter() < deadline:
                    time.sleep(0.0005)  # a benchmark polling its own measurement, not a test
                if value in applied:
                    took.append((applied[value] - sent) * 1000)
            stop.set()
            thread.join(timeout=10)
            trainer.close()
            editor.close()
        finally:
            hub.proc.kill()
            hub.proc.wait(timeout=10)
    took.sort()
    return took[len(took) // 2], took[int(len(took) * 0.9)]


def _versus(steps: int, task: str, log_every: int, edit: int | None) -> tuple[float, float]:
    """Best-of-3 seconds of the plain loop and of the live loop, run alternately (plain,
    live, plain, live, ...) so that a busy moment of the machine hits both alike."""
    plain, live = [], []
    for _ in range(3):
        plain.append(_plain(steps, task))
        live.append(_live(steps, log_every, edit, task))
    return min(plain), min(live)


def table5(errors: list[str]) -> Table:
    steps = scaled(2000, 200)
    cnn_steps = scaled(500, 50)
    t = Table(
        "Table 5: a training loop with the live layer (digits, batch 32, CPU)",
        ["loop", "steps", "plain s", "live s", "live steps/s", "live / plain"],
    )
    rows = (
        ("MLP, metrics logged every step", "digits-mlp", steps, 1, None),
        ("MLP, metrics every 10 steps", "digits-mlp", steps, 10, None),
        ("MLP, every step, an lr edit merged every 100", "digits-mlp", steps, 1, 100),
        ("CNN, metrics logged every step", "digits-cnn", cnn_steps, 1, None),
        ("CNN, metrics every 10 steps", "digits-cnn", cnn_steps, 10, None),
    )
    try:
        for label, task, n, log_every, edit in rows:
            progress(f"table 5: {label}")
            base, took = _versus(n, task, log_every, edit)
            t.add(
                label,
                f"{n:,}",
                f"{base:.2f}",
                f"{took:.2f}",
                f"{n / took:,.0f}",
                f"{base / took:.3f}",
            )
        progress("table 5: edit to applied, through a hub")
        p50, p90 = _edit_to_applied(scaled(40, 10))
        t.add(
            "edit -> trainer applies it (hub), p50 / p90 ms",
            "",
            "",
            "",
            f"{p50:.1f} / {p90:.1f}",
            "",
        )
    except Exception as exc:  # a broken row must not hide the others
        errors.append(f"table 5: {type(exc).__name__}: {exc}")
        t.add("ERROR", f"{type(exc).__name__}: {exc}"[:80], "", "", "", "")
    t.note("best of 3 runs each, plain and live alternating; the live loop draws from the run's")
    t.note("dataset view (payloads cached) and queues metrics for its background flush.")
    t.note(f"scale {SETTINGS.scale:g}.")
    return t
