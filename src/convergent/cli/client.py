"""The commands people use around a live run: ``train``, ``set``, ``get``, ``config``,
``status``, ``pause``/``resume``/``stop``/``checkpoint``, ``history``, ``log``, ``notes``,
``data`` (against a hub URL or a local run file).

Read commands print rich tables (plain text when piped, see `convergent.cli.output`) or,
with ``--json``, one JSON document for scripts.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections import Counter
from typing import Any, TextIO

from rich.text import Text

import convergent
from convergent.cli.output import (
    TrainingProgress,
    busy,
    console_for,
    emit,
    new_table,
    rule_of,
    show,
    wait_synced,
    when,
)
from convergent.errors import ConvergentError
from convergent.run import Run

DEFAULT_URL = "http://127.0.0.1:7433/runs/digits"


def token_of(given: str | None) -> str:
    token = given or os.environ.get("CONVERGENT_TOKEN")
    if not token:
        raise ConvergentError("no token: pass --token or set CONVERGENT_TOKEN")
    return token


def is_hub_url(url: str) -> bool:
    return url.startswith(("http://", "https://", "ws://", "wss://"))


def user_of(given: str | None) -> str:
    """Who edits: ``--user``, else ``CONVERGENT_USER``, else the login name."""
    return given or os.environ.get("CONVERGENT_USER") or getpass.getuser()


def open_live(url: str, token: str | None, user: str | None = None) -> Run:
    """The run at ``url``: a hub's run (``http://HOST:PORT/runs/NAME``, kept in sync), or a
    local run file (any other text is a path; created if missing).

    ``user`` names whoever edits through this replica; commands that only read pass none
    (a local file is one replica: naming a reader would re-attribute its past edits).
    """
    if not is_hub_url(url):
        if user is None and not os.path.exists(url):
            raise ConvergentError(
                f"no run file at {url} (and no hub URL: http://HOST:PORT/runs/NAME)"
            )
        try:
            return convergent.open(url, user=user)
        except OSError as err:
            raise ConvergentError(f"cannot open the run file {url}: {err}") from None
    try:
        return convergent.connect(url, token_of(token), user=user, wait=10)
    except TimeoutError as err:
        raise ConvergentError(f"cannot reach {url}: {err}") from None


def parse_value(text: str) -> Any:
    """A value typed on the command line: JSON if it parses (0.02, 64, true, [0.9, 0.99]),
    else the text itself (adam)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def cmd_set(
    url: str, token: str | None, key: str, value: str, out: TextIO, user: str | None = None
) -> None:
    with open_live(url, token, user_of(user)) as run:
        run.config[key] = parse_value(value)
        wait_synced(run, console_for(out), 10)
        print(f"{key} = {run.config[key]!r}", file=out)


def cmd_get(url: str, token: str | None, key: str | None, as_json: bool, out: TextIO) -> None:
    with open_live(url, token, None) as run:
        values = run.config.to_dict() if key is None else {key: run.config[key]}
        if as_json:
            print(json.dumps(values), file=out)
        else:
            for k, v in values.items():
                print(f"{k} = {v!r}", file=out)


def cmd_config(url: str, token: str | None, as_json: bool, out: TextIO) -> None:
    with open_live(url, token, None) as run:
        conflicts = {c.key: c for c in run.config.conflicts()}
        rows: list[dict[str, Any]] = []
        for key, value in run.config.to_dict().items():
            c = conflicts.get(key)
            rows.append(
                {
                    "key": key,
                    "value": value,
                    "rule": run.schema[key].kind,
                    "conflict": None
                    if c is None
                    else [
                        {
                            "value": w.value,
                            "by": run.members.name_of(w.author),
                            "time": w.time.isoformat(),
                        }
                        for w in c.values
                    ],
                }
            )
        if as_json:
            print(json.dumps(rows, default=list), file=out)
            return
        # What a trainer applied, and at which step: the last change of each key that a
        # trainer recorded (requested and in effect are different facts).
        in_effect: dict[str, tuple[Any, int]] = {}
        for e in run.history("config"):
            if e.key is not None and e.step is not None:
                in_effect[e.key] = (e.new, e.step)
        table = new_table("key", "requested", "in effect", "rule", "conflict")
        for r in rows:
            requested = Text(show(r["value"]))
            effect = Text("-", style="dim")
            if r["key"] in in_effect:
                value, step = in_effect[r["key"]]
                effect = Text(f"{show(value)} since step {step:,}")
                if show(value) != show(r["value"]):
                    requested.append(" (pending)", style="yellow")
            conflict = Text("", style="bold red")
            c = conflicts.get(r["key"])
            for i, w in enumerate(() if c is None else c.values):
                by = run.members.name_of(w.author)
                conflict.append(("\n" if i else "") + f"{show(w.value)} by {by} at {when(w.time)}")
            table.add_row(
                Text(r["key"], style="bold red" if r["conflict"] else "bold"),
                requested,
                effect,
                rule_of(run.schema[r["key"]]),
                conflict,
            )
        console = console_for(out)
        emit(console, table)
        if conflicts:
            emit(
                console,
                f"{len(conflicts)} key(s) in conflict: everyone reads the requested value "
                "until someone sets the key again",
                style="red",
            )


