"""A run stored with `convergent.open` keeps every edit that returned: across close and
reopen, across snapshots, across a SIGKILL, and across processes that exchange bytes through
files. A damaged or busy file raises `StorageError`; it never opens as a smaller run.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import convergent
from convergent.codec import encode
from convergent.crdt import HybridLogicalClock
from convergent.errors import StorageError
from convergent.run import Float, Int, Run
from convergent.run.ops import decode_snapshot
from convergent.storage import MemoryStore, SQLiteStore

SRC = Path(__file__).resolve().parents[1] / "src"
CONFIG = {"lr": Float(0.1, min=0.0, max=1.0), "epochs": Int(10, min=1)}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def state_of(run: Run) -> dict[str, Any]:
    """Everything a user can read from a run, in comparable form."""
    ids = run.dataset.ids().tolist()
    series = {name: run.metrics(name) for name in run.metric_names()}
    return {
        "id": run.id,
        "replica": run.replica_id,
        "ops": run.version.ops,
        "config": run.config.to_dict(),
        "written": {key: run.config.written(key) for key in run.config},
        "conflicts": run.config.conflicts(),
        "ids": ids,
        "labels": run.dataset.labels().tolist(),
        "samples": list(run.dataset),
        "payloads": [np.asarray(run.dataset.payload(s)).tolist() for s in ids],
        "metrics": {
            name: (s.step.tolist(), s.value.tolist(), s.time.tolist(), s.writer.tolist())
            for name, s in series.items()
        },
        "notes": run.notes.list(),
        "description": run.notes.description,
        "checkpoints": [(c, run.checkpoints.load(c.id)) for c in run.checkpoints.list()],
        "control": (run.control.state, run.control.pending()),
        "members": run.members.list(),
        "history": run.history(),
        "export": run.export_since(),
    }


def edit_everything(run: Run, seed: int = 0) -> None:
    """At least one edit of every kind a run has."""
    rng = np.random.default_rng(seed)
    run.config["lr"] = 0.02
    run.config.update_many({"lr": 0.03, "epochs": 20})
    x = rng.standard_normal((24, 8)).astype(np.float32)
    ids = run.dataset.add_many(x, [i % 3 for i in range(24)], split="train")
    run.dataset.add("a text sample", label=1, name="note.txt")
    run.dataset.relabel(ids[0], 2)
    run.dataset.remove([ids[1], ids[2]])
    run.dataset.split(ids[3], "val")
    run.dataset.tag(ids[4], "hard", "checked")
    for step in range(10):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
    first = run.notes.add("lr looks high")
    second = run.notes.add("try a warmup")
    run.notes.edit(first, "lr looked high; lowered")
    run.notes.resolve(second)
    run.notes.description = "digits, small MLP"
    run.checkpoints.add(rng.bytes(5000), step=9, metrics={"loss": 0.1}, name="best")
    run.control.pause()
    run.control.request("checkpoint")


# -- close and reopen --------------------------------------------------------------------------
def test_every_kind_of_edit_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "run.convergent"
    with convergent.open(path, config=CONFIG, user="alice") as run:
        edit_everything(run)
        before = state_of(run)
    assert before["config"] == {"lr": 0.03, "epochs": 20}
    assert len(before["ids"]) == 23 and before["control"][0] == "paused"

    with convergent.open(path) as run:
        assert state_of(run) == before
        # A reopened run goes on with fresh sequence numbers: nothing it adds is mistaken
        # for an op it already holds.
        run.config["lr"] = 0.5
        run.log({"loss": 0.05})
    with convergent.open(path, config=CONFIG, user="alice") as run:  # declared alike: no-op
        assert run.config["lr"] == 0.5
        assert run.metrics("loss").step.tolist() == [*range(10), 10]
        assert run.version.ops == before["ops"] + 2


def test_reopen_after_ten_thousand_config_edits(tmp_path: Path) -> None:
    path = tmp_path / "run.convergent"
    with convergent.open(path, config={"n": Int(0, min=0)}) as run:
        for i in range(1, 10_001):
            run.config["n"] = i
        ops = run.version.ops
    assert ops == 10_001  # the declaration, then one op per edit
    with convergent.open(path) as run:
        assert run.config["n"] == 10_000
        assert run.version.ops == ops
        assert run.config.conflicts() == []


def test_reopen_from_snapshot_and_tail_equals_replaying_everything(tmp_path: Path) -> None:
    path = tmp_path / "run.convergent"
    with convergent.open(path, config=CONFIG, user="alice") as run:
        edit_everything(run)
        while run.version.ops < 1010:
            n = run.version.ops
            if n % 3 == 0:
                run.config["epochs"] = n
            elif n % 3 == 1:
                run.log({"loss": 1 / n})
            else:
                run.dataset.add(np.full(4, n, dtype=np.int16), label=n % 5)
        total = run.version.ops

    store = SQLiteStore(path)
    try:
        snap = store.snapshot()
        last = max(p for p, _ in store.ops_after(0))
    finally:
        store.close()
    assert snap is not None and snap.position >= 1000  # taken while editing, past 1000 ops
    assert snap.position < last  # and there is a tail after it to replay

    # The same file without its snapshot: a reopen replays every op.
    replay = tmp_path / "replay.convergent"
    shutil.copy(path, replay)
    with sqlite3.connect(replay) as db:
        db.execute("DELETE FROM snapshot")
    db.close()

    with convergent.open(path) as from_snapshot, convergent.open(replay) as from_log:
        assert from_snapshot.version.ops == total
        a, b = state_of(from_snapshot), state_of(from_log)
        # A copied file is another replica: it takes a new id for the ops it makes.
        assert a.pop("replica") != b.pop("replica")
        assert a == b
        from_snapshot.compact()
        from_log.compact()
    # The snapshot encoding is canonical: equal states give equal bytes (all but the clock
    # reading each snapshot carries).
    stores = [SQLiteStore(p) for p in (path, replay)]
    try:
        a, b = (s.snapshot() for s in stores)
        assert a is not None and b is not None
        (va, _, pa), (vb, _, pb) = decode_snapshot(a.data), decode_snapshot(b.data)
        assert va == vb
        assert {p: encode(s) for p, s in pa.items()} == {p: encode(s) for p, s in pb.items()}
    finally:
        for s in stores:
            s.close()


# -- a killed process -------------------------------------------------------------------------
WRITER = """
import sys
import convergent
from convergent.run import Float

