"""The commands people use around a live run: ``train``, ``set``, ``get``, ``config``,
``status``, ``pause``/``resume``/``stop``/``checkpoint`` (against a hub URL)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

import convergent
from convergent.errors import ConvergentError
from convergent.sync.client import LiveRun

DEFAULT_URL = "http://127.0.0.1:7433/runs/digits"


def token_of(given: str | None) -> str:
    token = given or os.environ.get("CONVERGENT_TOKEN")
    if not token:
        raise ConvergentError("no token: pass --token or set CONVERGENT_TOKEN")
    return token


def open_live(url: str, token: str | None, user: str | None = None) -> LiveRun:
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


def cmd_set(url: str, token: str | None, key: str, value: str, out: TextIO) -> None:
    with open_live(url, token) as run:
        run.config[key] = parse_value(value)
        run.wait_synced(10)
        print(f"{key} = {run.config[key]!r}", file=out)


def cmd_get(url: str, token: str | None, key: str | None, as_json: bool, out: TextIO) -> None:
    with open_live(url, token) as run:
        values = run.config.to_dict() if key is None else {key: run.config[key]}
        if as_json:
            print(json.dumps(values), file=out)
        else:
            for k, v in values.items():
                print(f"{k} = {v!r}", file=out)


def cmd_config(url: str, token: str | None, as_json: bool, out: TextIO) -> None:
    with open_live(url, token) as run:
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
        width = max((len(r["key"]) for r in rows), default=3)
        for r in rows:
            line = f"{r['key']:<{width}}  {r['value']!r:<12} {r['rule']}"
            if r["conflict"]:
                both = ", ".join(f"{w['value']!r} by {w['by']}" for w in r["conflict"])
                line += f"   CONFLICT: {both}"
            print(line, file=out)


def cmd_status(url: str, token: str | None, as_json: bool, out: TextIO) -> None:
    with open_live(url, token) as run:
        info: dict[str, Any] = {
            "run": run.id,
            "state": run.control.state,
            "samples": len(run.dataset),
            "ops": run.version.ops,
            "config": run.config.to_dict(),
            "metrics": {m: run.metrics(m).last() for m in run.metric_names()},
            "last_step": max(
                (int(run.metrics(m).step.max()) for m in run.metric_names() if len(run.metrics(m))),
                default=None,
            ),
        }
        if as_json:
            print(json.dumps(info, default=list), file=out)
            return
        print(
            f"run {info['run']}: {info['state']}, {info['samples']:,} samples, "
            f"step {info['last_step']}",
            file=out,
        )
        for m, v in info["metrics"].items():
            print(f"  {m} = {v}", file=out)


def cmd_control(url: str, token: str | None, action: str, out: TextIO) -> None:
    with open_live(url, token) as run:
        if action == "checkpoint":
            run.control.checkpoint_now()
        else:
            {"pause": run.control.pause, "resume": run.control.resume, "stop": run.control.stop}[
                action
            ]()
        run.wait_synced(10)
        print(f"{action}: sent (the run is {run.control.state})", file=out)


def cmd_train(
    url: str,
    token: str | None,
    task: str,
    steps: int | None,
    resume: bool,
    out: TextIO = sys.stdout,
) -> None:
    from convergent.training.tasks import ensure_digits, load_task, train

    with open_live(url, token, user="trainer") as run:
        added = ensure_digits(run) if task.startswith("digits") else 0
        if added:
            print(f"imported {added:,} digits (20 % for validation)", file=out)
        train(run, load_task(task), steps=steps, out=out, resume=resume)
        run.wait_synced(30)


def cmd_history(
    url: str,
    token: str | None,
    part: str | None,
    key: str | None,
    limit: int,
    as_json: bool,
    out: TextIO,
) -> None:
    with open_live(url, token) as run:
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
        for e in entries:
            print(e, file=out)


def cmd_log(
    url: str, token: str | None, names: list[str], tail: int, as_json: bool, out: TextIO
) -> None:
    with open_live(url, token) as run:
        names = names or run.metric_names()
        data = {}
        for name in names:
            s = run.metrics(name)
            data[name] = list(zip(s.step[-tail:].tolist(), s.value[-tail:].tolist(), strict=True))
        if as_json:
            print(json.dumps(data), file=out)
            return
        for name, points in data.items():
            shown = "  ".join(f"{step}:{value:.4g}" for step, value in points)
            print(f"{name:<14} {shown}", file=out)


def cmd_notes(url: str, token: str | None, add: str | None, as_json: bool, out: TextIO) -> None:
    with open_live(url, token) as run:
        if add is not None:
            run.notes.add(add)
            run.wait_synced(10)
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
        for c in notes:
            mark = "x" if c.resolved else " "
            print(f"[{mark}] {c.id}  {run.members.name_of(c.author)}: {c.text}", file=out)


def cmd_data(
    url: str, token: str | None, action: str, args: list[str], as_json: bool, out: TextIO
) -> None:
    with open_live(url, token) as run:
        d = run.dataset
        if action == "ls":
            counts = {str(k): v for k, v in d.counts().items()}
            splits = {s: len(d.ids(s)) for s in ("train", "val", "test")}
            if as_json:
                print(json.dumps({"samples": len(d), "labels": counts, "splits": splits}), file=out)
            else:
                print(f"{len(d):,} samples; splits {splits}; per label {counts}", file=out)
            return
        if action == "import":
            if len(args) != 1:
                raise ConvergentError(
                    "data import takes one source: digits, iris, a .csv file or a folder"
                )
            source = args[0]
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
        run.wait_synced(30)
        print(f"{action}: {len(ids):,} samples; the run now has {len(d):,}", file=out)