def cmd_status(url: str, token: str | None, as_json: bool, out: TextIO) -> None:
    with open_live(url, token, None) as run:
        series = {m: run.metrics(m) for m in run.metric_names()}
        info: dict[str, Any] = {
            "run": run.id,
            "state": run.control.state,
            "samples": len(run.dataset),
            "ops": run.version.ops,
            "config": run.config.to_dict(),
            "metrics": {m: s.last() for m, s in series.items()},
            "last_step": max(
                (int(s.step.max()) for s in series.values() if len(s)),
                default=None,
            ),
        }
        if as_json:
            print(json.dumps(info, default=list), file=out)
            return
        console = console_for(out)
        step = "-" if info["last_step"] is None else f"{info['last_step']:,}"
        head = Text.assemble(
            ("run ", "dim"),
            (str(info["run"]), "bold"),
            "  ",
            (str(info["state"]), STATE_STYLE.get(str(info["state"]), "")),
            ("  step ", "dim"),
            step,
            ("  samples ", "dim"),
            f"{info['samples']:,}",
            ("  ops ", "dim"),
            f"{info['ops']:,}",
        )
        emit(console, head)
        if series:
            table = new_table("metric", "last", "at step", numeric=("last", "at step"))
            for name, s in series.items():
                last = s.last()
                table.add_row(
                    name,
                    "-" if last is None else f"{last:.4g}",
                    f"{int(s.step[-1]):,}" if len(s) else "-",
                )
            emit(console, table)


STATE_STYLE = {"running": "bold green", "paused": "bold yellow", "stopped": "bold red"}


def cmd_control(
    url: str, token: str | None, action: str, out: TextIO, user: str | None = None
) -> None:
    with open_live(url, token, user_of(user)) as run:
        if action == "checkpoint":
            run.control.checkpoint_now()
        else:
            {"pause": run.control.pause, "resume": run.control.resume, "stop": run.control.stop}[
                action
            ]()
        wait_synced(run, console_for(out), 10)
        print(f"{action}: sent (the run is {run.control.state})", file=out)


def cmd_train(
    url: str,
    token: str | None,
    task: str,
    steps: int | None,
    resume: bool,
    out: TextIO = sys.stdout,
    user: str | None = None,
) -> None:
    from convergent.training.tasks import ensure_digits, load_task, train

    console = console_for(out)
    with open_live(url, token, user or "trainer") as run:
        if task.startswith("digits"):
            with busy(console, "importing the digits"):
                added = ensure_digits(run)
            if added:
                print(f"imported {added:,} digits (20 % for validation)", file=out)
        fn = load_task(task)
        if not console.is_terminal:
            # A log file or a pipe: the trainer's report line every 100 steps, nothing redrawn.
            train(run, fn, steps=steps, out=out, resume=resume)
        else:
            latest = run.checkpoints.latest() if resume else None
            start = 0 if latest is None else latest.step
            with TrainingProgress(console, steps, start) as progress:
                train(run, progress.watch(fn), steps=steps, out=progress.out, resume=resume)
        wait_synced(run, console, 30)


def cmd_history(
    url: str,
    token: str | None,
    part: str | None,
    key: str | None,
    limit: int,
    as_json: bool,
    out: TextIO,
) -> None:
    with open_live(url, token, None) as run:
        entries = run.history(part, key, limit=limit)
        if as_json:
            rows = [
                {
                    "time": e.time.isoformat(),
                    "user": e.user,
                    "part": e.part,
                    "key": e.key,
                    "old": e.old,
                    "new": e.new,
                    "step": e.step,
                    "what": e.what,
                }
                for e in entries
            ]
            print(json.dumps(rows, default=list), file=out)
            return
        table = new_table("time (UTC)", "user", "part", "change", "in effect at step")
        table.columns[-1].justify = "right"
        for e in entries:
            table.add_row(
                Text(when(e.time), style="dim"),
                Text(e.user, style="bold"),
                e.part,
                e.what,
                "" if e.step is None else f"{e.step:,}",
            )
        emit(console_for(out), table)


