"""Line-oriented text reading shared by the plain-text dataset readers.

Every reader needs the same three things: CRLF and trailing spaces accepted, the 1-based
line number of every line kept for error messages, and many numeric region lines parsed
at once (one numpy conversion, not one ``float()`` per field) with the offending line
found only when something is wrong.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facebench.errors import FormatError, quote


def read_text(path: str | Path) -> str:
    """The file's text (:func:`decode_text`); FormatError for a folder or non-UTF-8 bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise FormatError(path, "is a folder, expected a text file") from None
    return decode_text(raw, path)


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """Return ``(line_number, text)`` for the non-blank lines of a text file.

    Line numbers are 1-based; text has surrounding whitespace (spaces, tabs, ``\\r``)
    removed. Blank lines are dropped but still counted, so numbers match an editor's.
    """
    text = read_text(path)
    # splitlines() also breaks on \r alone and on \x0b etc.; split on \n to keep numbering
    # identical to editors and the official tools.
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped:
            out.append((number, stripped))
    return out


def decode_text(raw: bytes, path: str | Path) -> str:
    """UTF-8 bytes -> text, without a leading byte-order mark (editors on Windows add one).

    Raises FormatError naming the first line that is not UTF-8.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FormatError(path, "not UTF-8 text", line) from None


def parse_count(path: Path, number: int, text: str, what: str = "face count") -> int:
    """Parse a non-negative integer count line, or raise FormatError naming the line."""
    try:
        value = int(text)
    except ValueError:
        raise FormatError(
            path, f"expected a {what} (a whole number), got {quote(text)}", number
        ) from None
    if value < 0:
        raise FormatError(path, f"negative {what} {value}", number)
    return value


def parse_rows(
    path: Path,
    rows: Sequence[tuple[int, str]],
    allowed_fields: Sequence[int],
    what: str,
) -> np.ndarray:
    """Parse numeric region lines into a float64 array.

    ``rows`` are ``(line_number, text)``; each line must have one of ``allowed_fields``
    whitespace-separated numbers, the same number on every line. Returns shape
    ``(len(rows), fields)``; non-numeric or non-finite values raise FormatError naming
    the line.
    """
    if not rows:
        return np.zeros((0, allowed_fields[0]), dtype=np.float64)
    split = [text.split() for _, text in rows]
    width = len(split[0])
    for (number, text), fields in zip(rows, split, strict=True):
        if len(fields) not in allowed_fields:
            expected = " or ".join(str(n) for n in allowed_fields)
            raise FormatError(
                path,
                f"expected {expected} numbers for {what}, got {len(fields)}: {quote(text)}",
                number,
            )
        if len(fields) != width:
            raise FormatError(
                path,
                f"{len(fields)} numbers where earlier {what} lines have {width}: {quote(text)}",
                number,
            )
    flat = [token for fields in split for token in fields]
    try:
        values = np.array(flat, dtype=np.float64).reshape(len(rows), width)
    except ValueError:
        _raise_first_non_numeric(path, rows, split)
        raise  # pragma: no cover - _raise_first_non_numeric always raises
    bad = ~np.isfinite(values)
    if bad.any():
        index = int(np.flatnonzero(bad.any(axis=1))[0])
        number, text = rows[index]
        raise FormatError(path, f"non-finite number (NaN or inf) in {what}: {quote(text)}", number)
    return values


def _raise_first_non_numeric(
    path: Path, rows: Sequence[tuple[int, str]], split: Sequence[list[str]]
) -> None:
    for (number, text), fields in zip(rows, split, strict=True):
        for token in fields:
            try:
                float(token)
            except ValueError:
                raise FormatError(
                    path, f"non-numeric field {quote(token, 40)} in {quote(text)}", number
                ) from None
    raise FormatError(path, "non-numeric field")
