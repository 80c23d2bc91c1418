"""How a running update shows its progress: records so far out of each source's total, with
an estimate of the time left.

In a terminal, one rich progress bar per source (records done / announced, rate, time left).
Without one (cron, systemd, a pipe), one line per source on stderr every ``LOG_EVERY``
seconds while it runs: ``progress: ctgov 2,000 of 5,000 records (40%), about 3 min left``.
A run shorter than that prints no progress line at all.

Both are factories of per-source callbacks ``advance(done, total)`` that the pipeline calls
after each stored page (``tracker.pipeline.ProgressFn``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from tracker.words import duration

LOG_EVERY = 30.0  # seconds between two progress lines of one source without a terminal

ProgressFn = Callable[[int, int | None], None]
Factory = Callable[[str], ProgressFn]


def eta(done: int, total: int | None, elapsed: float) -> float | None:
    """Seconds left at the rate so far, or None while there is nothing to go on."""
    if not total or done <= 0 or elapsed <= 0 or done >= total:
        return None
    return (total - done) * elapsed / done


def progress_line(source: str, done: int, total: int | None, elapsed: float) -> str:
    """``progress: ctgov 2,000 of 5,000 records (40%), about 3 min left``."""
    if total:
        left = eta(done, total, elapsed)
        tail = f", about {duration(left)} left" if left is not None else ""
        return (f"progress: {source} {done:,} of {total:,} records "
                f"({min(100, 100 * done // total)}%){tail}")
    return f"progress: {source} {done:,} records so far"


class LogProgress:
    """One progress line per source every ``every`` seconds (the first after ``every``)."""

    def __init__(self, stream: TextIO | None = None, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.every = every
        self.clock = clock

    def __call__(self, source: str) -> ProgressFn:
        start = self.clock()
        state = {"next": start + self.every}

        def advance(done: int, total: int | None) -> None:
            now = self.clock()
            if now < state["next"]:
                return
            state["next"] = now + self.every
            stream = self.stream or sys.stderr
            stream.write(progress_line(source, done, total, now - start) + "\n")
            stream.flush()

        return advance


@contextmanager
def progress_display(terminal: bool, *, log: bool = True) -> Iterator[Factory | None]:
    """Bars when ``terminal``, else progress lines (``log``), else nothing."""
    if not terminal:
        yield LogProgress() if log else None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("records"), TimeElapsedColumn(), TextColumn("left"),
                  TimeRemainingColumn(), console=Console(stderr=True),
                  transient=False) as bar:

        def factory(name: str) -> ProgressFn:
            task = bar.add_task(name, total=None)

            def advance(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            return advance

        yield factory


__all__ = ["LOG_EVERY", "LogProgress", "eta", "progress_display", "progress_line"]
