"""Errors that the command line turns into a one-line message and exit code 2.

:class:`FacebenchError` is the one user-facing error type: bad input files, unusable
options, outputs that cannot be written. ``ValueError`` and ``TypeError`` stay for
programming errors (a caller passing the wrong shapes), which deserve a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path

QUOTE_LIMIT = 200  # characters of a user's line quoted in a message (a 2 MB line is not echoed)


class FacebenchError(Exception):
    """Base class for user-facing errors (bad input, missing files, unusable options)."""


class FormatError(FacebenchError):
    """A data file that does not follow its format.

    The message always names the file and, where it applies, the 1-based line, so a user
    can open the file at the problem: ``path:line: problem``.
    """

    def __init__(self, path: str | Path, problem: str | None = None, line: int | None = None):
        if problem is None:  # a whole message (how torch's DataLoader re-raises worker errors)
            self.path, self.line, self.problem = "", None, str(path)
            super().__init__(str(path))
            return
        if len(problem) > 4 * QUOTE_LIMIT:  # a quoted 2 MB line must not be echoed whole
            problem = f"{problem[: 4 * QUOTE_LIMIT]}... ({len(problem)} characters)"
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


def worker_error_message(exc: BaseException) -> str | None:
    """The original one-line error inside a DataLoader worker's re-raised traceback, if any.

    torch re-raises a worker's exception with the whole worker traceback as its message;
    its last line, ``module.ErrorType: message``, is what the user needs.
    """
    text = str(exc)
    if "Original Traceback" not in text:
        return None
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name, sep, message = last.partition(": ")
    if sep and name.rsplit(".", 1)[-1] in ("FormatError", "FacebenchError"):
        return message
    return f"data-loading worker failed: {last.strip()}"


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``repr(text)`` for a message, cut to about ``limit`` characters (with a length note)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


_PLAIN = {
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a parent is not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.ENAMETOOLONG: "file name too long",
    errno.EEXIST: "already exists",
}


def os_problem(exc: OSError) -> str:
    """The plain-words problem of an OS error, without any file name."""
    return _PLAIN.get(exc.errno or -1) or (exc.strerror or type(exc).__name__).lower()


def describe_os_error(exc: OSError, path: str | Path | None = None, action: str = "") -> str:
    """``PATH: [action: ]problem`` for an OS error, naming ``path`` (the user's path) if given.

    The user's path replaces ``exc.filename``, so temp-file names never reach a message.
    """
    where = path if path is not None else exc.filename
    problem = os_problem(exc)
    if action:
        problem = f"{action}: {problem}"
    return f"{where}: {problem}" if where is not None else problem


def output_error(exc: OSError, path: str | Path) -> FacebenchError:
    """The user-facing error for an output ``path`` that could not be written."""
    return FacebenchError(describe_os_error(exc, path, "cannot write"))
