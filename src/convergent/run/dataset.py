"""`Dataset`: a run's training data, edited by many people at once.

A sample is identified by the hash of its content (a 64-bit id: the first 8 bytes of the
payload's BLAKE2b digest, shown as 16 hex digits), so the same image added by two people is
one sample, and its payload (an array, a text, a file) is stored once as a blob beside the
log. The CRDT holds only metadata: the set of sample ids (an add-wins `AWSet`: an add
concurrent with a remove keeps the sample), and per sample a label, a split and tags. Labels
and splits live outside the id set, so a relabel made while someone else removed the sample
comes back with it when the sample is re-added.

Example:
    >>> import numpy as np
    >>> from convergent.run import Run
    >>> run = Run()
    >>> ids = run.dataset.add_many(np.eye(3, dtype=np.uint8), labels=[0, 1, 2])
    >>> run.dataset.relabel(ids[1], 7)
    >>> run.dataset.remove(ids[2])
    >>> len(run.dataset), sorted(run.dataset.labels().tolist())
    (2, [0, 7])
"""

from __future__ import annotations

import csv
import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convergent.crdt import AWSet, MVRegister, ORMap
from convergent.crdt.dotstore import STR_KEYS
from convergent.crdt.values import Value
from convergent.errors import SchemaError, StorageError
from convergent.run.document import digest_of
from convergent.run.ops import Part

if TYPE_CHECKING:
    from convergent.run.document import Run

SPLITS = ("train", "val", "test")
SMALL_BATCH = 64
DEFAULT_SPLIT = "train"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".pgm", ".ppm"}
TEXT_SUFFIXES = {".txt", ".md", ".json", ".csv"}

# Payload blobs start with one byte naming what follows.
_ARRAY, _TEXT, _BYTES = 1, 2, 3


