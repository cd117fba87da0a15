"""The demonstration behind ``make demo`` (until the live training demo replaces it).

Two people hold replicas of one run in two SQLite files, edit them while offline, exchange
what the other lacks as bytes, and end with the same run; concurrent config writes are shown
as conflicts that resolve the same way on both sides.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TextIO

import numpy as np

import convergent
from convergent.run import Choice, Float, Int, Run


def _digits(run: Run) -> list[int]:
    try:
        return run.dataset.from_sklearn("digits")
    except convergent.SchemaError:  # scikit-learn is not installed: digit-shaped noise
        rng = np.random.default_rng(0)
        x = rng.integers(0, 17, size=(1797, 8, 8), dtype=np.uint8)
        return run.dataset.add_many(x, rng.integers(0, 10, size=1797))


def run_demo(folder: Path | None, out: TextIO) -> None:
    """Print the demonstration to ``out``; the run files go to ``folder`` (a temp dir if None)."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        where = Path(folder) if folder is not None else Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        a_path, b_path = where / "alice.convergent", where / "bob.convergent"
        for p in (a_path, b_path):
            p.unlink(missing_ok=True)
        say("convergent demo: two people, one run, no server, no locks")
        say("=" * 62)
        schema = {
            "lr": Float(0.1, min=0.0, max=1.0),
            "batch_size": Int(64, min=1),
            "optimizer": Choice("sgd", ["sgd", "adam"]),
        }
        with convergent.open(a_path, config=schema, user="alice") as alice:
            ids = _digits(alice)
            alice.notes.description = "MLP on scikit-learn digits."
            start = alice.export_since()
            say(f"alice creates {a_path.name}: {len(ids):,} digits, lr = 0.1 ({len(start):,} B)")
            with convergent.open(b_path, join=start, user="bob") as bob:
                say(f"bob joins from alice's bytes into {b_path.name}; both go offline and edit:")
                say()
                alice.config["lr"] = 0.02
                alice.dataset.remove(ids[7])
                alice.dataset.relabel(ids[12], 3)
                alice.notes.add("lowering lr: the loss plateaued")
                alice.log({"loss": 2.3}, step=1)
                say("  alice: lr = 0.02, removes sample 7, relabels sample 12 -> 3, a comment")
                bob.config["lr"] = 0.05
                bob.config["optimizer"] = "adam"
                bob.dataset.add(alice.dataset.payload(ids[7]))  # re-adds sample 7
                bob.dataset.relabel(ids[12], 8)
                bob.log({"loss": 2.2}, step=1)
                say("  bob:   lr = 0.05, optimizer = adam, re-adds sample 7, relabels 12 -> 8")
                say()
                to_bob, to_alice = alice.export_since(bob.version), bob.export_since(alice.version)
                bob.merge_bytes(to_bob)
                alice.merge_bytes(to_alice)
                say(f"they swap what the other lacks: {len(to_bob):,} B and {len(to_alice):,} B")
                same = alice.export_since() == bob.export_since() or (
                    alice.config.to_dict() == bob.config.to_dict()
                    and alice.dataset.view() == bob.dataset.view()
                )
                say(f"converged: {'yes' if same else 'NO (this is a bug)'}")
                say()
                say("config:")
                conflicts = {c.key: c for c in alice.config.conflicts()}
                for key, value in alice.config.to_dict().items():
                    c = conflicts.get(key)
                    if c is None:
                        say(f"  {key:<11} {value!r}")
                        continue
                    shown = ", ".join(
                        f"{w.value!r} by {alice.members.name_of(w.author)} at {w.time:%H:%M:%S}"
                        for w in c.values
                    )
                    say(f"  {key:<11} CONFLICT {shown}; every replica reads {c.resolved!r}")
                say(
                    f"dataset: {len(alice.dataset):,} samples; sample 7 is back "
                    f"({ids[7] in alice.dataset}: add wins over the concurrent remove); "
                    f"sample 12 reads label {alice.dataset[ids[12]].label!r} on both sides"
                )
                say(f"metrics: {len(alice.metrics('loss'))} loss points from 2 writers")
                say()
                alice.config["lr"] = 0.03
                bob.merge_bytes(alice.export_since(bob.version))
                say(
                    f"alice sets lr = 0.03 having seen both; bob reads {bob.config['lr']!r} with "
                    f"{len(bob.config.conflicts())} conflicts left. lr's history on bob's side:"
                )
                for entry in bob.history("config", "lr"):
                    say(f"  {entry}")
        if folder is not None:
            say(f"\nthe two run files are in {where}/")
