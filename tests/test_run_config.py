"""The typed config schema and `LiveConfig`: every rule rejects with its exact message,
concurrent writes surface as conflicts and resolve the same way everywhere."""

from __future__ import annotations

import math
from typing import Any

import pytest

from convergent.crdt import HybridLogicalClock, ReplicaId
from convergent.errors import SchemaError
from convergent.run import Bool, Choice, Float, Int, List, LiveConfig, Run, Schema, Str

SCHEMA = Schema(
    {
        "lr": Float(0.1, min=0.0, max=1.0),
        "epochs": Int(10, min=1, max=1000),
        "batch_size": Int(64, min=1),
        "nesterov": Bool(False),
        "name": Str("digits", max_len=8),
        "optimizer": Choice("sgd", ["sgd", "adam", "adamw"]),
        "betas": List([0.9, 0.999], item="float", min=0.0, max=1.0, max_len=2),
        "layers": List([64, 32], item="int", min=1),
    }
)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", "fast", "config key 'lr': expected a float, got 'fast' (str)"),
        ("lr", None, "config key 'lr': expected a float, got None (NoneType)"),
        ("lr", True, "config key 'lr': expected a float, got True (bool)"),
        ("lr", -0.5, "config key 'lr': -0.5 is below the minimum 0.0"),
        ("lr", 2, "config key 'lr': 2 is above the maximum 1.0"),
        ("lr", math.nan, "config key 'lr': nan is not a finite number"),
        ("lr", math.inf, "config key 'lr': inf is not a finite number"),
        ("epochs", 2.5, "config key 'epochs': expected an int, got 2.5 (float)"),
        ("epochs", True, "config key 'epochs': expected an int, got True (bool)"),
        ("epochs", 0, "config key 'epochs': 0 is below the minimum 1"),
        ("epochs", 1001, "config key 'epochs': 1001 is above the maximum 1000"),
        ("nesterov", 1, "config key 'nesterov': expected a bool, got 1 (int)"),
        ("name", 7, "config key 'name': expected a string, got 7 (int)"),
        (
            "name",
            "a-much-longer-name",
            "config key 'name': a string of 18 characters is longer than the maximum 8",
        ),
        (
            "optimizer",
            "adamw2",
            "config key 'optimizer': 'adamw2' is not one of 'sgd', 'adam', 'adamw'",
        ),
        ("betas", 0.9, "config key 'betas': expected a list, got 0.9 (float)"),
        (
            "betas",
            [0.9, 0.99, 0.999],
            "config key 'betas': a list of 3 items is longer than the maximum 2",
        ),
        ("betas", [0.9, "x"], "config key 'betas': item 1 = expected a float, got 'x' (str)"),
        ("betas", [0.9, 1.5], "config key 'betas': item 1 = 1.5 is above the maximum 1.0"),
        ("layers", [64, 0], "config key 'layers': item 1 = 0 is below the minimum 1"),
        ("lrr", 0.1, "unknown config key 'lrr'; did you mean 'lr'?"),
        (
            "zzz",
            1,
            "unknown config key 'zzz'; known keys: batch_size, betas, epochs, layers, "
            "lr, name, nesterov, optimizer",
        ),
    ],
)
def test_every_rule_rejects_with_its_exact_message(key: str, value: Any, message: str) -> None:
    run = Run(config=SCHEMA)
    before = run.version
    with pytest.raises(SchemaError) as err:
        run.config[key] = value
    assert str(err.value) == message
    assert run.version == before  # nothing was written


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lr": Float(5.0, max=1.0)}, "config key 'lr': 5.0 is above the maximum 1.0"),
        ({"n": Int(True)}, "config key 'n': expected an int, got True (bool)"),  # type: ignore[arg-type]
        ({"o": Choice("x", ["a", "b"])}, "config key 'o': 'x' is not one of 'a', 'b'"),
        ({"": Int(1)}, "config keys are non-empty strings, not ''"),
    ],
)
def test_a_schema_refuses_defaults_that_break_their_own_rule(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(SchemaError) as err:
        Schema(params)
    assert str(err.value) == message


def test_malformed_parameters_are_refused() -> None:
    with pytest.raises(SchemaError, match="minimum 2 is above its maximum 1"):
        Int(1, min=2, max=1)
    with pytest.raises(SchemaError, match="at least one choice"):
        Choice("a", [])
    with pytest.raises(SchemaError, match="list items must be"):
        List([], item="dict")  # type: ignore[arg-type]


def test_values_are_stored_with_their_declared_types() -> None:
    config = Run(config=SCHEMA).config
    config["lr"] = 1  # an int written to a float key is stored as a float
    config["epochs"] = 2**9
    config["betas"] = [0.5, 1]
    assert config["lr"] == 1.0 and type(config["lr"]) is float
    assert type(config["epochs"]) is int
    assert config["betas"] == (0.5, 1.0)
    assert config.to_dict() == {**SCHEMA.defaults(), "lr": 1.0, "epochs": 512, "betas": (0.5, 1.0)}


def replicas(n: int, skews_ms: tuple[int, ...] = (0, 0, 0)) -> list[LiveConfig]:
    """Replica 1 creates the run with the schema; the others join it from its bytes."""
    now = [1_700_000_000_000]
    runs: list[Run] = []
    for i, s in zip(range(n), skews_ms, strict=False):
        clock = HybridLogicalClock(wall=lambda s=s: now[0] + s)
        join = runs[0].export_since() if runs else None
        runs.append(
            Run(
                config=SCHEMA if not runs else None,
                replica_id=ReplicaId(i + 1),
                clock=clock,
                join=join,
            )
        )
    return [r.config for r in runs]


def sync(*configs: LiveConfig) -> None:
    """Everyone sends everyone what they lack, as bytes."""
    runs = [c._run for c in configs]
    for a in runs:
        for b in runs:
            if a is not b:
                b.merge_bytes(a.export_since(b.version))


def test_concurrent_writes_are_both_kept_and_resolve_identically() -> None:
    alice, bob, carol = replicas(3, skews_ms=(0, 5, -5))
    alice["lr"] = 0.02
    bob["lr"] = 0.05
    sync(alice, bob, carol)
    for c in (alice, bob, carol):
        [conflict] = c.conflicts()
        assert conflict.key == "lr"
        assert sorted(w.value for w in conflict.values) == [0.02, 0.05]
        assert {w.author for w in conflict.values} == {1, 2}
        assert conflict.resolved == c["lr"] == 0.05  # bob's clock runs ahead: highest HLC
        assert all(w.time.year >= 2023 for w in conflict.values)
    # carol saw both: her write resolves the conflict everywhere.
    carol["lr"] = 0.03
    sync(alice, bob, carol)
    for c in (alice, bob, carol):
        assert c.conflicts() == []
        assert c["lr"] == 0.03
        assert [w.author for w in c.written("lr")] == [3]


def test_a_write_that_did_not_see_the_conflict_does_not_resolve_it() -> None:
    alice, bob, carol = replicas(3)
    alice["lr"] = 0.02
    bob["lr"] = 0.05
    carol["lr"] = 0.07  # concurrent with both
    sync(alice, bob, carol)
    assert [sorted(w.value for w in k.values) for k in alice.conflicts()] == [[0.02, 0.05, 0.07]]


def test_reset_returns_a_key_to_its_default() -> None:
    [config] = replicas(1)
    config["optimizer"] = "adam"
    config.reset("optimizer")
    assert config["optimizer"] == "sgd"


def test_update_many_is_all_or_nothing() -> None:
    [config] = replicas(1)
    with pytest.raises(SchemaError, match="'epochs': 0 is below"):
        config.update_many({"lr": 0.5, "epochs": 0})
    assert config["lr"] == 0.1
    config.update_many({"lr": 0.5, "epochs": 3})
    assert (config["lr"], config["epochs"]) == (0.5, 3)
