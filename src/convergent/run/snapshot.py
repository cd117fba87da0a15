"""`RunSnapshot`: an immutable view of a run at one revision.

A training step reads its config and data from a snapshot: no locks, no surprise changes
mid-step. Taking one is cached per revision, so a trainer that asks every step pays only
when something changed (an O(1) revision check otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from numpy.typing import NDArray

from convergent.crdt.values import Value

if TYPE_CHECKING:
    from convergent.run.document import Run


@dataclass(frozen=True)
class RunSnapshot:
    """The run at ``revision``: config values, control state, pending commands, dataset."""

    revision: int
    config: Mapping[str, Value]
    state: str
    commands: tuple[tuple[str, str, Value], ...]
    sample_ids: NDArray[Any]
    labels: NDArray[Any]
    splits: NDArray[Any]

    def __len__(self) -> int:
        return len(self.sample_ids)


def take(run: Run) -> RunSnapshot:
    view = run.dataset.view()
    return RunSnapshot(
        run.revision,
        MappingProxyType(run.config.to_dict()),
        run.control.state,
        tuple((c.id, c.name, c.argument) for c in run.control.pending()),
        view.ids,
        view.labels,
        view.splits,
    )
