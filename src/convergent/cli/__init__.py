"""The ``convergent`` command line.

``convergent serve`` runs a hub and ``convergent token create`` hands out access tokens;
``convergent train`` trains on a run while ``set``, ``get``, ``config``, ``status``,
``pause``/``resume``/``stop``/``checkpoint``, ``history``, ``log``, ``notes`` and ``data``
change and read it; ``convergent worker`` trains one model with other workers, without a
parameter server (the weights CRDT); ``convergent demo`` starts a hub and a trainer on the
digits (with ``--offline``: two replicas of one run merging without a hub).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from convergent import __version__
from convergent.cli.client import (
    DEFAULT_URL,
    cmd_config,
    cmd_control,
    cmd_data,
    cmd_get,
    cmd_history,
    cmd_log,
    cmd_notes,
    cmd_set,
    cmd_status,
    cmd_train,
)
from convergent.cli.demo import run_demo
from convergent.cli.hub import DEFAULT_PORT, DEFAULT_STORE, create_token, data_folder, serve
from convergent.cli.output import console_for, emit, new_table, when
from convergent.cli.worker import add_worker_parser, cmd_worker
from convergent.errors import ConvergentError
from convergent.server.hub import DEFAULT_QUEUE_MIB
from convergent.server.tokens import TokenStore
from convergent.sync.protocol import DEFAULT_MAX_FRAME, Role


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convergent`` script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="convergent",
        description="Real-time collaborative model training on CRDTs.",
    )
    parser.add_argument("--version", action="version", version=f"convergent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="a live run: a hub, the digits, a trainer, and the commands to change it",
        description=(
            "Start a hub on the embedded SQLite store, create the digits run and train an MLP "
            "on it, printing the commands to change it from a second terminal. With "
            "--offline: two replicas of one run, each in its own file, edit while offline, "
            "exchange what the other lacks as bytes, and show the surfaced conflicts."
        ),
    )
    demo.add_argument(
        "--dir", type=Path, default=None, help="--offline: keep the two run files here"
    )
    srv = sub.add_parser(
        "serve",
        help="run a hub: runs over WebSocket and HTTP, stored in SQLite",
        description=(
            "Serve runs to clients (convergent.connect, the dashboard) over WebSocket, with a "
            "REST API. Runs and tokens live in the store folder; the admin token is printed "
            "on first start."
        ),
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    srv.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="data folder, or sqlite:///PATH (default: %(default)s)",
    )
    srv.add_argument(
        "--run", action="append", default=[], metavar="NAME", help="create this run if missing"
    )
    srv.add_argument(
        "--max-frame",
        type=int,
        default=DEFAULT_MAX_FRAME,
        help="largest frame accepted, in bytes (default: %(default)s)",
    )
    srv.add_argument(
        "--durability",
        choices=["normal", "full"],
        default="normal",
        help="normal: an acknowledged edit survives a killed hub; full: also a power loss "
        "(an fsync per commit). Default: %(default)s",
    )
    srv.add_argument(
        "--queue-mib",
        type=float,
        default=DEFAULT_QUEUE_MIB,
        metavar="MIB",
        help="what a slow client may have waiting, in MiB, before it is told to reconnect "
        "and catch up (default: %(default)s)",
    )
    tok = sub.add_parser("token", help="hand out access tokens")
    tok_sub = tok.add_subparsers(dest="token_command", metavar="ACTION")
    create = tok_sub.add_parser(
        "create", help="create a token for one run (or every run: --run '*')"
    )
    create.add_argument("--run", required=True, help="the run's name, or '*' for every run")
    create.add_argument(
        "--role", required=True, choices=[r.label for r in Role], help="what the token allows"
    )
    create.add_argument("--store", default=DEFAULT_STORE, help="the hub's data folder")
    revoke = tok_sub.add_parser("revoke", help="revoke a token (its connections stay open)")
    revoke.add_argument("token")
    revoke.add_argument("--store", default=DEFAULT_STORE, help="the hub's data folder")
    listing = tok_sub.add_parser("list", help="the tokens' grants (tokens are stored hashed)")
    listing.add_argument("--store", default=DEFAULT_STORE, help="the hub's data folder")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="the run: a hub URL, or the path of a local run file (default: %(default)s)",
    )
    common.add_argument(
        "--user", default=None, help="who edits (default: CONVERGENT_USER, else your login)"
    )
    common.add_argument("--token", default=None, help="access token (or CONVERGENT_TOKEN)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    train = sub.add_parser(
        "train",
        parents=[common],
        help="train on a run, applying everyone's edits at step boundaries",
        description=(
            "Train a built-in task (digits-mlp, digits-cnn) or your own (module:function "
            "returning (model, optimizer)) on the run's live dataset. The digits are "
            "imported if the run has no samples."
        ),
    )
    train.add_argument("--task", default="digits-mlp", help="digits-mlp, digits-cnn or module:fn")
    train.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    train.add_argument("--resume", action="store_true", help="start from the latest checkpoint")
    add_worker_parser(sub, common)
    setp = sub.add_parser("set", parents=[common], help="set a config key: convergent set lr 0.02")
    setp.add_argument("key")
    setp.add_argument("value", help="a JSON value (0.02, 64, true, [0.9, 0.99]) or text")
    getp = sub.add_parser("get", parents=[common], help="read config values")
    getp.add_argument("key", nargs="?", default=None)
    sub.add_parser(
        "config",
        parents=[common],
        help="the config: requested and in effect (at which step), conflicts, rules",
    )
    sub.add_parser("status", parents=[common], help="the run's state, size and last metrics")
    for action, text in (
        ("pause", "pause the trainers at their next step"),
        ("resume", "resume paused trainers"),
        ("stop", "stop the trainers"),
        ("checkpoint", "ask the trainers to save a checkpoint now"),
    ):
        sub.add_parser(action, parents=[common], help=text)
    hist = sub.add_parser("history", parents=[common], help="who changed what, when, at which step")
    hist.add_argument("part", nargs="?", default=None, help="config, dataset, notes, control, ...")
    hist.add_argument("key", nargs="?", default=None, help="a config key, a sample id, ...")
    hist.add_argument("--limit", type=int, default=50, help="the last N entries")
    logp = sub.add_parser("log", parents=[common], help="the latest metric points")
    logp.add_argument("names", nargs="*", help="metrics to show (default: all)")
    logp.add_argument("--tail", type=int, default=5, help="points per metric")
    notes = sub.add_parser("notes", parents=[common], help="the run's comments")
    notes.add_argument("--add", default=None, metavar="TEXT", help="add a comment")
    data = sub.add_parser("data", parents=[common], help="the run's dataset")
    data.add_argument("action", choices=["ls", "import", "remove", "relabel"])
    data.add_argument(
        "args",
        nargs="*",
        help="import: digits|iris|FILE.csv|FOLDER; remove: IDS...; relabel: ID LABEL",
    )
    demo.add_argument(
        "--offline", action="store_true", help="the two-offline-replicas demo (no hub, no torch)"
    )
    demo.add_argument("--store", default=DEFAULT_STORE, help="the hub's data folder")
    demo.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        if args.command == "demo":
            if args.offline:
                run_demo(args.dir, out=out)
            else:
                from convergent.cli.live_demo import run_live_demo

                run_live_demo(args.store, args.steps, out)
            return 0
        if args.command == "train":
            cmd_train(args.url, args.token, args.task, args.steps, args.resume, out, user=args.user)
            return 0
        if args.command == "worker":
            cmd_worker(args, out)
            return 0
        if args.command == "set":
            cmd_set(args.url, args.token, args.key, args.value, out, user=args.user)
            return 0
        if args.command == "get":
            cmd_get(args.url, args.token, args.key, args.json, out)
            return 0
        if args.command == "config":
            cmd_config(args.url, args.token, args.json, out)
            return 0
        if args.command == "status":
            cmd_status(args.url, args.token, args.json, out)
            return 0
        if args.command == "history":
            cmd_history(
                args.url,
                args.token,
                args.part,
                args.key,
                args.limit,
                args.json,
                out,
            )
            return 0
        if args.command == "log":
            cmd_log(args.url, args.token, args.names, args.tail, args.json, out)
            return 0
        if args.command == "notes":
            cmd_notes(args.url, args.token, args.add, args.json, out, user=args.user)
            return 0
        if args.command == "data":
            cmd_data(args.url, args.token, args.action, args.args, args.json, out, user=args.user)
            return 0
        if args.command in ("pause", "resume", "stop", "checkpoint"):
            cmd_control(args.url, args.token, args.command, out, user=args.user)
            return 0
        if args.command == "serve":
            if args.max_frame < 1024:
                parser.error("--max-frame must be at least 1024 bytes")
            if not 0 < args.queue_mib < 2**30:
                parser.error("--queue-mib must be a number of MiB above 0")
            serve(
                args.host,
                args.port,
                args.store,
                args.run,
                args.max_frame,
                durability=args.durability,
                queue_mib=args.queue_mib,
            )
            return 0
        if args.command == "token" and args.token_command == "create":
            print(create_token(args.store, args.run, args.role))
            return 0
        if args.command == "token" and args.token_command in ("revoke", "list"):
            tokens = TokenStore(data_folder(args.store) / "tokens.sqlite")
            try:
                if args.token_command == "revoke":
                    if not tokens.revoke(args.token):
                        raise ConvergentError("no such token")
                    print("revoked", file=out)
                else:
                    table = new_table("token", "run", "role", "created (UTC)", "note")
                    for t in tokens.list():
                        created = datetime.fromtimestamp(t.created, UTC)
                        table.add_row(f"{t.prefix}...", t.run, t.role.label, when(created), t.note)
                    emit(console_for(out), table)
            finally:
                tokens.close()
            return 0
    except (ConvergentError, ValueError, KeyError, TimeoutError) as err:
        print(f"convergent: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 0
