"""Errors that the command line turns into a one-line message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class FacebenchError(Exception):
    """Base class for user-facing errors (bad input, missing files, unusable options)."""


class FormatError(FacebenchError, ValueError):
    """A data file that does not follow its format.

    The message always names the file and, where it applies, the 1-based line, so a user
    can open the file at the problem: ``path:line: problem``.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