run = convergent.open(sys.argv[1], config={"lr": Float(0.0, min=0.0)})
for i in range(1, 200_000):
    run.config["lr"] = i / 1_000_000
    run.log({"loss": 1.0 / i}, step=i)
    print(f"done {i}", flush=True)
"""


def read_lines(stream: Any, out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def test_confirmed_edits_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "run.convergent"
    with (tmp_path / "writer.err").open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            stderr=err,
            env=child_env(),
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(child.stdout, lines), daemon=True)
    reader.start()
    confirmed = 0
    try:
        deadline = time.monotonic() + 60
        while confirmed < 300:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, (tmp_path / "writer.err").read_text()
            confirmed = int(line.split()[1])
        # While the writer holds the file, nobody else may open it.
        with pytest.raises(StorageError, match="open in another process"):
            convergent.open(path)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    reader.join(timeout=60)
    assert child.stdout is not None
    child.stdout.close()
    while (line := lines.get_nowait()) is not None:
        confirmed = int(line.split()[1])  # printed after the edits returned: confirmed too

    with convergent.open(path) as run:
        steps = run.metrics("loss").step.tolist()
        assert steps[:confirmed] == list(range(1, confirmed + 1))
        assert steps == list(range(1, len(steps) + 1))  # no hole after a kill mid-commit
        assert run.config["lr"] >= confirmed / 1_000_000
        assert run.version.ops >= 1 + 2 * confirmed


# -- two processes exchanging bytes through files ---------------------------------------------
PEER = """
import sys
from pathlib import Path

import numpy as np

import convergent
from convergent.run import Float, Version

phase, folder = sys.argv[1], Path(sys.argv[2])
config = {"lr": Float(0.1, min=0.0, max=1.0)}
with convergent.open(folder / "a.convergent", config=config, user="a") as run:
    if phase == "create":
        run.dataset.add_many(np.arange(12, dtype=np.float64).reshape(3, 4), [0, 1, 2])
        (folder / "a-join.bin").write_bytes(run.export_since())
    elif phase == "edit":
        run.config["lr"] = 0.05
        run.dataset.relabel(int(run.dataset.ids()[0]), 7)
        run.dataset.add(np.full(4, 100.0), label=3)
        b_version = Version.from_bytes((folder / "b-version.bin").read_bytes())
        (folder / "a-ops.bin").write_bytes(run.export_since(b_version))
        (folder / "a-version.bin").write_bytes(run.version.to_bytes())
    elif phase == "merge":
        assert run.merge_bytes((folder / "b-ops.bin").read_bytes()) > 0
