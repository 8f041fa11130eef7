"""Human output for the command line: rich on a terminal, plain lines when piped.

Everything here writes to stderr; data goes to files or stdout (never through rich,
which wraps lines and swallows ``[...]``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True, highlight=False)


def interactive() -> bool:
    """True when stderr is a terminal: rich progress bars; else plain log lines."""
    return console.is_terminal


def log(message: str) -> None:
    """One plain line on stderr (rich markup is not interpreted)."""
    if interactive():
        console.print(message, markup=False)
    else:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def warn(message: str) -> None:
    log(f"warning: {message}")


def track(
    items: Iterable[T], total: int | None = None, description: str = "working"
) -> Iterator[T]:
    """Iterate with a rich progress bar on a terminal, or ~10 plain progress lines otherwise."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if interactive():
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task(description, total=total)
            for item in items:
                yield item
                progress.advance(task)
        return
    start = time.monotonic()
    step = max(1, (total or 0) // 10) if total else 100
    done = 0
    for item in items:
        yield item
        done += 1
        if done % step == 0 or (total is not None and done == total):
            of = f"/{total}" if total is not None else ""
            log(f"{description}: {done}{of} ({time.monotonic() - start:.1f}s)")


QUIET_BELOW = 1000  # items: a check over fewer takes about a second and needs no bar


def check_progress(description: str, total: int) -> ProgressCallback | None:
    """A progress callback for an up-front check of ``total`` items; None when it is quick."""
    return ProgressCallback(description) if total >= QUIET_BELOW else None


class ProgressCallback:
    """Adapter for library code that reports progress as ``callback(done, total)``."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._progress: Progress | None = None
        self._task = None
        self._last_logged = -1
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if interactive():
            if self._progress is None:
                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=console,
                )
                self._progress.start()
                self._task = self._progress.add_task(self.description, total=total)
            self._progress.update(self._task, completed=done, total=total)
            if done >= total:
                self.close()
            return
        decile = (10 * done) // max(total, 1)
        if decile != self._last_logged:
            self._last_logged = decile
            log(f"{self.description}: {done}/{total} ({time.monotonic() - self._start:.1f}s)")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
