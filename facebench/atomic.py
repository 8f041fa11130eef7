"""Write outputs atomically: a temp file in the target folder, then ``os.replace``.

A killed process therefore leaves either the old file or the complete new one, never a
half-written output.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from facebench.errors import output_error


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside ``path``; on success rename it over ``path``.

    An OS error (missing or unwritable folder, ``path`` a folder, disk full) becomes a
    :class:`FacebenchError` naming ``path``, never the temp file.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file stands where a parent folder should be
            raise NotADirectoryError(errno.ENOTDIR, "not a folder") from None
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        # mkstemp creates 0600; outputs should get the usual umask-derived mode.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp, str(path)):
            raise output_error(exc, path) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically; ``-`` writes to stdout (never through rich)."""
    text = json.dumps(obj, indent=2, allow_nan=False, default=_jsonable) + "\n"
    if str(path) == "-":
        import sys

        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _jsonable(obj: Any) -> Any:
    # numpy scalars/arrays appear in results; convert without importing numpy eagerly.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
