"""Table 5: what the live layer costs a training loop.

The digits MLP (``convergent train``'s task) and CNN on scikit-learn's digits, batch 32, on
the CPU: a plain PyTorch loop over a tensor of the same data against the same loop through
`convergent.training.attach` (batches from the run's live dataset view, an O(1) revision
check per step, metrics queued every step or every 10 steps and committed as one op), and
the same with an edit from another replica merged every 100 steps; then the time from an
edit through a real hub to a trainer (in its own process) applying it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from benchmarks.harness import SETTINGS, Table, progress, scaled


def _plain(task: str) -> Callable[[int], None]:
    """``steps(n)``: n steps of a plain PyTorch loop over a tensor of the digits."""
    import torch
    from sklearn.datasets import load_digits

    from convergent.training.tasks import load_task

    d = load_digits()
    x = torch.as_tensor(d.images.astype(np.uint8), dtype=torch.float32)
    y = torch.as_tensor(d.target)
    model, optimizer = load_task(task)()
    rng = np.random.default_rng(0)

    def steps(n: int) -> None:
        for _ in range(n):
            pick = torch.as_tensor(rng.choice(len(x), size=32, replace=False))
            loss = torch.nn.functional.cross_entropy(model(x[pick]), y[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()

    return steps


def _live(task: str, log_every: int, edit_every: int | None) -> Callable[[int], None]:
    """``steps(n)``: n steps of the same loop through `attach`, then a flush of the queued
    metrics (inside the timed span: every point logged is committed before it ends)."""
    import torch

    from convergent.run import Run
    from convergent.training import attach
    from convergent.training.tasks import ensure_digits, load_task

    run = Run()
    ensure_digits(run)
    run.dataset.split(run.dataset.ids(), "train")  # the whole set, as the plain loop uses
    editor = Run(join=run.export_since())
    model, optimizer = load_task(task)()
    # The flush thread would also run during the plain loop's turns; flushing at the end of
    # each turn instead commits more often than it would (every turn, not every 0.2 s).
    live = attach(run, model, optimizer, log_every=log_every, flush_every=3600)
    editor.merge_bytes(run.export_since(editor.version))
    # Another person's edits, made beforehand: the loop pays for merging and applying them
    # (on a live run the receive thread merges), not for the editor's own work.
    edits = []
    for k in range(50_000 // edit_every if edit_every else 0):  # more than any run merges
        before = editor.version
        editor.config["lr"] = 0.05 if k % 2 else 0.04
        edits.append(editor.export_since(before))
    batches = live.batches()
    done = 0

    def steps(n: int) -> None:
        nonlocal done
        for _ in range(n):
            x, y = next(batches)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            live.step(loss=loss.item())
            done += 1
            if edit_every and done % edit_every == 0:
                run.merge_bytes(edits[(done // edit_every) % len(edits)])
        live.flush()

    return steps


TRAINER = """
import sys, time, torch
import convergent
from convergent.training import attach
from convergent.training.tasks import digits_mlp
torch.set_num_threads(1)
run = convergent.connect(sys.argv[1], sys.argv[2], user="trainer")
run.wait_until(lambda: len(run.dataset) > 0, 60)
model, optimizer = digits_mlp()
live = attach(run, model, optimizer, log_every=10)
run.wait_synced(30)
live.on_config("lr", lambda v: print("applied", v, time.monotonic(), flush=True))
print("ready", flush=True)
for x, y in live.batches():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    live.step(loss=loss.item())
run.close()
"""


def _edit_to_applied(edits: int) -> tuple[float, float]:
    """Milliseconds from an editor's ``config["lr"] = v`` to the trainer applying it (its
    ``on_config`` callback), through a real hub, with the trainer stepping in a process of
    its own (as a trainer runs: it shares no interpreter lock with the editor).
    ``time.monotonic`` is one clock for every process on the machine."""
    import os
    import queue
    import subprocess
    import sys
    import tempfile
    import threading
    from pathlib import Path

    import convergent
    from benchmarks.harness import ROOT
    from convergent.testing.hub import spawn_hub
    from convergent.training.tasks import ensure_digits

    took: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        hub = spawn_hub(Path(tmp) / "hub")
        trainer = None
        try:
            editor = convergent.connect(hub.url(), hub.admin, user="alice")
            ensure_digits(editor)
            editor.wait_synced(30)
            trainer = subprocess.Popen(
                [sys.executable, "-c", TRAINER, hub.url(), hub.admin],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
            lines: queue.Queue[str] = queue.Queue()

            def read() -> None:
                assert trainer is not None and trainer.stdout is not None
                for line in trainer.stdout:
                    lines.put(line)

            threading.Thread(target=read, daemon=True).start()
            while lines.get(timeout=120).strip() != "ready":
                pass
            editor.wait_until(lambda: "lr" in editor.schema, 30)
            for i in range(edits):
                value = 0.01 + (i + 1) / 10_000
                sent = time.monotonic()
                editor.config["lr"] = value
                while True:  # the trainer says when it applied it (or the edit is lost)
                    word, applied, at = lines.get(timeout=10).split()
                    if word == "applied" and float(applied) == value:
                        took.append((float(at) - sent) * 1000)
                        break
            editor.control.stop()
            editor.wait_synced(30)
            trainer.wait(timeout=30)
            editor.close()
        finally:
            if trainer is not None and trainer.poll() is None:
                trainer.kill()
            hub.proc.kill()
            hub.proc.wait(timeout=10)
    took.sort()
    return took[len(took) // 2], took[int(len(took) * 0.9)]


TURN = 100  # steps per turn: plain and live take turns, so a slow spell hits both alike


def _versus(
    steps: int, task: str, log_every: int, edit: int | None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall s, CPU s) of ``steps`` plain steps and of ``steps`` live steps, run in turns of
    `TURN` steps (plain, live, plain, live, ...): this VM's speed drifts by 15 % over
    seconds, which whole runs one after the other measure as much as the layer itself."""
    plain, live = _plain(task), _live(task, log_every, edit)
    plain(10), live(10)  # warm both (first allocations, caches)
    totals = [[0.0, 0.0], [0.0, 0.0]]
    for _ in range(steps // TURN):
        for k, loop in enumerate((plain, live)):
            wall, cpu = time.perf_counter(), time.process_time()
            loop(TURN)
            totals[k][0] += time.perf_counter() - wall
            totals[k][1] += time.process_time() - cpu
    return (totals[0][0], totals[0][1]), (totals[1][0], totals[1][1])


def table5(errors: list[str]) -> Table:
    import torch

    # One intra-op thread for both loops: at batch 32 a second thread only spins, and its
    # spinning against the flush thread is noise, not a cost either loop must pay.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _table5(errors)
    finally:
        torch.set_num_threads(threads)


def _table5(errors: list[str]) -> Table:
    steps = scaled(2000, 200)
    cnn_steps = scaled(500, 50)
    t = Table(
        "Table 5: a training loop with the live layer (digits, batch 32, CPU)",
        ["loop", "steps", "plain s", "live s", "live steps/s", "live/plain wall", "CPU"],
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
            (base, base_cpu), (took, took_cpu) = _versus(n, task, log_every, edit)
            t.add(
                label,
                f"{n:,}",
                f"{base:.2f}",
                f"{took:.2f}",
                f"{n / took:,.0f}",
                f"{base / took:.3f}",
                f"{base_cpu / took_cpu:.3f}",
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
            "",
        )
    except Exception as exc:  # a broken row must not hide the others
        errors.append(f"table 5: {type(exc).__name__}: {exc}")
        t.add("ERROR", f"{type(exc).__name__}: {exc}"[:80], "", "", "", "", "")
    t.note(f"plain and live take turns of {TURN} steps (times summed per loop), one torch thread;")
    t.note("the live loop draws from the run's dataset view (payloads cached), queues metrics and")
    t.note("commits them at the end of each turn. Edit -> applied: the editor in this process, the")
    t.note("trainer in a process of its own, stepping.")
    t.note(f"scale {SETTINGS.scale:g}.")
    return t
