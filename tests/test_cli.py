"""The command line against a real hub: set/get/config/status/control and train, with the
errors people meet; the rich tables (as plain text when captured, as drawn on a terminal) and
the training progress bar; and `convergent demo` end to end (hub + trainer on the digits)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

import convergent
from convergent.run import Float
from test_hub import SRC, HubProcess, start_hub

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cli(
    *args: str, token: str | None = None, timeout: float = 120, terminal: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``convergent ARGS``; output is captured, so plain text unless ``terminal``, which
    makes rich draw as on a 120-column colour terminal (FORCE_COLOR)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    for name in ("CONVERGENT_TOKEN", "FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "NO_COLOR"):
        env.pop(name, None)
    if terminal:
        env.update(FORCE_COLOR="1", COLUMNS="120")
    if token is not None:
        env["CONVERGENT_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "convergent", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    h = start_hub(tmp_path / "hub")
    yield h
    h.proc.kill()
    h.proc.wait(timeout=10)


def test_people_change_a_run_from_the_command_line(hub: HubProcess) -> None:
    url = ["--url", hub.url()]
    trained = cli("train", *url, "--steps", "30", token=hub.admin)
    assert trained.returncode == 0, trained.stderr
    assert "imported 1,797 digits" in trained.stdout
    assert "\x1b" not in trained.stdout and "\r" not in trained.stdout  # no bar in a log
    out = cli("set", *url, "lr", "0.02", token=hub.admin)
    assert out.returncode == 0 and out.stdout.strip() == "lr = 0.02"
    bad = cli("set", *url, "lr", "20", token=hub.admin)
    assert bad.returncode == 2 and "config key 'lr': 20 is above the maximum 10.0" in bad.stderr
    typo = cli("set", *url, "lrr", "0.1", token=hub.admin)
    assert typo.returncode == 2 and "did you mean 'lr'" in typo.stderr
    got = cli("get", *url, "--json", token=hub.admin)
    assert json.loads(got.stdout)["lr"] == 0.02
    table = cli("config", *url, token=hub.admin).stdout.splitlines()
    assert table[0].split() == ["key", "requested", "in", "effect", "rule", "conflict"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert rows["lr"] == ["0.02", "-", "float", "in", "[0.0,", "10.0]"]  # nothing in conflict
    assert rows["batch_size"] == ["32", "-", "int", "in", "[1,", "65536]"]
    assert rows["schedule"] == ["'constant'", "-", "one", "of", "'constant',", "'cosine'"]
    for action, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        done = cli(action, *url, token=hub.admin)
        assert done.returncode == 0 and f"the run is {state}" in done.stdout
    status = json.loads(cli("status", *url, "--json", token=hub.admin).stdout)
    assert status["state"] == "stopped" and status["samples"] == 1797
    assert status["last_step"] == 30
    history = convergent.connect(hub.url(), hub.admin).history("config", "lr")
    assert history[-1].new == 0.02
    lines = cli("history", *url, "config", "lr", token=hub.admin).stdout.splitlines()
    assert lines[0].split() == [
        "time",
        "(UTC)",
        "user",
        "part",
        "change",
        "in",
        "effect",
        "at",
        "step",
    ]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\w+ +config +lr: 0\.05 → 0\.02", lines[-1]
    )
    metrics = json.loads(cli("log", *url, "loss", "--json", token=hub.admin).stdout)
    assert [step for step, _ in metrics["loss"]] == [10, 20, 30]  # logged every 10 steps
    cli("notes", *url, "--add", "lr looks high", token=hub.admin)
    notes = cli("notes", *url, token=hub.admin).stdout.splitlines()
    assert re.fullmatch(
        r"[0-9a-f]{16} +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\w+ +lr looks high", notes[-1]
    )
    listing = json.loads(cli("data", *url, "ls", "--json", token=hub.admin).stdout)
    assert listing["samples"] == 1797 and sum(listing["splits"].values()) == 1797
    shown = cli("data", *url, "ls", token=hub.admin).stdout.splitlines()
    assert shown[0] == "1,797 samples, 10 labels"
    assert shown[1].split() == ["label", "train", "val", "test", "total"]
    rows = {r[0]: r[1:] for r in (line.split() for line in shown[3:]) if r}
    assert rows["all"] == [f"{listing['splits'][s]:,}" for s in ("train", "val", "test")] + [
        "1,797"
    ]
    assert {k: int(v[-1]) for k, v in rows.items() if k != "all"} == listing["labels"]
    missing = cli("data", *url, "relabel", "0000000000000001", "3", token=hub.admin)
    assert missing.returncode == 2 and "no sample 0000000000000001" in missing.stderr
    no_token = cli("status", *url)
    assert no_token.returncode == 2 and "no token" in no_token.stderr
    wrong = cli("status", *url, token="cvg_wrong")
    assert wrong.returncode == 2 and "token" in wrong.stderr


def test_make_demo_trains_a_model_people_can_change(tmp_path: Path) -> None:
    out = cli("demo", "--store", str(tmp_path / "data"), "--steps", "300", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "convergent set lr 0.01" in out.stdout or "set --url" in out.stdout
    dashboard = r"Open the dashboard: +http://127\.0\.0\.1:\d+/runs/digits#token=cvg_"
    assert re.search(dashboard, out.stdout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("step")]
    assert len(lines) == 3  # progress every 100 steps
    accuracy = float(lines[-1].split("val_acc")[1].split()[0])
    assert accuracy > 0.8  # the digits MLP learns


def test_tokens_are_created_listed_and_revoked(hub: HubProcess) -> None:
    token = hub.token("viewer")
    assert hub.get("/api/runs/digits", token)["name"] == "digits"
    listed = cli("token", "list", "--store", str(hub.store)).stdout
    assert listed.splitlines()[0].split() == ["token", "run", "role", "created", "(UTC)", "note"]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.search(rf"^{re.escape(token[:10])}\.\.\. +digits +viewer +{stamp}", listed, re.M)
    assert re.search(
        rf"^cvg_\S{{6}}\.\.\. +\* +admin +{stamp} +admin \(first start\)$", listed, re.M
    )
    assert cli("token", "revoke", token, "--store", str(hub.store)).stdout.strip() == "revoked"
    again = cli("token", "revoke", token, "--store", str(hub.store))
    assert again.returncode == 2 and "no such token" in again.stderr
    with pytest.raises(urllib.error.HTTPError) as err:
        hub.get("/api/runs/digits", token)
    assert err.value.code == 401


def test_tables_show_conflicts_what_is_in_effect_notes_metrics_and_data(
    hub: HubProcess, tmp_path: Path
) -> None:
    paths = [tmp_path / "alice.convergent", tmp_path / "bob.convergent"]
    for p, user in zip(paths, ["alice", "bob"], strict=True):
        with convergent.connect(hub.url(), hub.admin, path=p, user=user) as run:
            run.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})
            if user == "alice":  # alice trains for a moment: lr 0.03 is in effect at step 7
                run.config["lr"] = 0.03
                run.config.record_applied("lr", 7)
                run.log({"loss": 2.0}, step=10)
                run.log({"loss": 1.5, "acc": 0.5}, step=20)
            run.wait_synced()
    note = "[bold]not markup[/bold] :fire: " + "a long note that stays on its line " * 3
    with convergent.open(paths[0]) as alice:  # both edit lr while offline: a conflict
        alice.config["lr"] = 0.02
        alice.notes.add(note)
    with convergent.open(paths[1]) as bob:
        bob.config["lr"] = 0.05
    runs = [convergent.connect(hub.url(), hub.admin, path=p) for p in paths]
    try:
        for run in runs:
            run.wait_synced()
        runs[0].wait_until(lambda: len(runs[0].config.conflicts()) == 1)
    finally:
        for run in runs:
            run.close()
    url = ["--url", hub.url()]

    [lr] = json.loads(cli("config", *url, "--json", token=hub.admin).stdout)
    assert sorted((w["by"], w["value"]) for w in lr["conflict"]) == [("alice", 0.02), ("bob", 0.05)]
    config = cli("config", *url, token=hub.admin).stdout.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    first, second = config[2:4]
    # requested (the resolved value, not yet applied), in effect (step-stamped), rule, and
    # both concurrent values with their authors and times
    assert re.fullmatch(
        rf"lr +{lr['value']} \(pending\) +0\.03 since step 7 +float in \[0\.0, 1\.0\] +"
        rf"(0\.02 by alice|0\.05 by bob) at {stamp}",
        first,
    )
    assert re.fullmatch(rf" +(0\.02 by alice|0\.05 by bob) at {stamp}", second)
    assert {"alice", "bob"} == {line.split(" by ")[1].split()[0] for line in (first, second)}
    assert config[-1].startswith("1 key(s) in conflict")

    history = cli("history", *url, "config", "lr", token=hub.admin).stdout
    assert re.search(rf"^{stamp} +alice +config +lr: 0\.1 → 0\.03 +7$", history, re.M)
    assert re.search(rf"^{stamp} +bob +config +lr: 0\.03 → 0\.05$", history, re.M)

    log = cli("log", *url, token=hub.admin).stdout.splitlines()
    assert log[0].split() == ["metric", "step", "value"]
    assert [line.split() for line in log[2:] if line] == [
        ["acc", "20", "0.5"],
        ["loss", "10", "2"],
        ["loss", "20", "1.5"],
    ]
    tail = json.loads(cli("log", *url, "loss", "--tail", "1", "--json", token=hub.admin).stdout)
    assert tail == {"loss": [[20, 1.5]]}

    notes = cli("notes", *url, token=hub.admin).stdout.splitlines()
    # markup and emoji codes print as written; plain output never wraps a long row
    assert re.fullmatch(rf"[0-9a-f]{{16}} +{stamp} +alice +{re.escape(note.strip())}", notes[-1])

    status = cli("status", *url, token=hub.admin).stdout.splitlines()
    assert re.fullmatch(r"run [0-9a-f]+ +running +step 20 +samples 0 +ops \d+", status[0])
    assert [line.split() for line in status[3:]] == [["acc", "0.5", "20"], ["loss", "1.5", "20"]]

    imported = cli("data", *url, "import", "iris", token=hub.admin)
    assert imported.returncode == 0, imported.stderr
    with convergent.connect(hub.url(), hub.admin) as run:
        counts = {str(k): v for k, v in run.dataset.counts().items()}
        total = len(run.dataset)
    assert imported.stdout.strip() == f"import: 150 samples; the run now has {total}"
    shown = cli("data", *url, "ls", token=hub.admin).stdout.splitlines()
    assert shown[0] == f"{total} samples, 3 labels"
    rows = [line.split() for line in shown[3:] if line]
    assert rows == [[k, str(n), "0", "0", str(n)] for k, n in sorted(counts.items())] + [
        ["all", str(total), "0", "0", str(total)]
    ]


def test_train_draws_a_progress_bar_on_a_terminal(hub: HubProcess) -> None:
    url = ["--url", hub.url()]
    trained = cli("train", *url, "--steps", "100", token=hub.admin, terminal=True)
    assert trained.returncode == 0, trained.stderr
    frames = [f.strip() for f in re.split(r"[\r\n]", ANSI.sub("", trained.stdout)) if f.strip()]
    assert "imported 1,797 digits (20 % for validation)" in frames
    # the trainer's report line goes above the bar, once; its loss goes into the bar
    [report] = [f for f in frames if f.startswith("step    100  loss ")]
    loss, acc = report.split()[3], report.split()[5]
    bars = [f for f in frames if "steps/s" in f and f.startswith("━")]
    assert re.fullmatch(
        rf"━+ +step 100/100 +\S+ steps/s +loss {loss} +val_acc {acc} +lr 0\.05 +\d+:\d\d",
        bars[-1],
    )
    assert "\x1b[" in cli("config", *url, token=hub.admin, terminal=True).stdout  # colour
    # --json is the same document on a terminal: no colour, no bar
    status = json.loads(cli("status", *url, "--json", token=hub.admin, terminal=True).stdout)
    assert status["last_step"] == 100 and status["samples"] == 1797


def test_the_commands_work_on_a_local_run_file_and_name_their_user(tmp_path: Path) -> None:
    path = tmp_path / "local.convergent"
    with convergent.open(path, config={"lr": Float(0.1, min=0.0)}, user="alice") as run:
        run.notes.add("started offline")
    done = cli("set", "lr", "0.02", "--url", str(path), "--user", "carol")
    assert done.returncode == 0, done.stderr
    assert "lr = 0.02" in done.stdout
    history = json.loads(cli("history", "config", "lr", "--url", str(path), "--json").stdout)
    assert [(e["user"], e["new"]) for e in history][-1] == ("carol", 0.02)
    imported = cli("data", "import", "iris", "--url", str(path), "--user", "carol")
    assert imported.returncode == 0, imported.stderr
    listing = json.loads(cli("data", "ls", "--url", str(path), "--json").stdout)
    assert sum(listing["labels"].values()) == listing["samples"] == 149  # 150 rows, 1 repeated
    bad = cli("set", "lr", "-1", "--url", str(path))
    assert bad.returncode == 2 and "lr" in bad.stderr
    missing = cli("get", "--url", str(tmp_path / "typo.convergent"))
    assert missing.returncode == 2 and "no run file at" in missing.stderr
    assert not (tmp_path / "typo.convergent").exists()
    with convergent.open(path) as run:  # what the CLI wrote is in the file
        assert run.config["lr"] == 0.02 and len(run.dataset) == 149
        assert [n.text for n in run.notes.list()] == ["started offline"]
