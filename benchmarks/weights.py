"""Table 7: decentralized training with the weights CRDT against synchronous data parallelism.

scikit-learn's digits (75/25 stratified split, 1,347 train / 450 test), the 64-64-10 MLP
(4,810 parameters), K=4 workers of batch 16 with SGD(0.05, momentum 0.9), T=600 inner steps
each, IID shards or label-skewed ones (the training set sorted by label, cut in 4). Every
figure comes from this one run: medians [min-max] over the seeds.

* sync DP: one process, each step a batch of 16 from every worker's shard (batch 64): the
  same mathematics as synchronous DDP; bytes are a ring all-reduce's, 2(K-1)/K * P * 4 per
  worker per step (computed).
* DDP gloo: real `torch.distributed` DDP, K processes on 127.0.0.1 (bytes computed likewise).
* CRDT simulated: K in-process workers, decided-round DiLoCo (outer Nesterov 0.7, 0.9), over
  a seeded network (delays up to 0.2 round, 20 % duplicates, any order); bytes are the
  encoded deltas, each sent to the K-1 others (all-to-all). Wall time is the in-process run.
* CRDT processes: K ``convergent worker`` processes through a real hub on 127.0.0.1 (a worker
  uploads each op once; the hub fans out); wall time from the start barrier to the final read.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import SETTINGS, Table, progress

K = 4


@dataclass
class Cell:
    """The runs of one row: accuracy, bytes per worker, wall seconds, identical replicas."""

    acc: list[float] = field(default_factory=list)
    bytes: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    identical: list[bool] = field(default_factory=list)

    def add(self, acc: float, nbytes: float, wall: float, identical: bool = True) -> None:
        self.acc.append(acc)
        self.bytes.append(nbytes)
        self.wall.append(wall)
        self.identical.append(identical)

    def accuracy(self) -> str:
        a = [100 * x for x in self.acc]
        if len(a) == 1:
            return f"{a[0]:.1f}"
        return f"{statistics.median(a):.1f} [{min(a):.1f}-{max(a):.1f}]"

    def median_bytes(self) -> float:
        return statistics.median(self.bytes)


def _one_thread() -> None:
    import torch

    # Tiny models train fastest on one thread, and a 2-core box must not oversubscribe.
    torch.set_num_threads(1)


# -- torch.distributed DDP with gloo ------------------------------------------------------------


def _ddp_rank(rank: int, world: int, port: int, seed: int, steps: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from convergent.training.simulation import Digits
    from convergent.training.tasks import digits_mlp64
    from convergent.training.worker import InnerLoop, shard

    _one_thread()
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    data = Digits.load(seed)
    rows = torch.from_numpy(shard(data.y_train.numpy(), rank, world, "iid", seed))
    torch.manual_seed(seed)
    model, _ = digits_mlp64()
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    loop = InnerLoop(ddp, opt, data.x_train[rows], data.y_train[rows], seed=seed * 1000 + rank)
    batches = loop.batches()
    dist.barrier()
    started = time.perf_counter()
    for _ in range(steps):
        idx = torch.from_numpy(next(batches))
        loss = torch.nn.functional.cross_entropy(ddp(loop.x[idx]), loop.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist.barrier()
    wall = time.perf_counter() - started
    if rank == 0:
        Path(out).write_text(json.dumps({"acc": data.accuracy(model), "wall": wall}))
    dist.destroy_process_group()


def ddp(seed: int, steps: int) -> tuple[float, float]:
    """Real DDP with gloo, K processes on 127.0.0.1: (test accuracy, wall seconds)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ddp.json")
        mp.spawn(_ddp_rank, args=(K, port, seed, steps, out), nprocs=K, join=True)
        result = json.loads(Path(out).read_text())
    return float(result["acc"]), float(result["wall"])


# -- worker processes through a real hub --------------------------------------------------------


