"""The dashboard channel (``WS /runs/NAME/ui``) without a browser: a real hub subprocess and
JSON messages. Each session is a replica of its own whose edits are attributed, checked
against its role, and reach sync clients like any client's ops; bad input gets a clear error
and never takes the hub down."""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

import convergent
from convergent.run import Float, Int, Run
from convergent.testing.hub import HubProcess, spawn_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    h = spawn_hub(tmp_path_factory.mktemp("hub"))
    setup = convergent.connect(h.url(), h.admin, user="setup")
    setup.config.declare({"lr": Float(0.1, min=0.0, max=1.0), "batch_size": Int(32, min=1)})
    images = np.random.default_rng(0).integers(0, 17, size=(10, 8, 8), dtype=np.uint8)
    setup.dataset.add_many(images, labels=list(range(10)))
    for step in range(50):
        setup.log({"loss": 1.0 / (step + 1)}, step=step)
    setup.wait_synced()
    setup.close()
    yield h
    h.stop()


class UI:
    """One browser session, spoken to by hand."""

    def __init__(self, hub: HubProcess, token: str, user: str, run: str = "digits") -> None:
        self._open = contextlib.ExitStack()  # websockets wants connect() as a context manager
        url = f"ws://127.0.0.1:{hub.port}/runs/{run}/ui"
        self.ws: ClientConnection = self._open.enter_context(ws_connect(url))
        self.send({"type": "hello", "token": token, "user": user, "view": "config"})
        self.welcome = self.recv()
        self.updates: list[dict[str, Any]] = []
        self.next_id = 0

    def send(self, msg: Any) -> None:
        self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))  # type: ignore[no-any-return]

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send ``msg`` with a fresh id; the ack or error answering it (pushes kept)."""
        self.next_id += 1
        self.send({**msg, "id": self.next_id})
        while True:
            reply = self.recv()
            if reply["type"] == "update":
                self.updates.append(reply)
            elif reply.get("id") == self.next_id:
                return reply

    def until(self, check: Any, timeout: float = 10) -> dict[str, Any]:
        """Read pushes until one satisfies ``check``."""
        for update in self.updates:
            if check(update):
                return update
        while True:
            reply = self.recv(timeout)
            if reply["type"] == "update":
                self.updates.append(reply)
                if check(reply):
                    return reply

    def close(self) -> None:
        self._open.close()


def config_row(view: dict[str, Any], key: str) -> dict[str, Any]:
    return next(r for r in view["config"] if r["key"] == key)


def healthy(hub: HubProcess) -> bool:
    return hub.get("/health")["status"] == "ok"  # type: ignore[no-any-return]


def test_welcome_carries_the_whole_view(hub: HubProcess) -> None:
    ui = UI(hub, hub.admin, "alice")
    try:
        w = ui.welcome
        assert w["type"] == "welcome" and w["role"] == "admin" and w["can_edit"]
        view = w["view"]
        assert config_row(view, "lr")["kind"] == "float"
        assert view["dataset"]["total"] == 10 and len(view["dataset"]["ids"]) == 10
        thumb = next(iter(view["dataset"]["thumbs"].values()))
        assert (thumb["w"], thumb["h"]) == (8, 8)
        loss = view["metrics"]["loss"]
        assert loss["mode"] == "full"
        steps = np.frombuffer(base64.b64decode(loss["step"]), "<f8")
        assert steps.tolist()[:3] == [0.0, 1.0, 2.0] and len(steps) >= 50
        assert any(p["user"] == "alice" for p in view["presence"])
    finally:
        ui.close()


def test_an_edit_is_an_op_of_the_person_and_reaches_sync_clients(
    hub: HubProcess, tmp_path: Path
) -> None:
    client = convergent.connect(hub.url(), hub.admin, user="carol")
    ui = UI(hub, hub.admin, "bob")
    try:
        reply = ui.request({"type": "set_config", "key": "lr", "value": 0.02})
        assert reply == {"type": "ack", "id": 1}
        client.wait_until(lambda: client.config["lr"] == 0.02)
        entry = client.history("config", "lr")[-1]
        assert entry.user == "bob" and entry.new == 0.02
        assert entry.author == int(ui.welcome["session"], 16)  # the session's own replica
        # the push reaches the browser too, with the author's name
        ui.until(lambda u: "config" in u and config_row(u, "lr")["value"] == 0.02)
        # an edit by a sync client is pushed to the browser
        client.config["batch_size"] = 64
        client.wait_synced()
        pushed = ui.until(lambda u: "config" in u and config_row(u, "batch_size")["value"] == 64)
        assert config_row(pushed, "batch_size")["written"][-1]["by"] == "carol"
    finally:
        ui.close()
        client.close()


def test_edits_made_from_the_same_screen_conflict_and_one_click_resolves(
    hub: HubProcess,
) -> None:
    alice, bob = UI(hub, hub.admin, "alice"), UI(hub, hub.admin, "bob")
    try:
        shown = [w["dot"] for w in config_row(alice.welcome["view"], "batch_size")["written"]]
        assert (
            alice.request({"type": "set_config", "key": "batch_size", "value": 16, "seen": shown})[
                "type"
            ]
            == "ack"
        )
        # bob typed while seeing the same values: his write did not see alice's
        assert (
            bob.request({"type": "set_config", "key": "batch_size", "value": 128, "seen": shown})[
                "type"
            ]
            == "ack"
        )
        for ui in (alice, bob):
            row = config_row(
                ui.until(
                    lambda u: "config" in u and len(config_row(u, "batch_size")["written"]) == 2
                ),
                "batch_size",
            )
            assert sorted(w["value"] for w in row["written"]) == [16, 128]
            assert {w["by"] for w in row["written"]} == {"alice", "bob"}
        both = [w["dot"] for w in row["written"]]
        bob.request({"type": "set_config", "key": "batch_size", "value": 16, "seen": both})
        row = config_row(
            alice.until(
                lambda u: "config" in u and len(config_row(u, "batch_size")["written"]) == 1
            ),
            "batch_size",
        )
        assert row["value"] == 16 and row["written"][0]["by"] == "bob"
    finally:
        alice.close()
        bob.close()


def test_dataset_edits_and_uploads(hub: HubProcess) -> None:
    ui = UI(hub, hub.admin, "dana")
    try:
        ids = ui.welcome["view"]["dataset"]["ids"]
        assert ui.request({"type": "relabel", "samples": ids[:2], "label": 7})["type"] == "ack"
        pushed = ui.until(lambda u: "dataset" in u and u["dataset"].get("changes"))
        assert {c[0] for c in pushed["dataset"]["changes"]} == set(ids[:2])
        assert all(c[1] == 7 for c in pushed["dataset"]["changes"])
        assert ui.request({"type": "split", "samples": ids[2:3], "split": "val"})["type"] == "ack"
        assert ui.request({"type": "tag", "samples": ids[3:4], "tag": "blurry"})["type"] == "ack"
        ui.until(lambda u: "dataset" in u and (u["dataset"].get("tags") or {}).get(ids[3]))
        added = ui.request({"type": "add_samples", "samples": [{"pixels": [16] * 64, "label": 1}]})
        assert added["type"] == "ack" and len(added["result"]) == 1
        ui.until(lambda u: "dataset" in u and u["dataset"]["total"] == 11)
        thumbs = ui.request({"type": "thumbs", "samples": added["result"]})
        assert thumbs["thumbs"][added["result"][0]]["w"] == 8
        bad = ui.request({"type": "add_samples", "samples": [{"pixels": [1, 2, 3]}]})
        assert bad["type"] == "error" and "64 numbers" in bad["message"]
        assert ui.request({"type": "remove", "samples": added["result"]})["type"] == "ack"
        ui.until(lambda u: "dataset" in u and u["dataset"]["total"] == 10)
    finally:
        ui.close()


def test_notes_and_control(hub: HubProcess) -> None:
    ui = UI(hub, hub.admin, "erin")
    try:
        added = ui.request({"type": "comment_add", "text": "loss plateaus at 300"})
        cid = added["result"]
        ui.request({"type": "comment_resolve", "comment": cid, "resolved": True})
        notes = ui.until(
            lambda u: "notes" in u and any(c["resolved"] for c in u["notes"]["comments"])
        )["notes"]
        assert notes["comments"][-1]["author"] == "erin"
        ui.request({"type": "control", "action": "pause"})
        assert ui.until(lambda u: "control" in u and u["control"]["state"] == "paused")
        ui.request({"type": "control", "action": "checkpoint"})
        pending = ui.until(lambda u: "control" in u and u["control"]["pending"])["control"]
        assert (
            pending["pending"][0]["name"] == "checkpoint" and pending["pending"][0]["by"] == "erin"
        )
        ui.request({"type": "control", "action": "resume"})
        history = ui.until(
            lambda u: "history" in u and any("running" in e["what"] for e in u["history"])
        )["history"]
        assert [e["user"] for e in history if e["new"] == "paused"] == ["erin"]
    finally:
        ui.close()


def test_a_viewer_sees_but_the_hub_refuses_its_writes(hub: HubProcess) -> None:
    viewer = hub.token("viewer")
    ui = UI(hub, viewer, "victor")
    try:
        assert ui.welcome["role"] == "viewer" and not ui.welcome["can_edit"]
        ids = ui.welcome["view"]["dataset"]["ids"]
        for msg in (
            {"type": "set_config", "key": "lr", "value": 0.5},
            {"type": "relabel", "samples": ids[:1], "label": 3},
            {"type": "control", "action": "stop"},
            {"type": "comment_add", "text": "hi"},
        ):
            reply = ui.request(msg)
            assert reply["type"] == "error" and "may not change" in reply["message"], reply
        run = Run(join=hub.get("/api/runs/digits/export", hub.admin))
        assert run.config["lr"] != 0.5 and run.control.state != "stopped"
        assert "victor" not in {m.user for m in run.members.list()}
    finally:
        ui.close()


def test_bad_input_gets_a_clear_error_and_the_hub_lives_on(hub: HubProcess) -> None:
    def first_reply(msg: Any) -> dict[str, Any]:
        with ws_connect(f"ws://127.0.0.1:{hub.port}/runs/digits/ui") as ws:
            ws.send(msg)
            return json.loads(ws.recv(timeout=10))  # type: ignore[no-any-return]

    assert (
        "unknown or revoked token"
        in first_reply(json.dumps({"type": "hello", "token": "x"}))["message"]
    )
    assert "first message must be" in first_reply(json.dumps({"type": "relabel"}))["message"]
    assert "not JSON" in first_reply("{nope")["message"]
    assert "needs 'token'" in first_reply(json.dumps({"type": "hello"}))["message"]
    with ws_connect(f"ws://127.0.0.1:{hub.port}/runs/nosuchrun/ui") as ws:
        ws.send(json.dumps({"type": "hello", "token": hub.admin}))
        assert "no run 'nosuchrun'" in json.loads(ws.recv(timeout=10))["message"]

    ui = UI(hub, hub.admin, "mallory")
    try:
        cases = [
            ("[1, 2]", "JSON object"),
            ('{"type": "frobnicate"}', "unknown message type"),
            ('{"type": "set_config", "key": 5, "value": 1}', "'key' must be a config key"),
            ('{"type": "set_config", "key": "lr", "value": "fast"}', "expected a float"),
            ('{"type": "set_config", "key": "lr", "value": 7}', "above the maximum"),
            ('{"type": "set_config", "key": "lx", "value": 1}', "unknown config key 'lx'"),
            ('{"type": "relabel", "samples": ["zz"], "label": 1}', "not a sample id"),
            ('{"type": "relabel", "samples": ["0000000000000001"], "label": 1}', "no sample"),
            ('{"type": "relabel", "samples": [], "label": 1}', "no samples named"),
            ('{"type": "relabel", "samples": ["0000000000000001"], "label": 1.5}', "a label"),
            ('{"type": "control", "action": "explode"}', "unknown action"),
            ('{"type": "split", "samples": ["0000000000000001"], "split": 3}', "'split' must"),
            ('{"type": "comment_edit", "comment": "nope", "text": "x"}', "no comment"),
            ('{"type": "set_config", "key": "lr", "value": 0.1, "seen": ["q"]}', "not a dot"),
            ('{"type": "thumbs", "samples": "all"}', "'samples' must"),
            ("x" * ((1 << 20) + 1), "at most"),
        ]
        for text, expected in cases:
            ui.send(text)
            reply = ui.recv()
            while reply["type"] == "update":
                reply = ui.recv()
            assert reply["type"] == "error" and expected in reply["message"], (text[:80], reply)
        ui.send(b"\x00\x01")
        reply = ui.recv()
        while reply["type"] == "update":
            reply = ui.recv()
        assert "JSON text" in reply["message"]
        # the session is still open and useful
        assert ui.request({"type": "set_config", "key": "lr", "value": 0.3})["type"] == "ack"
    finally:
        ui.close()
    assert healthy(hub)


def test_the_runs_list_and_pages(hub: HubProcess) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{hub.port}/", headers={"Accept": "text/html"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert b"<title>convergent" in resp.read()
    assert b"convergent hub" in hub.get("/")  # curl gets text
    assert b'src="/static/run.js"' in hub.get("/runs/digits")
    assert b"uPlot" in hub.get("/static/vendor/uPlot.iife.min.js")
    runs = hub.get("/api/overview", hub.admin)
    assert runs[0]["name"] == "digits" and "loss" in runs[0]["metrics"]


def test_write_with_seen_keeps_an_unseen_write_as_a_conflict() -> None:
    run = Run(config={"lr": Float(0.1, min=0.0)})
    with run.acting_as(0x11):
        run.config.write("lr", 0.02, seen=[])
    with run.acting_as(0x22):
        run.config.write("lr", 0.05, seen=[])  # had not seen 0.02
    (conflict,) = run.config.conflicts()
    assert [w.value for w in conflict.values] == [0.02, 0.05]
    other = Run(join=run.export_since())
    assert other.config.conflicts() == run.config.conflicts()
    seen = [(w.author, w.counter) for w in conflict.values]
    with run.acting_as(0x11):
        run.config.write("lr", 0.05, seen=seen)
    assert run.config.conflicts() == [] and run.config["lr"] == 0.05
    run.config.write("lr", 0.07)  # seen=None: replaces whatever this replica holds
    assert [w.value for w in run.config.written("lr")] == [0.07]


def test_a_long_series_is_previewed_first_then_sent_whole(hub: HubProcess) -> None:
    client = convergent.connect(hub.url(), hub.admin, user="logger")
    try:
        with client.transaction():
            for step in range(6000):
                client.log({"long": float(np.sin(step / 50))}, step=step)
        client.wait_synced()
    finally:
        client.close()
    ui = UI(hub, hub.admin, "frank")
    try:
        preview = ui.welcome["view"]["metrics"]["long"]
        assert preview["mode"] == "preview" and preview["points"] < 6000
        steps = np.frombuffer(base64.b64decode(preview["step"]), "<f8")
        assert steps[0] == 0 and steps[-1] == 5999 and (np.diff(steps) > 0).all()
        values = np.frombuffer(base64.b64decode(preview["value"]), "<f8")
        assert values.max() == pytest.approx(1.0, abs=1e-3)  # the peaks survive
        full = ui.until(lambda u: "long" in u.get("metrics", {}))["metrics"]["long"]
        assert full["mode"] == "full" and full["points"] == 6000
    finally:
        ui.close()


def test_a_slow_history_is_recomputed_late_but_never_missed(tmp_path: Path) -> None:
    """The history query is throttled to a share of the hub's loop; edits made meanwhile
    reach the browsers once it is due (the config's "in effect" never waits for it)."""
    import asyncio
    import time

    from convergent.server.dashboard import Room, Session
    from convergent.server.hub import Hub
    from convergent.sync.protocol import Role

    async def scenario() -> list[str]:
        hub = Hub(tmp_path)
        try:
            run = hub.create_run("r", {"lr": Float(0.1, min=0.0)})
            room = Room(hub, "r", run)
            session = Session(7, "alice", Role.EDITOR, "history", "#000", asyncio.Queue())
            room.join(session)
            room._history_next = time.monotonic() + 0.3  # as if the last query was slow
            for value in (0.2, 0.3):
                hub.act("r", 7, Role.EDITOR, lambda r, v=value: r.config.write("lr", v))
            deadline = time.monotonic() + 10
            seen: list[str] = []
            while time.monotonic() < deadline:
                text = await asyncio.wait_for(session.queue.get(), timeout=10)
                assert text is not None
                history = json.loads(text).get("history")
                if history is not None:
                    seen = [e["what"] for e in history if e["part"] == "config"]
                    if "lr: 0.2 → 0.3" in seen:
                        return seen
            return seen
        finally:
            hub.close()

    seen = asyncio.run(scenario())
    assert seen[-2:] == ["lr: 0.1 → 0.2", "lr: 0.2 → 0.3"]


def test_metric_points_are_pushed_once_each_from_every_writer(hub: HubProcess) -> None:
    ui = UI(hub, hub.admin, "gina")
    a = convergent.connect(hub.url(), hub.admin, user="trainer-a")
    b = convergent.connect(hub.url(), hub.admin, user="trainer-b")
    try:
        got: list[float] = []

        def points(u: dict[str, Any]) -> bool:
            m = u.get("metrics", {}).get("shared")
            if m is not None:
                assert m["mode"] == "append"
                got.extend(np.frombuffer(base64.b64decode(m["step"]), "<f8").tolist())
            return len(got) >= 15

        for step in range(100, 110):
            a.log({"shared": 1.0}, step=step)
        for step in range(50, 55):  # a second writer, behind the first
            b.log({"shared": 2.0}, step=step)
        a.wait_synced()
        b.wait_synced()
        ui.until(points)
        assert sorted(got) == [*range(50, 55), *range(100, 110)]  # each once, none lost
    finally:
        a.close()
        b.close()
        ui.close()


def test_a_browser_joining_never_costs_the_others_a_point(tmp_path: Path) -> None:
    """A new session's full view moves the room's cursors on: whatever the others were not
    sent yet goes out to them first."""
    import asyncio

    from convergent.server.dashboard import Room, Session
    from convergent.server.hub import Hub
    from convergent.sync.protocol import Role

    async def scenario() -> tuple[list[float], int]:
        hub = Hub(tmp_path)
        try:
            run = hub.create_run("r")
            room = Room(hub, "r", run)
            first = Session(1, "a", Role.EDITOR, "charts", "#000", asyncio.Queue())
            room.join(first)
            run.log({"loss": 1.0}, step=1)  # noted, its push not due yet...
            second = Session(2, "b", Role.EDITOR, "charts", "#111", asyncio.Queue())
            view, _ = room.join(second)  # ...when someone else opens the page
            steps: list[float] = []
            while not first.queue.empty():
                text = first.queue.get_nowait()
                assert text is not None
                m = json.loads(text).get("metrics", {}).get("loss")
                if m is not None:
                    steps += np.frombuffer(base64.b64decode(m["step"]), "<f8").tolist()
            return steps, view["metrics"]["loss"]["points"]
        finally:
            hub.close()

    steps, in_view = asyncio.run(scenario())
    assert steps == [1.0] and in_view == 1
