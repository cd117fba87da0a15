"""The Run document: a collaborative training run built from the CRDT core.

`Run` holds the parts (config, dataset, metrics, notes, checkpoints, control, members) and
the op log that makes it durable and mergeable; `convergent.open` opens one stored in a file.
"""

from convergent.run.config import Conflict, LiveConfig, Written
from convergent.run.dataset import Dataset, DatasetView, Sample
from convergent.run.document import Run, RunChange, Version
from convergent.run.history import HistoryEntry
from convergent.run.metrics import MetricSeries
from convergent.run.ops import Part
from convergent.run.parts import (
    Checkpoint,
    Checkpoints,
    Command,
    Comment,
    Control,
    Member,
    Members,
    Notes,
)
from convergent.run.schema import Bool, Choice, Float, Int, List, Param, Schema, Str
from convergent.run.snapshot import RunSnapshot
from convergent.run.weights import RunWeights

__all__ = [
    "Bool",
    "Checkpoint",
    "Checkpoints",
    "Choice",
    "Command",
    "Comment",
    "Conflict",
    "Control",
    "Dataset",
    "DatasetView",
    "Float",
    "HistoryEntry",
    "Int",
    "List",
    "LiveConfig",
    "Member",
    "Members",
    "MetricSeries",
    "Notes",
    "Param",
    "Part",
    "Run",
    "RunChange",
    "RunSnapshot",
    "RunWeights",
    "Sample",
    "Schema",
    "Str",
    "Version",
    "Written",
]
