"""The Run document: every part's semantics, exchange as bytes, history, change callbacks,
snapshots, and convergence of two and three replicas editing every part concurrently."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convergent.codec import encode
from convergent.crdt import HybridLogicalClock, ReplicaId
from convergent.errors import DecodeError, InvalidError, SchemaError
from convergent.run import Choice, Float, Int, Part, Run, RunChange
from convergent.run.dataset import encode_payload, format_id, sample_id
from convergent.run.document import digest_of

CONFIG = {
    "lr": Float(0.1, min=0.0, max=1.0),
    "batch_size": Int(64, min=1),
    "optimizer": Choice("sgd", ["sgd", "adam"]),
}


def team(n: int, *, skews_ms: tuple[int, ...] = (0, 0, 0)) -> list[Run]:
    """``n`` replicas of one run: the first creates it, the others join from its bytes."""
    now = [1_700_000_000_000]
    runs: list[Run] = []
    for i in range(n):
        clock = HybridLogicalClock(wall=lambda s=skews_ms[i]: now[0] + s)
        runs.append(
            Run(
                config=None if runs else CONFIG,
                replica_id=ReplicaId(i + 1),
                clock=clock,
                user=["alice", "bob", "carol"][i],
                join=runs[0].export_since() if runs else None,
            )
        )
    return runs


def sync(*runs: Run) -> None:
    """Everyone sends everyone what they lack, as bytes."""
    for a in runs:
        for b in runs:
            if a is not b:
                b.merge_bytes(a.export_since(b.version))


def fingerprint(run: Run) -> dict[str, Any]:
    """Everything a person can observe about a run, plus the canonical bytes of every part."""
    view = run.dataset.view()
    return {
        "parts": {p: encode(run._state(p)) for p in Part},
        "config": run.config.to_dict(),
        "conflicts": [(c.key, c.values, c.resolved) for c in run.config.conflicts()],
        "ids": view.ids.tolist(),
        "labels": view.labels.tolist(),
        "splits": view.splits.tolist(),
        "samples": list(run.dataset),
        "metrics": {n: run.metrics(n).value.tolist() for n in run.metric_names()},
        "notes": run.notes.list(),
        "description": run.notes.description,
        "checkpoints": run.checkpoints.list(),
        "control": (run.control.state, run.control.conflict),
        "commands": run.control.pending(),
        "members": run.members.list(),
    }


# -- config ---------------------------------------------------------------------------------
def test_config_conflicts_carry_author_and_time_and_resolve_alike() -> None:
    alice, bob, carol = team(3, skews_ms=(0, 5, -5))
    alice.config["lr"] = 0.02
    bob.config["lr"] = 0.05
    sync(alice, bob, carol)
    for run in (alice, bob, carol):
        [conflict] = run.config.conflicts()
        assert [(w.value, w.author) for w in conflict.values] == [(0.02, 1), (0.05, 2)]
        assert run.config["lr"] == conflict.resolved == 0.05  # bob's clock is ahead
        assert all(w.time.year == 2023 for w in conflict.values)
    carol.config["lr"] = 0.03  # carol saw both: her write resolves it everywhere
    sync(alice, bob, carol)
    assert [r.config.conflicts() for r in (alice, bob, carol)] == [[], [], []]
    assert {r.config["lr"] for r in (alice, bob, carol)} == {0.03}


def test_config_is_checked_at_the_edge_and_nothing_is_written() -> None:
    [run] = team(1)
    before = run.export_since()
    with pytest.raises(SchemaError, match=r"config key 'lr': 2\.0 is above the maximum 1\.0"):
        run.config["lr"] = 2.0
    with pytest.raises(SchemaError, match="did you mean 'lr'"):
        run.config["lrr"] = 0.1
    assert run.export_since() == before


def test_a_schema_declared_on_one_replica_reaches_the_others() -> None:
    alice, bob = team(2)
    alice.config.declare({"momentum": Float(0.9, min=0.0, max=1.0)})
    sync(alice, bob)
    assert bob.config["momentum"] == 0.9
    with pytest.raises(SchemaError, match="above the maximum"):
        bob.config["momentum"] = 1.5


def test_merged_values_that_break_the_schema_are_listed() -> None:
    alice, bob = team(2)
    bob.config.declare({"lr": Float(0.1, min=0.0, max=5.0)})  # bob's rule is looser
    bob.config["lr"] = 3.0
    sync(alice, bob)
    alice.config.declare({"lr": Float(0.1, min=0.0, max=1.0)})  # alice tightens it later
    sync(alice, bob)
    assert (
        alice.config.invalid()
        == [("lr", 3.0, "config key 'lr': 3.0 is above the maximum 1.0")]
        == bob.config.invalid()
    )


# -- dataset --------------------------------------------------------------------------------
def test_samples_are_identified_by_content() -> None:
    [run] = team(1)
    a = run.dataset.add(np.arange(4, dtype=np.uint8), label=1)
    b = run.dataset.add(np.arange(4, dtype=np.uint8))  # same content: same sample
    c = run.dataset.add(np.arange(4, dtype=np.int64))  # other dtype: other sample
    assert a == b != c
    assert len(run.dataset) == 2
    assert run.dataset[a].label == 1  # re-adding without a label keeps it
    np.testing.assert_array_equal(run.dataset.payload(a), np.arange(4, dtype=np.uint8))
    assert run.dataset.payload(c).dtype == np.int64
    assert run.dataset[format_id(a)].id == a  # ids also read as 16 hex digits


def test_payload_kinds_round_trip_and_travel_with_the_ops() -> None:
    alice, bob = team(2)
    ids = alice.dataset.add_many(
        [np.ones((2, 3), dtype=np.float32), "a caption", b"\x89PNG..."], labels=[0, 1, 2]
    )
    sync(alice, bob)
    arr, text, raw = (bob.dataset.payload(i) for i in ids)
    assert arr.shape == (2, 3) and arr.dtype == np.float32
    assert (text, raw) == ("a caption", b"\x89PNG...")
    assert [bob.dataset[i].kind for i in ids] == ["array", "text", "bytes"]


def test_add_many_of_100k_samples_is_one_op() -> None:
    [run] = team(1)
    before = run.version.ops
    rng = np.random.default_rng(0)
    x = rng.integers(0, 17, size=(100_000, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 10, size=100_000)
    ids = run.dataset.add_many(x, y, split="train")
    assert run.version.ops == before + 1
    assert len(run.dataset) == len(set(ids))
    order = np.argsort(np.array(ids))
    np.testing.assert_array_equal(run.dataset.ids(), np.array(ids)[order])
    np.testing.assert_array_equal(run.dataset.labels(), y[order])
    np.testing.assert_array_equal(run.dataset.payload(ids[123]), x[123])


def test_add_wins_over_a_concurrent_remove() -> None:
    alice, bob = team(2)
    sid = alice.dataset.add(np.zeros(3), label=4)
    sync(alice, bob)
    alice.dataset.remove(sid)
    bob.dataset.add(np.zeros(3))  # bob re-adds concurrently
    sync(alice, bob)
    assert sid in alice.dataset and sid in bob.dataset
    alice.dataset.remove(sid)  # a remove that saw every add does remove
    sync(alice, bob)
    assert sid not in bob.dataset


def test_a_relabel_of_a_removed_sample_is_kept_when_it_is_re_added() -> None:
    alice, bob = team(2)
    sid = alice.dataset.add(np.zeros(3), label=4)
    sync(alice, bob)
    alice.dataset.remove(sid)
    bob.dataset.relabel(sid, 7)  # concurrent with the remove
    sync(alice, bob)
    assert sid not in alice.dataset
    alice.dataset.add(np.zeros(3))
    sync(alice, bob)
    assert alice.dataset[sid].label == bob.dataset[sid].label == 7


def test_concurrent_relabels_resolve_alike_everywhere() -> None:
    alice, bob = team(2, skews_ms=(0, 7))
    sid = alice.dataset.add(np.zeros(3), label=4)
    sync(alice, bob)
    alice.dataset.relabel(sid, 1)
    bob.dataset.relabel(sid, 2)
    sync(alice, bob)
    assert alice.dataset[sid].label == bob.dataset[sid].label == 2  # bob's HLC is higher


def test_splits_tags_and_counts() -> None:
    [run] = team(1)
    ids = run.dataset.add_many(np.arange(30).reshape(10, 3), labels=[i % 3 for i in range(10)])
    run.dataset.split(ids[:2], "val")
    run.dataset.split(ids[2], "test")
    run.dataset.tag(ids[0], "blurry", "check")
    run.dataset.untag(ids[0], "check")
    assert set(run.dataset.ids("val").tolist()) == set(ids[:2])
    assert run.dataset.ids("test").tolist() == [ids[2]]
    assert len(run.dataset.ids("train")) == 7
    assert run.dataset[ids[0]].tags == {"blurry"}
    assert run.dataset.counts() == {0: 4, 1: 3, 2: 3}
    x, y = run.dataset.arrays("val")
    assert x.shape == (2, 3) and len(y) == 2
    run.dataset.assign_splits(val=0.5)
    assert 0 < len(run.dataset.ids("val")) < 10


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda d, s: d.relabel(s, 1.5), SchemaError, "a label is an int or a str"),
        (lambda d, s: d.split(s, "holdout"), SchemaError, "not one of train, val, test"),
        (lambda d, s: d.add(np.array([object()])), SchemaError, "numeric array"),
        (lambda d, s: d.add_many(np.zeros((2, 2)), [1]), SchemaError, "2 samples but 1 labels"),
        (lambda d, s: d.relabel(12345, 1), KeyError, "no sample"),
        (lambda d, s: d.remove("not-an-id"), KeyError, "not a sample id"),
        (lambda d, s: d.tag(s, ""), SchemaError, "a tag is a non-empty string"),
    ],
)
def test_bad_dataset_input_is_refused_and_changes_nothing(
    call: Any, error: type[Exception], message: str
) -> None:
    [run] = team(1)
    sid = run.dataset.add(np.zeros(2), label=0)
    before = run.export_since()
    with pytest.raises(error, match=message):
        call(run.dataset, sid)
    assert run.export_since() == before


def test_importers(tmp_path: Path) -> None:
    [run] = team(1)
    digits = run.dataset.from_sklearn("digits")
    assert len(digits) == 1797 and len(run.dataset) == len(set(digits))
    first = run.dataset.payload(digits[0])
    assert first.shape == (8, 8) and first.dtype == np.uint8
    assert set(run.dataset.counts()) == set(range(10))

    table = tmp_path / "iris.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "label"])
        w.writerows([[1.0, 2.0, 0], [3.0, 4.5, 1]])
    rows = run.dataset.from_csv(table)
    np.testing.assert_array_equal(run.dataset.payload(rows[1]), [3.0, 4.5])
    assert run.dataset[rows[1]].label == 1

    (tmp_path / "pics" / "cat").mkdir(parents=True)
    (tmp_path / "pics" / "dog").mkdir()
    (tmp_path / "pics" / "cat" / "1.png").write_bytes(b"\x89PNG cat")
    (tmp_path / "pics" / "dog" / "2.png").write_bytes(b"\x89PNG dog")
    (tmp_path / "pics" / "readme.txt").write_text("unlabeled")
    files = run.dataset.from_folder(tmp_path / "pics")
    got = {run.dataset[i].name: (run.dataset[i].label, run.dataset[i].kind) for i in files}
    assert got == {
        "cat/1.png": ("cat", "image"),
        "dog/2.png": ("dog", "image"),
        "readme.txt": (None, "text"),
    }
    with pytest.raises(SchemaError, match="unknown bundled dataset"):
        run.dataset.from_sklearn("mnist")


# -- metrics --------------------------------------------------------------------------------
def test_metrics_from_two_writers_merge_without_conflict() -> None:
    alice, bob = team(2)
    bob.log({"acc": 0.25}, step=0)  # bob's column numbers his names in his own order
    for step in range(3):
        alice.log({"loss": 1.0 - step / 10}, step=step)
        bob.log({"loss": 2.0 - step / 10, "acc": 0.5}, step=step)
    sync(alice, bob)
    for run in (alice, bob):
        loss = run.metrics("loss")
        assert loss.step.tolist() == [0, 0, 1, 1, 2, 2]
        assert sorted(loss.value.tolist()) == sorted([1.0, 0.9, 0.8, 2.0, 1.9, 1.8])
        assert set(loss.writer.tolist()) == {1, 2}
        assert run.metrics("acc").value.tolist() == [0.25, 0.5, 0.5, 0.5]
        assert run.metric_names() == ["acc", "loss"]
    assert alice.metrics("loss").value.tolist() == bob.metrics("loss").value.tolist()


def test_log_steps_count_up_and_bad_points_are_refused() -> None:
    [run] = team(1)
    run.log({"loss": 3})
    run.log({"loss": 2.5})
    assert run.metrics("loss").step.tolist() == [0, 1]
    assert run.metrics("loss").last() == 2.5
    for bad, message in [
        ({"loss": "high"}, "is not a number"),
        ({"": 1.0}, "non-empty string"),
        ({"loss": True}, "is not a number"),
    ]:
        with pytest.raises(SchemaError, match=message):
            run.log(bad)
    with pytest.raises(SchemaError, match="a step is an int"):
        run.log({"loss": 1.0}, step=-1)
    assert len(run.metrics("loss")) == 2
    assert len(run.metrics("never-logged")) == 0


# -- notes, checkpoints, control, members ----------------------------------------------------
def test_comments_and_an_edit_that_wins_over_a_concurrent_delete() -> None:
    alice, bob = team(2)
    cid = alice.notes.add("lr looks high")
    sync(alice, bob)
    bob.notes.edit(cid, "lr looks high after step 1200")
    alice.notes.delete(cid)
    sync(alice, bob)
    [comment] = alice.notes.list()
    assert comment.text == "lr looks high after step 1200"
    assert comment.author == 1 and comment.edited_by == 2
    bob.notes.resolve(cid)
    sync(alice, bob)
    assert alice.notes[cid].resolved and alice.notes.list(include_resolved=False) == []
    alice.notes.delete(cid)
    sync(alice, bob)
    assert len(bob.notes) == 0
    with pytest.raises(KeyError):
        bob.notes.edit(cid, "gone")


def test_the_description_merges_edits_made_in_different_places() -> None:
    alice, bob = team(2)
    alice.notes.description = "MLP on digits."
    sync(alice, bob)
    alice.notes.description = "A small MLP on digits."
    bob.notes.description = "MLP on digits. Lr sweep."
    sync(alice, bob)
    assert alice.notes.description == bob.notes.description == "A small MLP on digits. Lr sweep."


def test_checkpoints_are_blobs_listed_by_step() -> None:
    alice, bob = team(2)
    first = alice.checkpoints.add(b"weights-1", step=100, metrics={"loss": 0.5})
    alice.checkpoints.add(b"weights-2", step=200)
    sync(alice, bob)
    assert [c.step for c in bob.checkpoints.list()] == [100, 200]
    assert bob.checkpoints.load(first) == b"weights-1"
    assert bob.checkpoints[first].metrics == {"loss": 0.5}
    latest = bob.checkpoints.latest()
    assert latest is not None and latest.size == len(b"weights-2")
    bob.checkpoints.remove(first)
    sync(alice, bob)
    assert [c.step for c in alice.checkpoints] == [200]
    with pytest.raises(SchemaError, match="step is an int"):
        alice.checkpoints.add(b"x", step=-5)


def test_control_states_commands_and_a_surfaced_conflict() -> None:
    alice, bob = team(2, skews_ms=(0, 3))
    assert alice.control.state == "running"
    alice.control.pause()
    bob.control.stop()
    sync(alice, bob)
    assert alice.control.conflict == bob.control.conflict == ("paused", "stopped")
    assert alice.control.state == bob.control.state == "stopped"
    alice.control.resume()
    sync(alice, bob)
    assert (bob.control.state, bob.control.conflict) == ("running", ())
    cmd = bob.control.checkpoint_now()
    sync(alice, bob)
    [pending] = alice.control.pending()
    assert (pending.id, pending.name, pending.author) == (cmd, "checkpoint", 2)
    alice.control.done(cmd)
    sync(alice, bob)
    assert bob.control.pending() == []
    with pytest.raises(SchemaError, match="not one of running, paused, stopped"):
        bob.control.set_state("crashed")


def test_members_name_the_replicas_behind_edits() -> None:
    alice, bob = team(2)
    bob.members.identify("bob", display_name="Bob B.", role="viewer")
    sync(alice, bob)
    people = {m.user: m for m in alice.members.list()}
    assert people["bob"].display_name == "Bob B." and people["bob"].role == "viewer"
    assert people["alice"].replicas == (1,)
    assert alice.members.name_of(2) == "bob"
    with pytest.raises(SchemaError, match="role 'owner'"):
        alice.members.identify("alice", role="owner")


# -- history, callbacks, snapshots ----------------------------------------------------------
def test_history_says_who_changed_what_and_at_which_step() -> None:
    alice, bob = team(2)
    alice.config["lr"] = 0.05
    sync(alice, bob)
    bob.config["lr"] = 0.02
    sync(alice, bob)
    alice.config.record_applied("lr", 1200)  # the trainer applied bob's value at step 1,200
    sid = alice.dataset.add(np.zeros(2), label=3)
    sync(alice, bob)
    bob.dataset.relabel(sid, 5)
    sync(alice, bob)
    lr = alice.history("config", "lr")
    assert [(e.user, e.old, e.new, e.step) for e in lr] == [
        ("alice", 0.1, 0.05, None),  # a first write replaces the default
        ("bob", 0.05, 0.02, 1200),
    ]
    assert str(lr[-1]).endswith("bob: lr: 0.05 → 0.02 (in effect at step 1,200)")
    assert bob.history("config") == alice.history("config")  # the same on every replica
    relabels = [e for e in alice.history("dataset", sid) if e.old is not None]
    assert [(e.user, e.old, e.new) for e in relabels] == [("bob", 3, 5)]
    assert len(alice.history(limit=2)) == 2
    with pytest.raises(SchemaError, match="unknown part 'weights'"):
        alice.history("weights")


def test_on_change_reports_local_and_merged_changes_until_removed() -> None:
    alice, bob = team(2)
    seen: list[RunChange] = []
    handle = bob.on_change(seen.append)
    bob.config["lr"] = 0.5
    alice.log({"loss": 1.0})
    sync(alice, bob)
    assert [(sorted(c.parts), c.local) for c in seen] == [
        (["config"], True),
        (["metric_names", "metrics"], False),
    ]
    assert seen[1].origin == 1
    handle.remove()
    bob.config["lr"] = 0.6
    assert len(seen) == 2


def test_a_snapshot_is_immutable_and_cached_per_revision() -> None:
    [run] = team(1)
    run.dataset.add_many(np.eye(3), labels=[0, 1, 2])
    snap = run.snapshot()
    assert run.snapshot() is snap  # nothing changed: the same object
    run.config["lr"] = 0.5
    run.dataset.remove(snap.sample_ids[0])
    assert (snap.config["lr"], len(snap)) == (0.1, 3)  # the old view does not move
    later = run.snapshot()
    assert (later.config["lr"], len(later)) == (0.5, 2)
    with pytest.raises(TypeError):
        snap.config["lr"] = 1.0  # type: ignore[index]
    with pytest.raises(ValueError, match="read-only"):
        snap.labels[0] = 9


# -- exchange ---------------------------------------------------------------------------------
def test_exchange_is_idempotent_relayed_and_proportional() -> None:
    alice, bob, carol = team(3)
    for i in range(200):
        alice.config["lr"] = i / 1000
    sync(alice, bob)
    # carol hears of alice's edits only through bob
    carol.merge_bytes(bob.export_since(carol.version))
    assert carol.config["lr"] == alice.config["lr"]
    assert carol.merge_bytes(bob.export_since()) == 0  # nothing new the second time
    alice.config["lr"] = 0.9
    small = alice.export_since(bob.version)
    assert len(small) * 20 < len(alice.export_since())
    assert bob.merge_bytes(small) == 1


def test_a_replica_restored_from_a_peer_never_reuses_its_op_ids() -> None:
    a = Run(replica_id=ReplicaId(5))
    a.dataset.add("x")
    b = Run(replica_id=ReplicaId(5), join=a.export_since())  # the same replica, restored
    b.dataset.add("y")
    c = Run(join=a.export_since())
    assert c.merge_bytes(b.export_since()) == 1
    assert len(c.dataset) == len(b.dataset) == 2


def test_bad_bytes_change_nothing() -> None:
    alice, bob = team(2)
    alice.config["lr"] = 0.3
    data = alice.export_since(bob.version)
    before = bob.export_since()
    for bad in (b"", b"\x12\x01garbage", data[:-3], data[:10] + b"\xff" + data[11:]):
        with pytest.raises(DecodeError):
            bob.merge_bytes(bad)
        assert bob.export_since() == before
    stranger = Run(config=CONFIG)
    stranger.config["lr"] = 0.7
    with pytest.raises(InvalidError, match="belong to run"):
        bob.merge_bytes(stranger.export_since())
    assert bob.export_since() == before


# -- convergence ----------------------------------------------------------------------------
ACTIONS = st.one_of(
    st.tuples(st.just("config"), st.integers(0, 1), st.integers(1, 9)),
    st.tuples(st.just("reset"), st.just(0), st.just(0)),
    st.tuples(st.just("add"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("add_many"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("remove"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("relabel"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("split"), st.integers(0, 5), st.integers(0, 2)),
    st.tuples(st.just("tag"), st.integers(0, 5), st.integers(0, 2)),
    st.tuples(st.just("untag"), st.integers(0, 5), st.integers(0, 2)),
    st.tuples(st.just("log"), st.integers(0, 3), st.integers(0, 5)),
    st.tuples(st.just("comment"), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("describe"), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("checkpoint"), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("control"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("command"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("member"), st.integers(0, 1), st.just(0)),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), st.integers(0, 2), ACTIONS),
        st.tuples(st.just("send"), st.integers(0, 2), st.integers(0, 2)),
    ),
    max_size=40,
)


def act(run: Run, action: tuple[str, int, int]) -> None:
    kind, a, b = action
    d = run.dataset
    payload = np.full(2, a, dtype=np.uint8)
    sid = sample_id(digest_of(encode_payload(payload)[1]))
    try:
        if kind == "config":
            if a == 0:
                run.config["lr"] = b / 10
            else:
                run.config["batch_size"] = b
        elif kind == "reset":
            run.config.reset("lr")
        elif kind == "add":
            d.add(payload, label=b if b else None)
        elif kind == "add_many":
            d.add_many(np.stack([payload, payload + 10]), labels=[b, b + 1], split="val")
        elif kind == "remove":
            d.remove(sid)
        elif kind == "relabel":
            d.relabel(sid, b)
        elif kind == "split":
            d.split(sid, ["train", "val", "test"][b])
        elif kind == "tag":
            d.tag(sid, f"t{b}")
        elif kind == "untag":
            d.untag(sid, f"t{b}")
        elif kind == "log":
            run.log({f"m{a}": float(b)}, step=b)
        elif kind == "comment":
            comments = run.notes.list()
            if b == 0 or not comments:
                run.notes.add(f"note {a}")
            elif b == 1:
                run.notes.edit(comments[a % len(comments)].id, f"edited {a}")
            elif b == 2:
                run.notes.resolve(comments[a % len(comments)].id)
            else:
                run.notes.delete(comments[a % len(comments)].id)
        elif kind == "describe":
            text = run.notes.description
            run.notes.description = text[:a] + f"<{b}>" + text[a:]
        elif kind == "checkpoint":
            run.checkpoints.add(bytes([a, b]), step=a * 10 + b)
        elif kind == "control":
            run.control.set_state(["running", "paused", "stopped"][a])
        elif kind == "command":
            pending = run.control.pending()
            if a == 0 or not pending:
                run.control.checkpoint_now()
            else:
                run.control.done(pending[0].id)
        elif kind == "member":
            run.members.identify(f"user{a}", role="editor")
    except KeyError:
        pass  # a sample this replica has not seen yet: the edit is refused, nothing changes


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(n=st.integers(2, 3), steps=STEPS)
def test_replicas_editing_every_part_concurrently_converge(
    n: int, steps: list[tuple[Any, ...]]
) -> None:
    runs = team(n)
    for step in steps:
        if step[0] == "edit":
            act(runs[step[1] % n], step[2])
        else:
            src, dst = runs[step[1] % n], runs[step[2] % n]
            if src is not dst:
                dst.merge_bytes(src.export_since(dst.version))
    sync(*runs)
    sync(*runs)  # a second round carries what the first relayed
    first = fingerprint(runs[0])
    for other in runs[1:]:
        assert fingerprint(other) == first
