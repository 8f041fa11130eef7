"""Checks on output paths, made before any long work starts.

A command that computes for an hour and then cannot write its result has wasted the hour;
these checks refuse such a path up front, with one line naming it. They are advisory:
the final write (``facebench.atomic``) still reports a path that became unusable meanwhile.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from facebench.errors import FacebenchError, output_error

# Kernel interfaces that accept writes of their own format only: never an output.
_PSEUDO_ROOTS = (Path("/sys"), Path("/proc"), Path("/dev"))


def check_output_file(path: str | Path, allow_stdout: bool = True) -> None:
    """Refuse an output file that cannot be written: a folder, or no writable parent.

    ``-`` (stdout) passes when ``allow_stdout``. Missing parent folders are allowed
    (outputs create them) as long as the nearest existing one is a writable folder.
    """
    if allow_stdout and str(path) == "-":
        return
    path = Path(path)
    if path.is_dir():
        raise output_error(IsADirectoryError(errno.EISDIR, "is a folder"), path)
    _check_parent_writable(path, path.parent)


def check_output_dir(path: str | Path) -> None:
    """Refuse an output folder that is a file, or that cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FacebenchError(f"{path}: cannot write: is a file, expected a folder")
    _check_parent_writable(path, path if path.is_dir() else path.parent)


def _check_parent_writable(path: Path, folder: Path) -> None:
    resolved = Path(os.path.abspath(path))
    if any(resolved == root or root in resolved.parents for root in _PSEUDO_ROOTS):
        raise FacebenchError(f"{path}: cannot write: a kernel interface, not a place for files")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise output_error(NotADirectoryError(errno.ENOTDIR, "not a folder"), path)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise output_error(PermissionError(errno.EACCES, "permission denied"), path)
