"""`Hub.act` / `Run.acting_as`: edits made on the hub for a browser session are ops of that
session's own replica, checked against its role before anything changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from convergent.errors import AuthError, SchemaError
from convergent.run import Float, Run
from convergent.server.hub import Hub
from convergent.sync.protocol import Role

BROWSER = 0x1234_5678_9ABC_DEF0


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(tmp_path)
    hub.create_run("r", {"lr": Float(0.1, min=0.0)})
    yield hub
    hub.close()


def test_an_edit_is_an_op_of_the_session_replica(hub: Hub) -> None:
    def edit(run: Run) -> None:
        run.members.identify("alice")
        run.config["lr"] = 0.02

    hub.act("r", BROWSER, Role.EDITOR, edit)
    hub.act("r", BROWSER, Role.EDITOR, lambda run: run.config.__setitem__("lr", 0.03))
    run = hub.run("r")
    assert run is not None
    assert run.config["lr"] == 0.03
    assert run.version.context.intervals(BROWSER) == ((1, 3),)  # identify, then two edits
    entries = run.history("config", "lr")
    assert [(e.author, e.user, e.new) for e in entries[-2:]] == [
        (BROWSER, "alice", 0.02),
        (BROWSER, "alice", 0.03),
    ]
    # the hub's own replica keeps its own op ids
    assert run.replica_id != BROWSER
    seq_before = run.version.context.max_counter(run.replica_id)
    run.notes.add("hub note")
    assert run.version.context.max_counter(run.replica_id) == seq_before + 1
    # a replica that joins sees the op under the session's id, like any other op
    other = Run(join=run.export_since())
    assert other.config["lr"] == 0.03
    assert BROWSER in other.version.context.replicas()


def test_a_viewer_changes_nothing(hub: Hub) -> None:
    run = hub.run("r")
    assert run is not None
    before = run.version.ops
    with pytest.raises(AuthError, match="may not change config"):
        hub.act("r", BROWSER, Role.VIEWER, lambda run: run.config.__setitem__("lr", 0.5))
    assert run.config["lr"] == 0.1
    assert run.version.ops == before
    run.config["lr"] = 0.2  # the hub's replica is itself again
    assert run.config["lr"] == 0.2


def test_a_bad_value_changes_nothing(hub: Hub) -> None:
    run = hub.run("r")
    assert run is not None
    before = run.version.ops
    with pytest.raises(SchemaError):
        hub.act("r", BROWSER, Role.EDITOR, lambda run: run.config.__setitem__("lr", -1.0))
    assert run.version.ops == before
    with pytest.raises(KeyError):
        hub.act("nope", BROWSER, Role.EDITOR, lambda run: None)