def encode_array_header(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    code = dtype.str.encode()
    return (
        bytes((_ARRAY, len(code)))
        + code
        + bytes((len(shape),))
        + struct.pack(f"<{len(shape)}I", *shape)
    )


def encode_payload(payload: Any) -> tuple[str, bytes]:
    """``(kind, blob bytes)`` for an array, a string or bytes."""
    if isinstance(payload, str):
        return "text", bytes((_TEXT,)) + payload.encode("utf-8", "strict")
    if isinstance(payload, bytes | bytearray | memoryview):
        return "bytes", bytes((_BYTES,)) + bytes(payload)
    arr = np.ascontiguousarray(payload)
    if arr.dtype.kind not in "biuf" or arr.dtype.hasobject:
        raise SchemaError(
            f"a sample payload is a numeric array, a str or bytes, not {type(payload).__name__}"
            + (f" of dtype {arr.dtype}" if isinstance(payload, np.ndarray) else "")
        )
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return "array", encode_array_header(arr.dtype, arr.shape) + arr.tobytes()


def decode_payload(data: bytes) -> np.ndarray[Any, Any] | str | bytes:
    """Inverse of `encode_payload`; a damaged blob raises `StorageError`."""
    try:
        kind = data[0]
        if kind == _TEXT:
            return data[1:].decode("utf-8")
        if kind == _BYTES:
            return data[1:]
        if kind == _ARRAY:
            n = data[1]
            dtype = np.dtype(data[2 : 2 + n].decode())
            ndim = data[2 + n]
            at = 3 + n
            shape = struct.unpack_from(f"<{ndim}I", data, at)
            body = data[at + 4 * ndim :]
            if len(body) != dtype.itemsize * math.prod(shape):
                raise ValueError("array payload has the wrong length")
            return np.frombuffer(body, dtype=dtype).reshape(shape)
        raise ValueError(f"unknown payload kind {kind}")
    except (ValueError, TypeError, IndexError, struct.error, UnicodeDecodeError) as err:
        raise StorageError(f"a sample payload cannot be read: {err}") from None


def _check_label(label: Any) -> Value:
    if type(label) is str:
        return str(label)
    if type(label) is int or isinstance(label, np.integer):
        if not -(1 << 63) <= int(label) < (1 << 63):
            raise SchemaError(f"a label is an int64 or a str; {label} is out of range")
        return int(label)
    if isinstance(label, np.str_):
        return str(label)
    raise SchemaError(f"a label is an int or a str, not {label!r} ({type(label).__name__})")


def _check_split(split: Any) -> str:
    if split not in SPLITS:
        raise SchemaError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    return str(split)


M64 = (1 << 64) - 1


def sample_id(digest: bytes) -> int:
    """The sample id of a payload digest: its first 8 bytes as a signed 64-bit int (a numpy
    int64 column in the CRDT, not a 32-character string)."""
    return int.from_bytes(digest[:8], "big", signed=True)


def format_id(sid: int) -> str:
    """A sample id as people see it: 16 hex digits."""
    return f"{sid & M64:016x}"


def parse_id(value: Any) -> int:
    """A sample id from an int or its 16-hex-digit form."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        v = int(value)
        if -(1 << 63) <= v < (1 << 63):
            return v
    elif isinstance(value, str) and len(value) == 16:
        try:
            u = int(value, 16)
        except ValueError:
            pass
        else:
            return u - (1 << 64) if u >= 1 << 63 else u
    raise KeyError(f"{value!r} is not a sample id (an int64 or 16 hex digits)")


def resolved_column(state: ORMap, keys: NDArray[Any]) -> tuple[list[Value], NDArray[np.bool_]]:
    """The resolved value (highest HLC, then replica id) of a map of registers for each of
    ``keys`` (int64, sorted or not), and which keys have one. Vectorized: one sort."""
    rows = state.store.rows()
    if not len(rows) or not len(keys):
        return [None] * len(keys), np.zeros(len(keys), dtype=np.bool_)
    assert rows.hlcs is not None and rows.values is not None
    rkeys = np.asarray(rows.keys)
    if rkeys.dtype.kind != "i":
        found = resolved_values(state)
        vals = [found.get(k) for k in keys.tolist()]
        return vals, np.array([k in found for k in keys.tolist()], dtype=np.bool_)
    order = np.lexsort((rows.reps, rows.hlcs, rkeys))
    sk = rkeys[order]
    last = np.ones(len(sk), dtype=np.bool_)
    last[:-1] = sk[1:] != sk[:-1]
    winners = order[last]
    wkeys = rkeys[winners]
    at = np.searchsorted(wkeys, keys)
    at_ok = np.minimum(at, len(wkeys) - 1)
    present = (at < len(wkeys)) & (wkeys[at_ok] == keys)
    values = rows.values
    picked = winners[at_ok].tolist()
    out = [values[i] if ok else None for i, ok in zip(picked, present.tolist(), strict=True)]
    return out, present


def resolved_values(state: ORMap) -> dict[Any, Value]:
    """Key -> resolved value (highest HLC, then replica id) of a map of registers."""
    rows = state.store.rows()
    out: dict[Any, Value] = {}
    if not len(rows):
        return out
    assert rows.hlcs is not None and rows.values is not None
    # Rows are sorted by key; within a key keep the entry with the highest (hlc, replica).
    best: dict[Any, tuple[int, int, Value]] = {}
    for k, h, r, v in zip(
        rows.keys, rows.hlcs.tolist(), rows.reps.tolist(), rows.values, strict=True
    ):
        cur = best.get(k)
        if cur is None or (h, r) > cur[:2]:
            best[k] = (h, r, v)
    for k, (_, _, v) in best.items():
        out[k] = v
    return out


@dataclass(frozen=True)
class Sample:
    """One sample as the run sees it now."""

    id: int
    label: Value
    split: str
    tags: frozenset[str]
    kind: str
    name: str | None


@dataclass(frozen=True)
class DatasetView:
    """The current samples as columns, sorted by id (cached until the dataset changes)."""

    ids: NDArray[Any]
    labels: NDArray[Any]
    splits: NDArray[Any]


def _labels_column(labels: list[Value]) -> NDArray[Any]:
    if labels and all(type(x) is int and -(1 << 63) <= x < (1 << 63) for x in labels):
        return np.array(labels, dtype=np.int64)
    out = np.empty(len(labels), dtype=object)
    out[:] = labels
    return out


class Dataset:
    """The samples of a `Run`: add, remove, relabel, tag, split; read the current view."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._view: tuple[tuple[int, int, int], DatasetView] | None = None
        self._payloads: dict[int, Any] = {}  # content-addressed, so never stale

    # -- editing ---------------------------------------------------------------------------
    def add(
        self,
        payload: Any,
        *,
        label: Any = None,
        split: str | None = None,
        tags: Iterable[str] = (),
        name: str | None = None,
    ) -> int:
        """Add one sample (an array, a str or bytes); returns its id (from the content hash).

        Adding content that is already a sample re-adds it (and wins over a concurrent
        remove); its label is changed only if ``label`` is given.
        """
        kind, blob = encode_payload(payload)
        return self._add_blobs(
            [blob],
            [kind],
            None if label is None else [label],
            split,
            tags,
            None if name is None else [name],
        )[0]

    def add_many(
        self,
        payloads: Iterable[Any] | NDArray[Any],
        labels: Sequence[Any] | NDArray[Any] | None = None,
        *,
        split: str | Sequence[str] | None = None,
        tags: Iterable[str] = (),
        names: Sequence[str] | None = None,
    ) -> list[int]:
        """Add many samples as one op; returns their ids in input order.

        ``payloads`` is a numpy array (one sample per row along the first axis) or any
        iterable of payloads. 100,000 samples in one call is normal: ids, labels and splits
        go into the CRDT as numpy columns with one contiguous range of dots.
        """
        if isinstance(payloads, np.ndarray):
            blobs, kinds = _array_rows(payloads)
        else:
            encoded = [encode_payload(p) for p in payloads]
            kinds = [k for k, _ in encoded]
            blobs = [b for _, b in encoded]
        return self._add_blobs(blobs, kinds, labels, split, tags, names)

    def _add_blobs(
        self,
        blobs: list[bytes],
        kinds: list[str],
        labels: Sequence[Any] | NDArray[Any] | None,
        split: str | Sequence[str] | None,
        tags: Iterable[str],
        names: Sequence[str] | None,
    ) -> list[int]:
        n = len(blobs)
        digests = [digest_of(b) for b in blobs]
        ids = [sample_id(d) for d in digests]
        if labels is not None:
            if len(labels) != n:
                raise SchemaError(f"{n} samples but {len(labels)} labels")
            label_list = _label_list(labels)
        if isinstance(split, str):
            split_list = [_check_split(split)] * n if n else []
        elif split is not None:
            if len(split) != n:
                raise SchemaError(f"{n} samples but {len(split)} splits")
            split_list = [_check_split(s) for s in split]
        if names is not None and len(names) != n:
            raise SchemaError(f"{n} samples but {len(names)} names")
        tag_list = [_check_tag(t) for t in tags]
        if not n:
            return []
        # Later duplicates win, like writing them one after the other.
        last = {sid: i for i, sid in enumerate(ids)}
        order = sorted(last.values())
        uniq = np.array([ids[i] for i in order], dtype=np.int64)
        run = self._run
        with run.transaction():
            run._put_blobs({digests[i]: blobs[i] for i in order})
            known = run._state(Part.PAYLOADS)
            new = [i for i in order if ids[i] not in known]
            if new:
                # "kind" or "kind:name": a string column encodes far tighter than tuples.
                meta = [kinds[i] if names is None else f"{kinds[i]}:{names[i]}" for i in new]
                self._set_keys(Part.PAYLOADS, [ids[i] for i in new], meta)
            self._add_ids(uniq)
            if labels is not None:
                self._set_keys(Part.LABELS, uniq.tolist(), [label_list[i] for i in order])
            if split is not None:
                self._set_keys(Part.SPLITS, uniq.tolist(), [split_list[i] for i in order])
            for sid in uniq.tolist() if tag_list else ():
                for tag in tag_list:
                    self._tag(sid, tag)
        return ids

    # A few keys go through the per-key mutators (dict entries, joined in time proportional
    # to the edit); many go through the bulk ones (numpy columns, one dot range). A one-key
    # bulk delta would make every replica re-sort its whole column to join it.
    def _set_keys(self, part: Part, keys: Sequence[int], values: Sequence[Value]) -> None:
        run = self._run
        if len(keys) <= SMALL_BATCH:
            for k, v in zip(keys, values, strict=True):
                run._edit(part, ORMap.set, k, v)
        elif keys:
            run._edit(part, ORMap.set_many, np.array(keys, dtype=np.int64), _values(list(values)))

    def _add_ids(self, ids: NDArray[np.int64]) -> None:
        if len(ids) <= SMALL_BATCH:
            for sid in ids.tolist():
                self._run._edit(Part.SAMPLES, AWSet.add, sid)
        else:
            self._run._edit(Part.SAMPLES, AWSet.add_many, ids)

    def _known(self, sample: Any) -> int:
        """A sample id this run has ever held (in the set now, or with a payload record)."""
        sid = parse_id(sample)
        run = self._run
        with run._lock:
            if sid not in run._state(Part.PAYLOADS) and sid not in run._state(Part.SAMPLES):
                raise KeyError(f"no sample {format_id(sid)} in this run")
        return sid

    def _many(self, samples: Any) -> list[int]:
        if isinstance(samples, int | str | np.integer):
            samples = [samples]
        return list(dict.fromkeys(self._known(s) for s in samples))

    def remove(self, sample_ids: Any) -> None:
        """Remove samples (as this replica sees them: a concurrent re-add wins)."""
        ids = self._many(sample_ids)
        if len(ids) <= SMALL_BATCH:
            with self._run.transaction():
                for sid in ids:
                    self._run._edit(Part.SAMPLES, AWSet.remove, sid)
        else:
            self._run._edit(Part.SAMPLES, AWSet.remove_many, np.array(ids, dtype=np.int64))

    def relabel(self, sample: Any, label: Any) -> None:
        """Give a sample a new label (kept even if the sample is removed and re-added)."""
        value = _check_label(label)
        self._run._edit(Part.LABELS, ORMap.set, self._known(sample), value)

    def relabel_many(self, sample_ids: Sequence[Any], labels: Sequence[Any]) -> None:
        """Relabel many samples as one op (a later duplicate wins)."""
        if len(sample_ids) != len(labels):
            raise SchemaError(f"{len(sample_ids)} samples but {len(labels)} labels")
        values = _label_list(labels)
        last = {self._known(s): v for s, v in zip(sample_ids, values, strict=True)}
        with self._run.transaction():
            self._set_keys(Part.LABELS, list(last), list(last.values()))

    def split(self, sample_ids: Any, split: str) -> None:
        """Move samples to ``"train"``, ``"val"`` or ``"test"`` (last writer wins)."""
        value = _check_split(split)
        ids = self._many(sample_ids)
        with self._run.transaction():
            self._set_keys(Part.SPLITS, ids, [value] * len(ids))

    def assign_splits(self, val: float = 0.1, test: float = 0.0) -> None:
        """Split every current sample by its id: deterministic, so every replica that runs
        this with the same fractions writes the same splits."""
        if not (val >= 0 and test >= 0 and val + test <= 1):
            raise SchemaError(f"split fractions val={val}, test={test} must be >= 0, sum <= 1")
        ids = self.ids()
        if not len(ids):
            return
        u = (ids.view(np.uint64) >> np.uint64(32)).astype(np.float64) / 2**32
        col = np.where(u < val, "val", np.where(u < val + test, "test", "train"))
        self._run._edit(Part.SPLITS, ORMap.set_many, ids, col.astype(STR_KEYS))

    def _tag(self, sample_id: int, tag: str) -> None:
        run = self._run
        actor = run._actor(Part.TAGS)
        run._edit(Part.TAGS, ORMap.apply, sample_id, lambda s: s.add(tag, by=actor))

    def tag(self, sample: Any, *tags: str) -> None:
        """Add tags to a sample (add-wins against a concurrent untag)."""
        sample_id = self._known(sample)
        checked = [_check_tag(t) for t in tags]
        with self._run.transaction():
            for t in checked:
                self._tag(sample_id, t)

    def untag(self, sample: Any, *tags: str) -> None:
        """Remove tags from a sample."""
        sample_id = self._known(sample)
        tags = tuple(_check_tag(t) for t in tags)
        run = self._run
        actor = run._actor(Part.TAGS)
        with run.transaction():
            for t in tags:
                run._edit(Part.TAGS, ORMap.apply, sample_id, lambda s, t=t: s.remove(t, by=actor))

    # -- importers -------------------------------------------------------------------------
    def from_numpy(
        self,
        x: NDArray[Any],
        y: Sequence[Any] | NDArray[Any] | None = None,
        *,
        split: str | Sequence[str] | None = None,
    ) -> list[int]:
        """Import rows of ``x`` (with labels ``y``) as samples."""
        return self.add_many(np.asarray(x), y, split=split)

    def from_sklearn(self, name: str = "digits", *, split: str | None = None) -> list[int]:
        """Import one of scikit-learn's bundled datasets (no download): ``"digits"``,
        ``"iris"``, ``"wine"`` or ``"breast_cancer"``. Digits become 8x8 uint8 images."""
        loaders = {"digits", "iris", "wine", "breast_cancer"}
        if name not in loaders:
            raise SchemaError(f"unknown bundled dataset {name!r}; one of {sorted(loaders)}")
        try:
            from sklearn import datasets  # type: ignore[import-untyped]
        except ImportError:
            raise SchemaError(
                "importing a scikit-learn dataset needs scikit-learn: pip install scikit-learn"
            ) from None
        bunch = getattr(datasets, f"load_{name}")()
        x = bunch.images.astype(np.uint8) if name == "digits" else bunch.data
        return self.add_many(x, bunch.target.astype(np.int64), split=split)

    def from_csv(
        self,
        path: str | Path,
        *,
        label_column: str | None = "label",
        split: str | None = None,
    ) -> list[int]:
        """Import a CSV file with a header row: numeric feature columns become one float64
        array per row; ``label_column`` (if present) gives the label (int when every value
        is an integer, else str)."""
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise SchemaError(f"{path}: empty CSV file") from None
            rows = list(reader)
        at = header.index(label_column) if label_column in header else None
        features = [i for i in range(len(header)) if i != at]
        x = np.empty((len(rows), len(features)), dtype=np.float64)
        raw_labels = []
        for n, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise SchemaError(f"{path}:{n}: {len(row)} fields, the header has {len(header)}")
            try:
                x[n - 2] = [float(row[i]) for i in features]
            except ValueError as err:
                raise SchemaError(f"{path}:{n}: {err}") from None
            if at is not None:
                raw_labels.append(row[at])
        labels: list[Any] | None = None
        if at is not None:
            try:
                labels = [int(v) for v in raw_labels]
            except ValueError:
                labels = raw_labels
        return self.add_many(x, labels, split=split)

    def from_folder(self, path: str | Path, *, split: str | None = None) -> list[int]:
        """Import every file under ``path``; a file's label is its subfolder's name (files at
        the top have none). Images and other files are stored as bytes, ``.txt`` as text."""
        root = Path(path)
        if not root.is_dir():
            raise SchemaError(f"{root} is not a folder")
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        payloads: list[Any] = []
        kinds: list[str] = []
        labels: list[Any] = []
        for f in files:
            data = f.read_bytes()
            if f.suffix.lower() in TEXT_SUFFIXES:
                kind, blob = encode_payload(data.decode("utf-8", "replace"))
            else:
                kind, blob = encode_payload(data)
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    kind = "image"
            payloads.append(blob)
            kinds.append(kind)
            rel = f.relative_to(root)
            labels.append(rel.parts[0] if len(rel.parts) > 1 else None)
        with_labels = [i for i, lab in enumerate(labels) if lab is not None]
        names = [str(f.relative_to(root)) for f in files]
        with self._run.transaction():
            ids = self._add_blobs(payloads, kinds, None, split, (), names)
            if with_labels:
                self.relabel_many([ids[i] for i in with_labels], [labels[i] for i in with_labels])
        return ids

    # -- reading ---------------------------------------------------------------------------
    def view(self) -> DatasetView:
        """The current samples, labels and splits as columns sorted by id."""
        run = self._run
        with run._lock:
            key = (
                run._part_revision(Part.SAMPLES),
                run._part_revision(Part.LABELS),
                run._part_revision(Part.SPLITS),
            )
            if self._view is not None and self._view[0] == key:
                return self._view[1]
            # Sample ids are int64; anything else in the set came from a replica this build
            # does not understand and is not a sample.
            elements = [e for e in run._state(Part.SAMPLES).elements() if type(e) is int]
            ids = np.array(elements, dtype=np.int64)
            labels, _ = resolved_column(run._state(Part.LABELS), ids)
            splits, _ = resolved_column(run._state(Part.SPLITS), ids)
            split_col = np.array(
                [s if s in SPLITS else DEFAULT_SPLIT for s in splits], dtype=STR_KEYS
            )
            view = DatasetView(
                _readonly(ids), _readonly(_labels_column(labels)), _readonly(split_col)
            )
            self._view = (key, view)
            return view

    def ids(self, split: str | None = None) -> NDArray[Any]:
        """Current sample ids (sorted), optionally of one split."""
        v = self.view()
        return v.ids if split is None else v.ids[v.splits == _check_split(split)]

    def labels(self, split: str | None = None) -> NDArray[Any]:
        """Labels aligned with `ids` (int64 if every sample has an int label, else objects
        with ``None`` for unlabeled samples)."""
        v = self.view()
        return v.labels if split is None else v.labels[v.splits == _check_split(split)]

    def counts(self) -> dict[Value, int]:
        """Samples per label."""
        return dict(Counter(self.labels().tolist()))

    def __len__(self) -> int:
        with self._run._lock:
            return len(self._run._state(Part.SAMPLES))

    def __contains__(self, sample: object) -> bool:
        try:
            sid = parse_id(sample)
        except KeyError:
            return False
        with self._run._lock:
            return sid in self._run._state(Part.SAMPLES)

    def __getitem__(self, sample: Any) -> Sample:
        run = self._run
        with run._lock:
            sample_id = self._known(sample)
            label_reg = run._state(Part.LABELS).get(sample_id)
            split_reg = run._state(Part.SPLITS).get(sample_id)
            tag_set = run._state(Part.TAGS).get(sample_id)
            meta = run._state(Part.PAYLOADS).get(sample_id)
            record = meta.resolved() if isinstance(meta, MVRegister) and meta.entries else ""
            kind, _, name = str(record).partition(":")
            split = split_reg.resolved() if split_reg is not None and split_reg.entries else None
            return Sample(
                sample_id,
                label_reg.resolved() if label_reg is not None and label_reg.entries else None,
                str(split) if split in SPLITS else DEFAULT_SPLIT,
                frozenset(tag_set.elements()) if tag_set is not None else frozenset(),
                kind,
                name or None,
            )

    def __iter__(self) -> Iterator[Sample]:
        for sid in self.view().ids.tolist():
            yield self[sid]

    def payload(self, sample: Any) -> Any:
        """The sample's content: a read-only numpy array, a str or bytes.

        Raises:
            KeyError: unknown sample, or its payload has not reached this replica yet.
        """
        sid = self._known(sample)
        cached = self._payloads.get(sid)
        if cached is None:
            prefix = sid.to_bytes(8, "big", signed=True)
            cached = decode_payload(self._run._blob_by_prefix(prefix, format_id(sid)))
            self._payloads[sid] = cached
        return cached

    def arrays(self, split: str | None = None) -> tuple[NDArray[Any], NDArray[Any]]:
        """``(x, y)``: the array payloads of the current samples stacked, and their labels."""
        ids = self.ids(split)
        x = np.stack([self.payload(s) for s in ids.tolist()]) if len(ids) else np.empty((0,))
        return x, self.labels(split)

    def __repr__(self) -> str:
        return f"Dataset({len(self)} samples)"


def _check_tag(tag: Any) -> str:
    if type(tag) is not str or not tag:
        raise SchemaError(f"a tag is a non-empty string, not {tag!r}")
    return tag


def _label_list(labels: Sequence[Any] | NDArray[Any]) -> list[Value]:
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind == "i" or (
            labels.dtype.kind == "u" and (not labels.size or int(labels.max()) < 1 << 63)
        ):
            return labels.astype(np.int64).tolist()  # type: ignore[no-any-return]
        labels = labels.tolist()
    return [_check_label(x) for x in labels]


def _values(items: list[Value]) -> NDArray[Any]:
    from convergent.crdt.dotstore import value_array

    return value_array(items)


def _readonly(a: NDArray[Any]) -> NDArray[Any]:
    a.flags.writeable = False
    return a


def _array_rows(x: NDArray[Any]) -> tuple[list[bytes], list[str]]:
    """One payload blob per row of ``x``: the rows share one header, so no per-row numpy."""
    if x.ndim < 1:
        raise SchemaError("add_many needs an array with one sample per row")
    if x.dtype.kind not in "biuf" or x.dtype.hasobject:
        raise SchemaError(f"a sample payload is a numeric array, not an array of {x.dtype}")
    rows = np.ascontiguousarray(x)
    if rows.dtype.byteorder == ">":
        rows = rows.astype(rows.dtype.newbyteorder("<"))
    header = encode_array_header(rows.dtype, rows.shape[1:])
    size = rows[0].nbytes if len(rows) else 0
    raw = rows.tobytes()
    blobs = (
        [header + raw[i : i + size] for i in range(0, len(raw), size)]
        if size
        else ([header] * len(rows))
    )
    return blobs, ["array"] * len(rows)
