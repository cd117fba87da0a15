"""A run merges what other replicas send; a replica with another build (or a bug) can send
values this build would never write. Every view must read past them, never crash, and an
op that cannot be stored must be refused whole.

The "rogue" replica below is an ordinary replica of the same run that writes values through
the run's internal edit path, as a newer or buggy build would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from convergent.crdt import RGA, AWSet, ORMap
from convergent.errors import InvalidError, SchemaError
from convergent.run import Choice, Float, Part, Run
from convergent.run.ops import Bundle, decode_bundle, decode_op, encode_bundle, encode_op


def pair() -> tuple[Run, Run]:
    alice = Run(config={"lr": Float(0.1, min=0.0, max=1.0)}, user="alice")
    return alice, Run(join=alice.export_since(), user="mallory")


def deliver(src: Run, dst: Run) -> None:
    dst.merge_bytes(src.export_since(dst.version))


def test_an_op_stamped_beyond_the_largest_timestamp_is_refused() -> None:
    alice, bob = pair()
    bob.config["lr"] = 0.5
    bundle = decode_bundle(bob.export_since(alice.version))
    forged = []
    for raw, blobs in bundle.ops:
        op = decode_op(raw)
        forged.append((encode_op(op.origin, op.seq, 2**63, op.deltas), blobs))
    before = alice.export_since()
    with pytest.raises(InvalidError, match="beyond the largest timestamp"):
        alice.merge_bytes(encode_bundle(Bundle(bundle.run_id, tuple(forged))))
    assert alice.export_since() == before
    alice.config["lr"] = 0.2  # and the replica still commits
    assert alice.config["lr"] == 0.2


def test_a_malformed_rule_does_not_take_the_other_keys_down() -> None:
    alice, rogue = pair()
    rogue._edit(Part.SCHEMA, ORMap.set, "zz", ("int", "x", None, None, (), None, None, ""))
    rogue._edit(Part.SCHEMA, ORMap.set, "layers", ("list", (1, 2), None, None, (), None, None, ""))
    deliver(rogue, alice)
    alice.config["lr"] = 0.2
    assert alice.config.to_dict() == {"lr": 0.2}
    assert sorted(key for key, _, _ in alice.config.invalid()) == ["layers", "zz"]
    with pytest.raises(SchemaError, match="unknown config key 'zz'"):
        alice.config["zz"] = 1
    assert alice.snapshot().config["lr"] == 0.2


@pytest.mark.parametrize(
    ("part", "key", "value"),
    [
        (Part.SPLITS, "sample", (1, 2)),  # a split that is not one of train/val/test
        (Part.LABELS, "sample", 2**70),  # a label beyond int64
        (Part.PAYLOADS, "sample", 42),  # a payload record that is not "kind[:name]"
        (Part.REPLICAS, "not-hex!", "mallory"),  # a replica key that is not an id
        (Part.MEMBERS, "eve", 42),  # a member record that is not (name, role)
        (Part.CHECKPOINTS, "c1", ("step", 1)),  # a checkpoint record of another shape
        (Part.COMMANDS, "k1", 7),  # a command that is not (name, argument)
        (Part.CONTROL, "state", 3.5),  # a state that is not running/paused/stopped
        (Part.METRIC_NAMES, "zz:top", "loss"),  # a metric-name key of another shape
    ],
)
def test_views_read_past_records_of_another_shape(part: Part, key: Any, value: Any) -> None:
    alice, rogue = pair()
    sid = alice.dataset.add(np.arange(3, dtype=np.uint8), label=1)
    alice.log({"loss": 1.0})
    deliver(alice, rogue)
    rogue._edit(part, ORMap.set, sid if key == "sample" else key, value)
    deliver(rogue, alice)
    view = alice.dataset.view()
    assert view.ids.tolist() == [sid]
    assert view.splits.tolist() == ["train"]
    assert len(alice.dataset.labels()) == 1
    assert len(list(alice.dataset)) == 1
    assert alice.members.name_of(alice.replica_id) == "alice"
    alice.members.list()
    alice.checkpoints.list()
    alice.control.pending()
    assert isinstance(alice.control.state, str)
    assert alice.metrics("loss").value.tolist() == [1.0]
    alice.history()
    alice.snapshot()


def test_samples_the_set_holds_without_a_payload_record_still_read() -> None:
    alice, rogue = pair()
    rogue._edit(Part.SAMPLES, AWSet.add, 12345)
    rogue._edit(Part.SAMPLES, AWSet.add, "not-an-id")  # not an int64: not a sample
    deliver(rogue, alice)
    assert alice.dataset.ids().tolist() == [12345]
    sample = alice.dataset[12345]
    assert (sample.label, sample.kind) == (None, "")
    with pytest.raises(KeyError, match="not on this replica"):
        alice.dataset.payload(12345)


def test_comments_and_description_survive_odd_values() -> None:
    alice, rogue = pair()
    alice.notes.description = "hello"
    deliver(alice, rogue)
    rogue._edit(Part.DESCRIPTION, RGA.insert, 0, "ab")  # an element of two characters
    rogue._edit(Part.DESCRIPTION, RGA.insert, 0, 7)  # and one that is not text
    cid = "deadbeefdeadbeef"
    actor = rogue._actor(Part.COMMENTS)
    rogue._edit(Part.COMMENTS, ORMap.apply, cid, lambda m: m.set("created", 2**80, by=actor))
    rogue._edit(Part.COMMENTS, ORMap.apply, cid, lambda m: m.set("author", "zz", by=actor))
    deliver(rogue, alice)
    assert alice.notes.description == "abhello"
    alice.notes.description = "hi"  # the setter replaces whatever elements are there
    assert alice.notes.description == "hi"
    [comment] = [c for c in alice.notes.list() if c.id == cid]
    assert comment.created.year == 9999 and comment.author == 0


def test_an_empty_run_can_be_joined() -> None:
    alice = Run()
    bob = Run(join=alice.export_since())
    assert alice.id == bob.id
    bob.config.declare({"lr": Float(0.1)})
    deliver(bob, alice)
    assert alice.config["lr"] == 0.1


def test_input_checks_come_before_any_change() -> None:
    run = Run(user="alice")
    sid = run.dataset.add(np.zeros(2), label=0)
    run.dataset.tag(sid, "a", "b")
    before = run.export_since()
    with pytest.raises(SchemaError, match="a tag is a non-empty string"):
        run.dataset.untag(sid, "a", 1.5)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="a display name is a string"):
        run.members.identify("alice", display_name=42)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="out of range"):
        run.dataset.relabel(sid, 2**63)
    with pytest.raises(SchemaError, match="out of range"):
        run.dataset.add_many(np.ones((1, 2)), np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(SchemaError, match="history limit"):
        run.history(limit=-1)
    assert run.export_since() == before
    assert run.history(limit=0) == []


def test_declaring_a_rule_compares_values_exactly() -> None:
    run = Run(config={"flag": Choice(0, [0, 1])})
    run.config.declare({"flag": Choice(False, [False, True])})  # not the same rule
    run.config["flag"] = True
    assert run.config["flag"] is True


def test_the_default_step_is_one_past_the_highest_logged() -> None:
    run = Run()
    run.log({"loss": 1.0}, step=5)
    run.log({"loss": 1.0}, step=100)
    run.log({"loss": 1.0}, step=7)  # a late point for an earlier step
    run.log({"loss": 1.0})
    assert run.metrics("loss").step.tolist() == [5, 7, 100, 101]
