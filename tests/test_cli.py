"""The command line against a real hub: set/get/config/status/control and train, with the
errors people meet; and `convergent demo` end to end (hub + trainer on the digits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

import convergent
from test_hub import SRC, HubProcess, start_hub


def cli(
    *args: str, token: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env.pop("CONVERGENT_TOKEN", None)
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
    out = cli("set", *url, "lr", "0.02", token=hub.admin)
    assert out.returncode == 0 and out.stdout.strip() == "lr = 0.02"
    bad = cli("set", *url, "lr", "20", token=hub.admin)
    assert bad.returncode == 2 and "config key 'lr': 20 is above the maximum 10.0" in bad.stderr
    typo = cli("set", *url, "lrr", "0.1", token=hub.admin)
    assert typo.returncode == 2 and "did you mean 'lr'" in typo.stderr
    got = cli("get", *url, "--json", token=hub.admin)
    assert json.loads(got.stdout)["lr"] == 0.02
    table = cli("config", *url, token=hub.admin)
    assert "lr" in table.stdout and "0.02" in table.stdout
    for action, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        done = cli(action, *url, token=hub.admin)
        assert done.returncode == 0 and f"the run is {state}" in done.stdout
    status = json.loads(cli("status", *url, "--json", token=hub.admin).stdout)
    assert status["state"] == "stopped" and status["samples"] == 1797
    assert status["last_step"] == 30
    history = convergent.connect(hub.url(), hub.admin).history("config", "lr")
    assert history[-1].new == 0.02
    lines = cli("history", *url, "config", "lr", token=hub.admin).stdout.splitlines()
    assert lines[-1].endswith("lr: 0.05 → 0.02")
    metrics = json.loads(cli("log", *url, "loss", "--json", token=hub.admin).stdout)
    assert [step for step, _ in metrics["loss"]] == [10, 20, 30]  # logged every 10 steps
    cli("notes", *url, "--add", "lr looks high", token=hub.admin)
    assert "lr looks high" in cli("notes", *url, token=hub.admin).stdout
    listing = json.loads(cli("data", *url, "ls", "--json", token=hub.admin).stdout)
    assert listing["samples"] == 1797 and sum(listing["splits"].values()) == 1797
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
    lines = [line for line in out.stdout.splitlines() if line.startswith("step")]
    assert len(lines) == 3  # progress every 100 steps
    accuracy = float(lines[-1].split("val_acc")[1].split()[0])
    assert accuracy > 0.8  # the digits MLP learns


def test_tokens_are_created_listed_and_revoked(hub: HubProcess) -> None:
    token = hub.token("viewer")
    assert hub.get("/api/runs/digits", token)["name"] == "digits"
    listed = cli("token", "list", "--store", str(hub.store)).stdout
    assert f"{token[:10]}...  run digits  viewer" in listed
    assert cli("token", "revoke", token, "--store", str(hub.store)).stdout.strip() == "revoked"
    again = cli("token", "revoke", token, "--store", str(hub.store))
    assert again.returncode == 2 and "no such token" in again.stderr
    with pytest.raises(urllib.error.HTTPError) as err:
        hub.get("/api/runs/digits", token)
    assert err.value.code == 401