def processes(
    hub: Any, token: str, name: str, seed: int, setup: Any, timeout: float = 300
) -> tuple[float, float, float, bool]:
    """K ``convergent worker`` processes on one run: (accuracy, bytes/worker, wall s, identical)."""
    import convergent
    from convergent.testing.hub import hub_env
    from convergent.training.simulation import Digits

    data = Digits.load(seed)
    admin = convergent.connect(hub.url(name), hub.admin, user="bench")
    try:
        x = np.concatenate([data.x_train.numpy(), data.x_test.numpy()])
        y = np.concatenate([data.y_train.numpy(), data.y_test.numpy()])
        splits = ["train"] * len(data.x_train) + ["test"] * len(data.x_test)
        admin.dataset.add_many(x.reshape(-1, 8, 8).astype(np.uint8), y, split=splits)
        admin.wait_synced(timeout=60)
        cmd = [
            sys.executable,
            "-m",
            "convergent",
            "worker",
            hub.url(name),
            "--token",
            token,
            "--rounds",
            str(setup.rounds),
            "--inner-steps",
            str(setup.inner_steps),
            "--codec",
            setup.codec,
            "--sharding",
            setup.sharding,
            "--at-round",
            "1",
            "--min-workers",
            str(K),
            "--seed",
            str(seed),
            "--json",
        ]
        procs = [
            subprocess.Popen(
                [*cmd, "--user", f"worker{i}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=hub_env(),
            )
            for i in range(K)
        ]
        reports = []
        try:
            deadline = time.monotonic() + timeout
            for p in procs:
                stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 1))
                if p.returncode != 0:
                    raise RuntimeError(f"a worker failed: {stderr.strip().splitlines()[-3:]}")
                reports.append(json.loads(stdout.strip().splitlines()[-1]))
        finally:
            for p in procs:  # a worker that failed or hangs must not outlive the table
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
        last = setup.rounds
        admin.wait_until(lambda: admin.weights.decided_round() >= last, timeout=60)
        final = admin.weights.fold(last)
        digests = {r["digest"] for r in reports} | {final.digest.hex()}
        from convergent.training.tasks import digits_mlp64
        from convergent.training.worker import load_vector

        model, _ = digits_mlp64()
        load_vector(model, final.model())
        acc = data.accuracy(model)
        nbytes = statistics.mean(r["bytes_sent"] for r in reports)
        wall = max(r["wall_s"] for r in reports)
        return acc, nbytes, wall, len(digests) == 1
    finally:
        admin.close()


# -- the table ----------------------------------------------------------------------------------


def _row(
    t: Table, setting: str, method: str, cell: Cell, sync_bytes: float, note: str = ""
) -> None:
    b = cell.median_bytes()
    fewer = f"{sync_bytes / b:.1f}x" if b else "-"
    ident = f"{sum(cell.identical)}/{len(cell.identical)}"
    t.add(
        setting,
        method,
        cell.accuracy(),
        f"{b / 1e6:.3f}",
        fewer,
        f"{statistics.median(cell.wall):.2f}",
        ident,
        note,
    )