def cmd_log(
    url: str, token: str | None, names: list[str], tail: int, as_json: bool, out: TextIO
) -> None:
    with open_live(url, token, None) as run:
        names = names or run.metric_names()
        data = {}
        for name in names:
            s = run.metrics(name)
            data[name] = list(zip(s.step[-tail:].tolist(), s.value[-tail:].tolist(), strict=True))
        if as_json:
            print(json.dumps(data), file=out)
            return
        table = new_table("metric", "step", "value", numeric=("step", "value"))
        for name, points in data.items():
            for i, (step, value) in enumerate(points):
                table.add_row(
                    Text(name, style="bold"),
                    f"{step:,}",
                    f"{value:.4g}",
                    end_section=i == len(points) - 1,
                )
            if not points:
                table.add_row(Text(name, style="bold"), "-", "no points yet", end_section=True)
        emit(console_for(out), table)


def cmd_notes(
    url: str,
    token: str | None,
    add: str | None,
    as_json: bool,
    out: TextIO,
    user: str | None = None,
) -> None:
    with open_live(url, token, None if add is None else user_of(user)) as run:
        console = console_for(out)
        if add is not None:
            run.notes.add(add)
            wait_synced(run, console, 10)
        notes = run.notes.list()
        if as_json:
            print(
                json.dumps(
                    [
                        {
                            "id": c.id,
                            "text": c.text,
                            "by": run.members.name_of(c.author),
                            "resolved": c.resolved,
                        }
                        for c in notes
                    ]
                ),
                file=out,
            )
            return
        table = new_table("id", "time (UTC)", "by", "note", "resolved")
        for c in notes:
            table.add_row(
                Text(c.id, style="dim"),
                when(c.created),
                Text(run.members.name_of(c.author), style="bold"),
                Text(c.text, style="dim" if c.resolved else ""),
                Text("yes", style="green") if c.resolved else "",
            )
        emit(console, table)


SPLITS = ("train", "val", "test")


def cmd_data(
    url: str,
    token: str | None,
    action: str,
    args: list[str],
    as_json: bool,
    out: TextIO,
    user: str | None = None,
) -> None:
    console = console_for(out)
    with open_live(url, token, None if action == "ls" else user_of(user)) as run:
        d = run.dataset
        if action == "ls":
            counts = {str(k): v for k, v in d.counts().items()}
            splits = {s: len(d.ids(s)) for s in SPLITS}
            if as_json:
                print(json.dumps({"samples": len(d), "labels": counts, "splits": splits}), file=out)
                return
            per_split = {s: Counter(d.labels(s).tolist()) for s in SPLITS}
            table = new_table("label", *SPLITS, "total", numeric=(*SPLITS, "total"))
            labels = sorted(d.counts().items(), key=lambda kv: (type(kv[0]).__name__, kv[0]))
            for i, (label, n) in enumerate(labels):
                table.add_row(
                    Text("(none)" if label is None else str(label), style="bold"),
                    *(f"{per_split[s][label]:,}" for s in SPLITS),
                    f"{n:,}",
                    end_section=i == len(labels) - 1,
                )
            table.add_row(
                Text("all", style="bold"), *(f"{splits[s]:,}" for s in SPLITS), f"{len(d):,}"
            )
            emit(console, f"{len(d):,} samples, {len(counts):,} labels")
            emit(console, table)
            return
        if action == "import":
            if len(args) != 1:
                raise ConvergentError(
                    "data import takes one source: digits, iris, a .csv file or a folder"
                )
            source = args[0]
            with busy(console, f"importing {source}"):
                if source in ("digits", "iris", "wine", "breast_cancer"):
                    ids = d.from_sklearn(source)
                elif source.endswith(".csv"):
                    ids = d.from_csv(source)
                else:
                    ids = d.from_folder(source)
        elif action == "remove":
            d.remove(args)
            ids = args  # type: ignore[assignment]
        elif action == "relabel":
            if len(args) != 2:
                raise ConvergentError("data relabel takes a sample id and a label")
            d.relabel(args[0], parse_value(args[1]))
            ids = [args[0]]  # type: ignore[list-item]
        else:
            raise ConvergentError(f"unknown data action {action!r}")
        wait_synced(run, console, 30)
        print(f"{action}: {len(ids):,} samples; the run now has {len(d):,}", file=out)
