"""Decentralized training with the weights CRDT: simulated workers over a hostile network,
and worker threads through a real hub. Every run must end with bit-identical weights on
every replica (DESIGN.md section 5)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import convergent
from convergent.cli import main
from convergent.testing.hub import spawn_hub
from convergent.training.simulation import Digits, Setup, simulate
from convergent.training.tasks import digits_mlp64
from convergent.training.worker import WorkerReport, train_worker


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and the CI box has two cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits.load(0)


def test_training_is_a_function_of_the_seeds_not_of_the_network(digits: Digits) -> None:
    """Decided-round reads: other delays, duplicates and orders, the same weights, bit for bit."""
    base = Setup(workers=3, steps=64, inner_steps=16, seed=0, max_delay=0.9, duplicate=0.5)
    runs = [simulate(Setup(**{**base.__dict__, "network_seed": n}), digits) for n in (1, 2, 3)]
    assert all(o.identical for o in runs)
    assert len({o.digest for o in runs}) == 1
    assert runs[0].rounds == 4 and runs[0].accuracy > 0.5


def test_churn_one_worker_leaves_one_joins(digits: Digits) -> None:
    outcome = simulate(
        Setup(workers=3, steps=96, inner_steps=8, churn=True, seed=1, codec="int8"), digits
    )
    assert outcome.identical
    assert outcome.members == 4  # three at the start, one more joined
    assert outcome.rounds == 12
    assert outcome.skipped == 0  # the leave tombstone means nobody waits for the leaver


def test_a_straggler_is_skipped_after_the_timeout_the_same_way_every_time(
    digits: Digits,
) -> None:
    setup = Setup(workers=3, steps=64, inner_steps=8, slowness=(1.8,), skip_timeout=0.3, seed=2)
    first, again = simulate(setup, digits), simulate(setup, digits)
    assert first.skipped > 0
    assert first.identical and again.identical
    assert first.digest == again.digest
    assert first.rounds == 8


def test_a_crashed_worker_is_skipped_then_dropped(digits: Digits) -> None:
    setup = Setup(workers=3, steps=64, inner_steps=8, crash=True, skip_timeout=0.5, seed=4)
    outcome = simulate(setup, digits)
    assert outcome.identical and outcome.rounds == 8
    # Its slot is skipped in two rounds, then it is tombstoned: no more waiting for it.
    assert outcome.skipped == 2


def test_the_worker_command_describes_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["worker", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "run_url" in text and "--inner-steps" in text and "--skip-timeout" in text


def test_workers_train_together_through_a_real_hub(tmp_path: Path) -> None:
    hub = spawn_hub(tmp_path / "hub")
    runs = []
    try:
        admin = convergent.connect(hub.url(), hub.admin, user="admin")
        runs.append(admin)
        data = Digits.load(0)
        x = data.x_train[:240].numpy().reshape(-1, 8, 8).astype(np.uint8)
        admin.dataset.add_many(x, data.y_train[:240].numpy(), split="train")
        admin.wait_synced()
        worker_token = hub.token("worker")  # the worker role may write the weights
        workers = [convergent.connect(hub.url(), worker_token, user=f"w{i}") for i in range(2)]
        runs.extend(workers)
        for w in workers:
            w.wait_until(lambda w=w: len(w.dataset) == 240)
        reports: list[WorkerReport | BaseException] = [RuntimeError("did not run")] * 2

        def work(i: int) -> None:
            torch.manual_seed(0)
            model, optimizer = digits_mlp64()
            try:
                reports[i] = train_worker(
                    workers[i],
                    model,
                    optimizer,
                    rounds=3,
                    inner_steps=4,
                    codec="int8",
                    at_round=1,
                    min_workers=2,
                    skip_timeout=60,
                    start_timeout=60,
                )
            except BaseException as exc:
                reports[i] = exc

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        done = [r for r in reports if isinstance(r, WorkerReport)]
        assert len(done) == 2, reports
        assert {r.final_round for r in done} == {3}
        assert done[0].digest == done[1].digest
        assert all(r.bytes_sent > 0 and len(r.rounds) == 3 for r in done)
        for w in workers:
            w.wait_synced()
        admin.wait_until(lambda: admin.weights.decided_round() == 3, timeout=30)
        assert admin.weights.fold(3).digest == done[0].digest  # a third replica agrees
        assert sorted(admin.weights.members()) == sorted(w.replica_id for w in workers)
    finally:
        for r in runs:
            r.close()
        hub.stop()


def test_the_readme_example_runs() -> None:
    import contextlib
    import io

    from test_readme import python_block

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python_block("Decentralized training"), "README.md", "exec"), {})
    assert out.getvalue().splitlines() == ["0", "1 True"]


def test_the_worker_command_on_a_run_file_uses_the_live_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from convergent.run import Float, Int

    path = tmp_path / "run.convergent"
    data = Digits.load(0)
    with convergent.open(path, config={"lr": Float(0.05), "batch_size": Int(16)}) as run:
        x = data.x_train[:120].numpy().reshape(-1, 8, 8).astype(np.uint8)
        run.dataset.add_many(x, data.y_train[:120].numpy(), split="train")
        run.config["lr"] = 0.02  # requested by a person: the worker trains with it
        run.config["batch_size"] = 8
    args = ["worker", str(path), "--rounds", "2", "--inner-steps", "4", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Joining, it announced a round two past anything it knew (round 2): rounds 2 and 3.
    assert report["rounds"] == 2 and report["final_round"] == 3 and report["bytes_sent"] > 0
    with convergent.open(path) as run:
        assert run.weights.model().digest.hex() == report["digest"]
        state = run.weights.state()
        (contribution,) = [s for (r, _), s in state.slots.items() if r == 3]
        assert contribution.n_samples == 4 * 8  # four steps of the requested batch size


def test_docstring_examples_run() -> None:
    import doctest

    import convergent.training.simulation
    import convergent.training.worker

    for module in (convergent.training.worker, convergent.training.simulation):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0
