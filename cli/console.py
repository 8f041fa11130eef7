"""Human output for the command line: rich on a terminal, plain lines when piped.

Everything here writes to stderr; data goes to files or stdout (never through rich,
which wraps lines and swallows ``[...]``).
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

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