def table7(errors: list[str]) -> Table:
    from convergent.training.simulation import Digits, Setup, simulate, synchronous

    _one_thread()
    quick = SETTINGS.scale < 1
    seeds = list(range(2 if quick else 7))
    real_seeds = seeds[:1] if quick else seeds[:3]
    steps = 128 if quick else 600
    t = Table(
        f"Table 7: decentralized training, digits MLP 4,810 params, K={K}, T={steps} "
        f"steps/worker, medians over {len(seeds)} seeds",
        ["shards", "method", "test acc %", "MB/worker", "vs sync", "wall s", "same", "notes"],
        "llrrrrrl",
    )
    variants: list[tuple[str, dict[str, Any]]] = [
        ("CRDT sim H=8 fp16", {"inner_steps": 8, "codec": "fp16"}),
        ("CRDT sim H=32 fp32", {"inner_steps": 32, "codec": "fp32"}),
        ("CRDT sim H=32 fp16", {"inner_steps": 32, "codec": "fp16"}),
        ("CRDT sim H=32 int8", {"inner_steps": 32, "codec": "int8"}),
    ]
    cells: dict[tuple[str, str], Cell] = {}

    def cell(sharding: str, method: str) -> Cell:
        return cells.setdefault((sharding, method), Cell())

    def attempt(label: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # a broken row must not hide the others
            errors.append(f"table 7 {label}: {type(exc).__name__}: {exc}")

    sync_bytes = 0.0
    for seed in seeds:
        data = Digits.load(seed)
        for sharding in ("iid", "label"):
            base = Setup(workers=K, steps=steps, sharding=sharding, seed=seed)
            progress(f"table 7: seed {seed}, {sharding}: sync DP and the simulated CRDT")
            acc, ring, wall = synchronous(base, data)
            sync_bytes = ring
            cell(sharding, "sync DP (1 process, batch 64)").add(acc, ring, wall)
            for method, kw in variants:
                o = simulate(replace(base, **kw), data)
                cell(sharding, method).add(o.accuracy, o.bytes_per_worker, o.wall_s, o.identical)
        if seed in real_seeds:
            progress(f"table 7: seed {seed}: DDP gloo, {K} processes")
            attempt(
                "DDP",
                lambda s=seed, ring=sync_bytes: cell("iid", f"DDP gloo, {K} processes").add(
                    *_ddp_row(s, steps, ring)
                ),
            )
    hub = None
    if real_seeds:
        from convergent.testing.hub import spawn_hub

        store = Path(tempfile.mkdtemp(prefix="bench-weights-"))
        names = [f"w{s}-{sh}" for s in real_seeds for sh in ("iid", "label")]
        try:
            hub = spawn_hub(store / "hub", *[a for n in names for a in ("--run", n)])
            tokens = {n: hub.token("worker", n) for n in names}  # workers write weights only
            for seed in real_seeds:
                for sharding in ("iid", "label"):
                    progress(f"table 7: seed {seed}, {sharding}: {K} worker processes, a hub")
                    setup = Setup(workers=K, steps=steps, sharding=sharding, seed=seed)

                    def real(
                        seed: int = seed, sharding: str = sharding, setup: Any = setup
                    ) -> None:
                        name = f"w{seed}-{sharding}"
                        acc, nbytes, wall, same = processes(hub, tokens[name], name, seed, setup)
                        cell(sharding, "CRDT processes H=32 fp16").add(acc, nbytes, wall, same)

                    attempt(f"processes {sharding}", real)
        finally:
            if hub is not None:
                hub.stop()
    for sharding, label in (("iid", "IID"), ("label", "label-skewed")):
        for (sh, method), c in cells.items():
            if sh == sharding:
                note = ""
                if method.startswith("CRDT sim"):
                    note = "all-to-all"
                elif method.startswith("CRDT processes"):
                    note = f"{len(c.acc)} seeds; hub fans out"
                elif method.startswith("DDP"):
                    note = f"{len(c.acc)} seeds; bytes computed"
                else:
                    note = "ring all-reduce, computed"
                _row(t, label, method, c, sync_bytes, note)
    t.note("'same': runs whose replicas all ended with bit-identical weights (fold digests).")
    t.note("wall s: sync/DDP/processes are real training time; CRDT sim is the in-process run of")
    t.note("all K workers on one core, codec and network simulation included.")
    _verdicts(t, cells)
    return t


def _ddp_row(seed: int, steps: int, ring: float) -> tuple[float, float, float, bool]:
    acc, wall = ddp(seed, steps)
    return acc, ring, wall, True


def _verdicts(t: Table, cells: dict[tuple[str, str], Cell]) -> None:
    def med(sh: str, m: str) -> float:
        c = cells.get((sh, m))
        return statistics.median(c.acc) * 100 if c and c.acc else float("nan")

    sync = "sync DP (1 process, batch 64)"
    iid_sync = med("iid", sync)
    ring = cells[("iid", sync)].median_bytes() if ("iid", sync) in cells else 0.0
    for m in ("CRDT sim H=32 fp16", "CRDT sim H=32 int8"):
        c = cells.get(("iid", m))
        if c is None or not c.acc:
            continue
        gap = med("iid", m) - iid_sync
        t.note(
            f"IID {m}: {gap:+.1f} points vs sync (target >= -0.5), "
            f"{ring / c.median_bytes():.1f}x fewer bytes (target 16x; 60x with int8)"
        )
    t.note(
        f"label-skewed CRDT sim H=32 fp16: {med('label', 'CRDT sim H=32 fp16'):.1f} % "
        f"(target >= 94.5; sync DP {med('label', sync):.1f} %)"
    )
    same = all(all(c.identical) for c in cells.values())
    t.note(f"bit-identical weights on every replica in every run: {'yes' if same else 'NO'}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.weights [--quick]``: this table alone."""
    SETTINGS.scale = 0.1 if argv and "--quick" in argv else 1.0
    errors: list[str] = []
    table7(errors).print()
    for e in errors:
        print(f"ERROR in {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
