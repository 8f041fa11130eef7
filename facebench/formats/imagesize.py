"""Image sizes without decoding pixels: from image headers, or from a CSV file.

Evaluators such as FDDB's need each image's width and height only (regions are clipped
to the image), never its pixels. ``PIL.Image.open`` reads the header lazily, so sizing
thousands of JPEGs costs milliseconds each. Where the images are not at hand, a CSV with
columns ``name,width,height`` (header line required; the first column may also be called
``image``, as in the FDDB size file) gives the same information.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from facebench.atomic import atomic_open
from facebench.errors import FacebenchError, FormatError, os_problem, quote
from facebench.images import header_size

_NAME_COLUMNS = ("name", "image", "file", "filename")
MAX_SIDE = 2**31 - 1  # widths and heights are stored as int32 downstream


def image_size(path: str | Path) -> tuple[int, int]:
    """Return ``(width, height)`` of an image file, read from its header only.

    Raises FacebenchError for a missing file and FormatError for a file that is not a
    readable image or exceeds the pixel limit (:mod:`facebench.images`).
    """
    return header_size(path)


def image_sizes_from_folder(
    root: str | Path, names: Iterable[str], extension: str = ".jpg"
) -> dict[str, tuple[int, int]]:
    """Sizes of ``root/<name><extension>`` for every name (FDDB names have no extension).

    A missing image raises FacebenchError naming the path (not the official tool's abort).
    """
    root = Path(root)
    sizes: dict[str, tuple[int, int]] = {}
    for name in names:
        path = root / f"{name}{extension}"
        try:
            if not path.is_file() and (root / name).is_file():
                path = root / name
            found = path.is_file()
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise FacebenchError(f"{quote(str(path))}: {os_problem(exc)}") from None
        if not found:
            raise FacebenchError(f"{path}: image not found (needed for its size)")
        sizes[name] = image_size(path)
    return sizes


def read_sizes_csv(path: str | Path) -> dict[str, tuple[int, int]]:
    """Read ``name,width,height`` rows (after a header line) into ``{name: (w, h)}``.

    The header must name the columns: a name column (``name``, ``image``, ``file`` or
    ``filename``), ``width`` and ``height``, in any order. Sizes must be positive
    integers; a name may appear only once.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FormatError(path, "not UTF-8 text") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    columns: tuple[int, int, int] = (0, 1, 2)
    sizes: dict[str, tuple[int, int]] = {}
    first_line: dict[str, int] = {}
    for number, row in _numbered_rows(path, rows):
        fields = [f.strip() for f in row]
        if not any(fields):
            continue
        if header is None:
            header = [f.lower() for f in fields]
            columns = _header_columns(path, header, number)
            continue
        if len(fields) != len(header):
            raise FormatError(
                path, f"expected {len(header)} comma-separated fields, got {len(fields)}", number
            )
        name = fields[columns[0]]
        if not name:
            raise FormatError(path, "empty image name", number)
        width = _positive_int(path, number, fields[columns[1]], "width")
        height = _positive_int(path, number, fields[columns[2]], "height")
        if name in sizes:
            raise FormatError(path, f"image {name!r} already on line {first_line[name]}", number)
        sizes[name] = (width, height)
        first_line[name] = number
    if header is None:
        raise FormatError(path, "empty file (expected a header line name,width,height)")
    return sizes


def _numbered_rows(path: Path, rows) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a csv reader; csv's own errors become FormatError."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field above csv.field_size_limit() (131072 chars)
            raise FormatError(path, f"not a valid CSV row ({exc})", rows.line_num) from None
        yield rows.line_num, row


def _header_columns(path: Path, header: list[str], number: int) -> tuple[int, int, int]:
    name_col = next((header.index(c) for c in _NAME_COLUMNS if c in header), None)
    if name_col is None or "width" not in header or "height" not in header:
        raise FormatError(
            path,
            f"header must name the columns name (or image),width,height; got {','.join(header)!r}",
            number,
        )
    return name_col, header.index("width"), header.index("height")


def _positive_int(path: Path, number: int, text: str, what: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise FormatError(path, f"{what} {quote(text)} is not a number", number) from None
    if not value == value or value in (float("inf"), float("-inf")):
        raise FormatError(path, f"{what} {text!r} is not finite", number)
    if value != int(value):
        raise FormatError(path, f"{what} {text!r} is not a whole number of pixels", number)
    if value <= 0:
        raise FormatError(path, f"{what} must be positive, got {quote(text)}", number)
    if value > MAX_SIDE:
        raise FormatError(path, f"{what} {quote(text)} is above {MAX_SIDE} pixels", number)
    return int(value)


def write_sizes_csv(
    path: str | Path, rows: Mapping[str, tuple[int, int]] | Iterable[tuple[str, int, int]]
) -> None:
    """Write ``image,width,height`` rows (header first), atomically.

    ``rows``: a mapping ``{name: (width, height)}`` or an iterable of
    ``(name, width, height)``.
    """
    items = ((n, w, h) for n, (w, h) in rows.items()) if isinstance(rows, Mapping) else iter(rows)
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "width", "height"])
        for name, width, height in items:
            if int(width) <= 0 or int(height) <= 0 or int(width) != width or int(height) != height:
                raise ValueError(
                    f"size of {name!r} must be positive integers, got {width}x{height}"
                )
            writer.writerow([name, int(width), int(height)])
