"""Rich progress bars fed by the API's progress events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from stemsplit.cli.common import err_console


@contextmanager
def progress_reporter(enabled: bool = True) -> Iterator:
    """Yield a callback for `stemsplit.api.Progress` events (None when disabled).

    Bars are drawn on a terminal only: in a log or a pipe they would be noise around the
    summary (and an error must stay one line).
    """
    if not enabled or not err_console.is_terminal:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,  # the summary table follows; a failed run ends with its error line alone
    )
    tasks: dict[int, TaskID] = {}

    def on_event(event: Any) -> None:
        if event.index not in tasks:
            if event.index < 0:  # the models: their loading time is counted too
                label = f"loading {escape(event.track.name)}"
            else:
                label = f"[{event.index + 1}/{event.count}] {escape(event.track.name)}"
            tasks[event.index] = bars.add_task(label, total=1.0)
        bars.update(tasks[event.index], completed=event.fraction)

    with bars:
        yield on_event
