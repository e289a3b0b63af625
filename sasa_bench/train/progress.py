"""Per-epoch progress bars (rich) on an interactive terminal, nothing otherwise.

Bars go to stderr and vanish when their epoch ends; the one-line epoch summaries (printed by the
trainer on stdout) are what stays, and what a log file of a non-interactive run contains.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

Advance = Callable[..., None]


class Progress:
    def __init__(self, enabled: bool | None = None) -> None:
        """`enabled=None`: bars only where stderr is a terminal."""
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        if not self.enabled:
            yield _ignore
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with RichProgress(*columns, console=Console(stderr=True), transient=True) as bars:
            task = bars.add_task(description, total=total, loss="")

            def advance(loss: float | None = None) -> None:
                fields = {} if loss is None else {"loss": f"loss {loss:.3f}"}
                bars.update(task, advance=1, **fields)

            yield advance


def _ignore(loss: float | None = None) -> None:
    pass
