"""The Run document: a collaborative training run built from the CRDT core.

In progress (issue 3): the typed config schema and `LiveConfig` are here; the dataset,
metrics, notes, history and the durable local store come next.
"""

from convergent.run.config import Conflict, LiveConfig, Written
from convergent.run.schema import Bool, Choice, Float, Int, List, Param, Schema, Str

__all__ = [
    "Bool",
    "Choice",
    "Conflict",
    "Float",
    "Int",
    "List",
    "LiveConfig",
    "Param",
    "Schema",
    "Str",
    "Written",
]
