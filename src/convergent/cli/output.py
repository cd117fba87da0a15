"""How the command line prints: rich tables, and progress while something takes time.

On a terminal, tables have colour and progress redraws in place. When the output is piped or
captured (a log file, ``| grep``, the tests), the same tables print as plain text, with no
colour, no cursor movement and 200 columns before a row wraps, and progress is left out.
``--json`` output never comes through here: scripts read exactly what they read before.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich import box
from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    import torch

    from convergent.run import Run
    from convergent.run.schema import Param
    from convergent.training.tasks import Task

# Progress redraws at most this often: a human reads no faster, and a trainer pays nothing.
REFRESH_PER_SECOND = 10
# Piped output has no terminal to fit; tables are only as wide as their cells, this is a cap.
PLAIN_WIDTH = 200
# A wait shorter than this shows no spinner (most syncs take milliseconds).
QUIET_WAIT = 0.25


def console_for(out: TextIO) -> Console:
    """A console writing to ``out``. Markup and emoji codes are off: a note that reads
    ``[x] :fire:`` prints as written."""
    console = Console(file=out, highlight=False, markup=False, emoji=False)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(file=out, highlight=False, markup=False, emoji=False, width=PLAIN_WIDTH)


def emit(console: Console, thing: RenderableType, style: str | None = None) -> None:
    """Print ``thing``: on a terminal as rich draws it, on a pipe with the padding of the last
    column cut from every line (plain text that ``diff`` and ``grep $`` read cleanly)."""
    if console.is_terminal:
        console.print(thing, style=style)
        return
    with console.capture() as captured:
        console.print(thing, style=style)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def new_table(*columns: str, numeric: tuple[str, ...] = ()) -> Table:
    """A table in the CLI's one style: a bold header over a rule, no outer border (so plain
    output reads like ``ls -l`` and greps by line); ``numeric`` columns align right."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, justify="right" if name in numeric else "left")
    return table


def show(value: Any) -> str:
    """A config value as typed on the command line reads it back: 0.02, 64, 'adam', (0.9, 0.99)."""
    return repr(value)


def when(t: datetime) -> str:
    """A time in the history's format (UTC)."""
    return f"{t:%Y-%m-%d %H:%M:%S}"


def rule_of(param: Param) -> str:
    """A config key's rule in words: ``float in [0.0, 10.0]``, ``one of 'constant', 'cosine'``."""
    if param.kind == "choice":
        return "one of " + ", ".join(repr(c) for c in param.choices)
    text = str(param.kind)
    if param.kind == "list" and param.item is not None:
        text = f"list of {param.item}"
    lo, hi = param.min, param.max
    if lo is not None and hi is not None:
        text += f" in [{lo}, {hi}]"
    elif lo is not None:
        text += f" >= {lo}"
    elif hi is not None:
        text += f" <= {hi}"
    if param.max_len is not None:
        text += f", at most {param.max_len} items"
    return text


@contextmanager
def busy(console: Console, what: str) -> Iterator[None]:
    """A spinner saying ``what`` while the block runs, on a terminal only."""
    if not console.is_terminal:
        yield
        return
    with console.status(what, refresh_per_second=REFRESH_PER_SECOND):
        yield


def wait_synced(run: Run, console: Console, timeout: float) -> None:
    """`LiveRun.wait_synced`, with a spinner on a terminal once it takes more than a moment
    (the number of edits the hub has yet to confirm, and the seconds waited).

    Raises what ``run.wait_synced`` raises; a timeout names the whole ``timeout``. A local
    run file has nothing to wait for.
    """
    from convergent.sync.client import LiveRun

    if not isinstance(run, LiveRun):
        return
    if not console.is_terminal:
        run.wait_synced(timeout)
        return
    started = time.monotonic()
    try:
        run.wait_synced(min(QUIET_WAIT, timeout))
        return
    except TimeoutError:
        if timeout <= QUIET_WAIT:
            raise
    with console.status("", refresh_per_second=REFRESH_PER_SECOND) as status:
        while True:
            waited = time.monotonic() - started
            left = timeout - waited
            if left <= 0:
                raise TimeoutError(f"not synced after {timeout} s: {run.status}")
            status.update(
                f"waiting for the hub to confirm {run.status.pending:,} edits ({waited:.0f} s)"
            )
            try:
                run.wait_synced(min(1 / REFRESH_PER_SECOND, left))
                return
            except TimeoutError:
                continue