"""


def run_peer(folder: Path, phase: str) -> subprocess.Popen[bytes]:
    script = folder / "peer.py"
    if not script.exists():
        script.write_text(PEER)
    with (folder / f"peer-{phase}.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(script), phase, str(folder)],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def finish(peer: subprocess.Popen[bytes], folder: Path, phase: str) -> None:
    assert peer.wait(timeout=60) == 0, (folder / f"peer-{phase}.err").read_text()


def test_two_processes_exchange_through_files_and_converge(tmp_path: Path) -> None:
    finish(run_peer(tmp_path, "create"), tmp_path, "create")
    b_path = tmp_path / "b.convergent"
    with convergent.open(b_path, join=(tmp_path / "a-join.bin").read_bytes(), user="b") as b:
        assert b.config["lr"] == 0.1
        assert sorted(b.dataset.labels().tolist()) == [0, 1, 2]
        (tmp_path / "b-version.bin").write_bytes(b.version.to_bytes())
        # Both edit at once, neither having seen the other's edits.
        peer = run_peer(tmp_path, "edit")
        ids = b.dataset.ids().tolist()
        b.config["lr"] = 0.02
        b.dataset.relabel(ids[0], 8)
        b.dataset.remove(ids[1])
        b.dataset.add(np.full(4, -1.0), label=4)
        finish(peer, tmp_path, "edit")

        assert b.merge_bytes((tmp_path / "a-ops.bin").read_bytes()) > 0
        a_version = (tmp_path / "a-version.bin").read_bytes()
        (tmp_path / "b-ops.bin").write_bytes(b.export_since(a_version))
        finish(run_peer(tmp_path, "merge"), tmp_path, "merge")

        with convergent.open(tmp_path / "a.convergent") as a:
            assert a.id == b.id and a.replica_id != b.replica_id
            assert a.version == b.version
            conflicts = b.config.conflicts()
            assert a.config.conflicts() == conflicts
            assert [c.key for c in conflicts] == ["lr"]
            assert sorted(w.value for w in conflicts[0].values) == [0.02, 0.05]
            assert a.config.to_dict() == b.config.to_dict()
            assert a.dataset.ids().tolist() == b.dataset.ids().tolist()
            assert len(b.dataset) == 4  # 3 + one each - the one b removed
            assert a.dataset.labels().tolist() == b.dataset.labels().tolist()
            assert a.dataset[ids[0]].label == b.dataset[ids[0]].label
            assert b.dataset[ids[0]].label in (7, 8)
            assert np.array_equal(a.dataset.arrays()[0], b.dataset.arrays()[0])


# -- damaged and busy files -------------------------------------------------------------------
@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A closed run file: a snapshot (written at close) and a tail of ops after it."""
    path = tmp_path_factory.mktemp("pristine") / "run.convergent"
    with convergent.open(path, config=CONFIG, user="alice") as run:
        edit_everything(run)
        x = np.random.default_rng(1).standard_normal((200, 64))
        run.dataset.add_many(x, list(range(200)))
        for step in range(10, 150):
            run.log({"loss": 1 / step}, step=step)
    with convergent.open(path) as run:
        for i in range(20):
            run.config["epochs"] = 30 + i
        state = state_of(run)
    return path, state


def damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "truncate":
        with path.open("r+b") as f:
            f.truncate(size // 2)
    elif how == "overwrite middle":
        page = 4096
        with path.open("r+b") as f:
            f.seek((size // 2) // page * page)
            f.write(random.Random(7).randbytes(page))
    else:
        with sqlite3.connect(path) as db:
            tail = db.execute("SELECT pos, data FROM ops ORDER BY pos DESC LIMIT 2").fetchall()
            (pos, data), (other_pos, other_data) = tail
            if how == "op bytes flipped":
                flipped = bytes(x ^ 0xFF for x in data)
                db.execute("UPDATE ops SET data = ? WHERE pos = ?", (flipped, pos))
            elif how == "ops swapped":  # whole, with matching CRCs, but in each other's place
                for p, d in ((pos, other_data), (other_pos, data)):
                    db.execute(
                        "UPDATE ops SET data = ?, crc = ? WHERE pos = ?", (d, zlib.crc32(d), p)
                    )
            elif how == "snapshot bytes flipped":
                (snap,) = db.execute("SELECT data FROM snapshot").fetchone()
                db.execute("UPDATE snapshot SET data = ?", (bytes(x ^ 0xFF for x in snap),))
            elif how == "snapshot unreadable":
                bad = b"\x00not a snapshot"
                db.execute("UPDATE snapshot SET data = ?, crc = ?", (bad, zlib.crc32(bad)))
        db.close()


DAMAGE = {
    "truncate": "is damaged|is not a readable convergent store",
    "overwrite middle": "is damaged|is not a readable convergent store",
    "op bytes flipped": r"op \d+ of replica [0-9a-f]{16} is damaged \(CRC\)",
    "ops swapped": r"op at log position \d+ is not the op it claims",
    "snapshot bytes flipped": r"the snapshot is damaged \(CRC\)",
    "snapshot unreadable": "the store's snapshot cannot be read",
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_run_file_raises_storage_error(
    pristine: tuple[Path, dict[str, Any]], tmp_path: Path, how: str
) -> None:
    source, state = pristine
    path = tmp_path / "run.convergent"
    shutil.copy(source, path)
    with convergent.open(path) as run:  # the copy itself is whole (a new replica of it)
        assert {**state_of(run), "replica": None} == {**state, "replica": None}
    damage(path, how)
    with pytest.raises(StorageError, match=DAMAGE[how]):
        convergent.open(path)
    # The refused open released the file: trying again meets the damage, not a lock.
    with pytest.raises(StorageError, match=DAMAGE[how]):
        convergent.open(path)


def test_a_blob_damaged_on_disk_is_refused_when_read(
    pristine: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, state = pristine
    path = tmp_path / "run.convergent"
    shutil.copy(source, path)
    checkpoint = state["checkpoints"][0][0]
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE blobs SET data = ? WHERE digest = ?",
            (b"not the checkpoint", bytes.fromhex(checkpoint.digest)),
        )
    db.close()
    with convergent.open(path) as run:
        with pytest.raises(StorageError, match="is damaged: its bytes do not match"):
            run.checkpoints.load(checkpoint.id)
        assert run.config.to_dict() == state["config"]


def test_a_run_file_held_by_another_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.convergent"
    with convergent.open(path, config=CONFIG) as holder:
        holder.config["lr"] = 0.2
        with pytest.raises(StorageError, match="open in another process"):
            convergent.open(path)
        holder.config["lr"] = 0.3  # the refused open did not disturb the holder
    with convergent.open(path) as run:
        assert run.config["lr"] == 0.3
        assert run.version.ops == 3


# -- failures while committing, clocks across snapshots -------------------------------------
class FailingStore(MemoryStore):
    """A store whose next append fails (a full disk, a lock held too long)."""

    fail_next = False

    def append(self, batch: Any) -> list[int]:
        if self.fail_next:
            self.fail_next = False
            raise StorageError("disk full")
        return super().append(batch)


def test_an_edit_the_store_refuses_never_happened() -> None:
    store = FailingStore()
    run = Run(store, config={"lr": Float(0.1, min=0.0)})
    run.config["lr"] = 0.2
    ids = run.dataset.add_many(np.eye(3), labels=[0, 1, 2])
    before = run.export_since()
    store.fail_next = True
    with pytest.raises(StorageError, match="disk full"), run.transaction():
        run.config["lr"] = 0.5
        run.dataset.remove(ids[0])
    assert (run.config["lr"], len(run.dataset)) == (0.2, 3)  # memory agrees with the store
    assert run.export_since() == before
    run.config["lr"] = 0.3  # and the run goes on
    peer = Run(join=run.export_since())
    assert (peer.config["lr"], len(peer.dataset)) == (0.3, 3)


def test_a_reopened_run_never_stamps_earlier_than_it_already_did(tmp_path: Path) -> None:
    path = tmp_path / "a.convergent"
    slow = HybridLogicalClock(wall=lambda: 1_000_000)
    a = Run(SQLiteStore(path), clock=slow)
    b = Run(join=a.export_since(), clock=HybridLogicalClock(wall=lambda: 2_000_000))
    b.log({"loss": 9.0})  # a peer whose clock runs ahead
    a.merge_bytes(b.export_since(a.version))
    for _ in range(1_100):  # enough for a snapshot that covers every op
        a.log({"loss": 1.0})
    a.close()
    a = Run(SQLiteStore(path), clock=HybridLogicalClock(wall=lambda: 1_000_001))
    a.log({"loss": 0.5})
    loss = a.metrics("loss")
    mine = loss.time[loss.writer == a.replica_id]
    assert (np.diff(mine) >= 0).all()
    a.close()


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("CREATE TABLE ops (x)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="not a convergent store"):
        convergent.open(path)
    assert path.read_bytes() == before  # not switched to WAL, no marker written
    with pytest.raises(StorageError, match="cannot be created"):
        convergent.open(path / "run.convergent")  # a path below a regular file
