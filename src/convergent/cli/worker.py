"""``convergent worker RUN_URL``: one decentralized-training worker of a run on a hub.

Workers train one model together without a parameter server: each joins the run's weights,
trains H inner steps on its shard of the live dataset, publishes its quantized pseudo-
gradient through the hub, and reads the merged model once every worker's slot of the round
is filled (DESIGN.md section 5). Start as many as you like, on as many machines.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from convergent.cli.client import open_live


def add_worker_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``worker`` subcommand and its options."""
    p = sub.add_parser(
        "worker",
        parents=[common],
        help="train with other workers, without a parameter server (the weights CRDT)",
        description=(
            "Join a run's decentralized training: train --inner-steps steps per round on "
            "this worker's shard of the live dataset, publish the quantized pseudo-gradient, "
            "wait until every worker's contribution to the round has arrived, and read the "
            "merged model, bit-identical on every replica. After --skip-timeout seconds a "
            "missing worker is skipped for the round; one that misses two rounds is dropped."
        ),
    )
    p.add_argument("run_url", nargs="?", default=None, help="the run (default: --url)")
    p.add_argument("--task", default="digits-mlp64", help="digits-mlp64, digits-mlp, or module:fn")
    p.add_argument("--rounds", type=int, default=20, help="rounds to contribute to")
    p.add_argument("--inner-steps", type=int, default=32, help="H: steps between merges")
    p.add_argument("--batch-size", type=int, default=16, help="per step (the run's config wins)")
    p.add_argument("--codec", choices=["fp32", "fp16", "int8"], default="fp16")
    p.add_argument("--sharding", choices=["iid", "label"], default="iid")
    p.add_argument("--split", default="train", help="the dataset split to train on")
    p.add_argument("--at-round", type=int, default=None, help="join at this round")
    p.add_argument("--min-workers", type=int, default=1, help="wait for this many to start")
    p.add_argument("--skip-timeout", type=float, default=60.0, help="seconds (default: 60)")
    p.add_argument("--seed", type=int, default=0, help="model init and shard seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")


def cmd_worker(args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
    """Run one worker until it has contributed ``--rounds`` rounds; print what it did."""
    import torch

    from convergent.training.tasks import load_task
    from convergent.training.worker import train_worker

    torch.set_num_threads(args.threads)
    url = args.run_url or args.url
    with open_live(url, args.token, args.user or "worker") as run:
        torch.manual_seed(args.seed)  # workers of one group start from the same weights
        model, optimizer = load_task(args.task)()
        report = train_worker(
            run,
            model,
            optimizer,
            rounds=args.rounds,
            inner_steps=args.inner_steps,
            batch_size=args.batch_size,
            codec=args.codec,
            sharding=args.sharding,
            split=args.split,
            at_round=args.at_round,
            min_workers=args.min_workers,
            skip_timeout=args.skip_timeout,
            seed=args.seed,
            out=None if args.json else out,
        )
        wait_synced = getattr(run, "wait_synced", None)
        if wait_synced is not None:  # a hub run: the last contribution reaches everyone
            wait_synced(timeout=30)
    summary = {
        "worker": f"{report.worker:016x}",
        "rounds": len(report.rounds),
        "final_round": report.final_round,
        "digest": report.digest.hex(),
        "bytes_sent": report.bytes_sent,
        "wall_s": round(report.wall_s, 3),
        "waited_s": round(sum(r.waited_s for r in report.rounds), 3),
        "skipped": sum(len(r.skipped) for r in report.rounds),
        "left_early": report.left_early,
    }
    if args.json:
        print(json.dumps(summary), file=out, flush=True)
    else:
        print(
            f"worker {summary['worker']}: {summary['rounds']} rounds, model of round "
            f"{report.final_round} {report.digest.hex()[:16]}, sent {report.bytes_sent:,} "
            f"bytes in {report.wall_s:.1f} s",
            file=out,
            flush=True,
        )
