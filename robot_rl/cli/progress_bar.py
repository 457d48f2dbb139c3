"""An episodes progress bar for the format converters (``import``, ``export``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def episode_progress(console: Console, what: str) -> Iterator[Callable[[int, int], None]]:
    """Yields ``on_progress(done, total)`` that moves a bar of episodes with rate and ETA. The bar appears at the
    first episode, on a terminal only, and is removed at the end (transient), so an error stays the only line a failed
    command prints."""
    columns = (TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TextColumn("episodes"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    progress = Progress(*columns, console=console, transient=True)
    bar = progress.add_task(what, total=None)
    started = False

    def on_progress(done: int, total: int) -> None:
        nonlocal started
        if not started and console.is_terminal:
            progress.start()
            started = True
        progress.update(bar, completed=done, total=total or None)

    try:
        yield on_progress
    finally:
        if started:
            progress.stop()