class _ReportLines(io.StringIO):
    """The ``out`` that `convergent.training.tasks.train` prints its report lines to: each
    line goes above the bar (like ``tqdm.write``), and its loss and val_acc go into it."""

    def __init__(self, progress: TrainingProgress) -> None:
        super().__init__()
        self._progress = progress
        self._partial = ""

    def write(self, s: str) -> int:
        *lines, self._partial = (self._partial + s).split("\n")
        for line in lines:
            self._progress.report(line)
        return len(s)

    def end_line(self) -> None:
        """Show a last line that has no newline yet."""
        if self._partial:
            self.write("\n")


class TrainingProgress:
    """The bar of ``convergent train``: steps (of ``--steps``), steps/s, loss, val_acc, lr.

    The training loop pays one integer increment per step (an optimizer step hook, see
    `watch`); rich's refresh thread draws the bar at most `REFRESH_PER_SECOND` times a second
    from that counter, the optimizer's current lr and the loss and val_acc of the trainer's
    last report line (`out`, every 100 steps).

    Args:
        console: where the bar and the report lines go.
        total: the step to stop at (``--steps``), or ``None``: until the run is stopped.
        start: the step training starts from (a resumed checkpoint's step).
    """

    _FIELD = re.compile(r"\b(loss|val_acc) (\S+)")

    def __init__(self, console: Console, total: int | None, start: int = 0) -> None:
        self.console = console
        self.total = total
        self.start = start
        self.steps = start
        self.reported: dict[str, str] = {}
        self._reports = _ReportLines(self)
        self.out: TextIO = self._reports
        self._optimizer: torch.optim.Optimizer | None = None
        self._started = time.perf_counter()
        self._sample = (self._started, start)  # (time, steps) the rate is measured from
        self.rate: float | None = None
        self._live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=REFRESH_PER_SECOND,
        )

    def watch(self, task: Task) -> Task:
        """``task``, with a step counter hooked onto the optimizer it builds."""

        def watched() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
            model, optimizer = task()
            optimizer.register_step_post_hook(self._count)
            self._optimizer = optimizer
            return model, optimizer

        return watched

    def _count(self, *_: Any) -> None:
        self.steps += 1

    def report(self, line: str) -> None:
        """A line the trainer printed: shown above the bar, its metrics in the bar."""
        self.reported.update(self._FIELD.findall(line))
        self.console.print(line)

    def render(self) -> RenderableType:
        """The bar as it stands now (called by rich's refresh thread)."""
        done, now = self.steps, time.perf_counter()
        elapsed = now - self._started
        # steps/s over the last second or so: follows a batch_size edit, and leaves out the
        # time spent building the model before the first step.
        then, before = self._sample
        if done == before and self.rate is None:
            self._sample = (now, done)  # no step yet: the first window starts with training
        elif now - then >= 1.0:
            self.rate = (done - before) / (now - then)
            self._sample = (now, done)
        cells: list[RenderableType] = []
        if self.total is not None:
            cells.append(ProgressBar(total=self.total, completed=min(done, self.total), width=30))
            cells.append(Text(f"step {done:,}/{self.total:,}", style="bold"))
        else:
            cells.append(Text(f"step {done:,}", style="bold"))
        rate = "-" if self.rate is None else f"{self.rate:,.0f}"
        cells.append(Text(f"{rate} steps/s", style="dim"))
        cells.append(Text(f"loss {self.reported.get('loss', '-')}", style="cyan"))
        if "val_acc" in self.reported:
            cells.append(Text(f"val_acc {self.reported['val_acc']}", style="green"))
        if self._optimizer is not None:
            cells.append(Text(f"lr {self._optimizer.param_groups[0]['lr']:g}", style="magenta"))
        cells.append(Text(f"{int(elapsed) // 60}:{int(elapsed) % 60:02d}", style="dim"))
        grid = Table.grid(padding=(0, 2))
        grid.add_row(*cells)
        return grid

    def __enter__(self) -> TrainingProgress:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._reports.end_line()
        self._live.stop()
