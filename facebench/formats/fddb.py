"""FDDB files: fold image lists, ellipse annotations and detection files (no torch).

Formats (Jain & Learned-Miller, UM-CS-2010-009; the official ``FDDB-folds.tgz``):

- ``FDDB-fold-XX.txt``: one image name per line (``2002/08/11/big/img_591``, no extension).
- ``FDDB-fold-XX-ellipseList.txt``: per image a name line, a face-count line, then one line
  per face ``major_axis_radius minor_axis_radius angle center_x center_y 1`` (angle in
  radians; the trailing ``1`` is a constant detection-score column).
- Detection files (what a detector submits), per image a name line, a count line, then
  one region per line, either rectangles ``left top width height score`` or ellipses
  ``major minor angle center_x center_y score``.

Readers accept CRLF line endings, trailing spaces and blank lines, and reject anything
else with :class:`facebench.errors.FormatError` naming the file, the 1-based line and the
problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from facebench.atomic import atomic_open
from facebench.errors import FacebenchError, FormatError
from facebench.formats._lines import parse_count, parse_rows, read_lines
from facebench.formats.s3fd_fit import S3FD_FIT

DetectionFormat = Literal["rect", "ellipse"]

#: Number of numeric fields on a detection line, per format.
DETECTION_FIELDS: dict[str, int] = {"rect": 5, "ellipse": 6}

N_FOLDS = 10


# --------------------------------------------------------------------------- fold lists


def available_folds(folds_dir: str | Path) -> list[int]:
    """Fold numbers of the ``FDDB-fold-XX.txt`` lists in ``folds_dir``, ascending.

    Raises FacebenchError when there is none.
    """
    folds_dir = Path(folds_dir)
    found = sorted(
        int(p.name[10:12])
        for p in folds_dir.glob("FDDB-fold-[0-9][0-9].txt")
        if p.name[10:12].isdigit()
    )
    if not found:
        raise FacebenchError(f"{folds_dir}: no FDDB-fold-XX.txt files")
    return found


def read_fold_list(path: str | Path) -> list[str]:
    """Read an ``FDDB-fold-XX.txt`` image list: the image names in file order.

    Raises FormatError on an empty file, a line with more than one field, or a name
    listed twice.
    """
    path = Path(path)
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, text in read_lines(path):
        if len(text.split()) != 1:
            raise FormatError(path, f"expected one image name per line, got {text!r}", number)
        if text in seen:
            raise FormatError(path, f"image {text!r} already listed on line {seen[text]}", number)
        seen[text] = number
        names.append(text)
    if not names:
        raise FormatError(path, "no image names (empty file)")
    return names


def write_fold_list(path: str | Path, names: Iterable[str]) -> None:
    """Write an image list, one name per line (atomically)."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        for name in names:
            _check_name(path, name)
            f.write(f"{name}\n")


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class _Blocks:
    """Parsed ``name / count / regions`` blocks: names, 1-based name lines, region rows."""

    names: list[str]
    lines: list[int]
    counts: list[int]
    values: np.ndarray  # (sum(counts), F)

    def split(self) -> list[np.ndarray]:
        ends = np.cumsum(self.counts)
        return np.split(self.values, ends[:-1]) if self.counts else []


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _looks_like_region(text: str) -> bool:
    fields = text.split()
    return len(fields) >= 4 and all(_NUMBER.match(f) for f in fields)


def _read_blocks(path: Path, allowed_fields: Sequence[int], what: str) -> _Blocks:
    lines = read_lines(path)
    names: list[str] = []
    name_lines: list[int] = []
    counts: list[int] = []
    region_rows: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        number, name = lines[i]
        if _looks_like_region(name) or len(name.split()) != 1:
            hint = ""
            if names:
                hint = (
                    f" (does the count {counts[-1]} for {names[-1]!r} on line"
                    f" {name_lines[-1] + 1} match its regions?)"
                )
            raise FormatError(path, f"expected an image name, got {name!r}{hint}", number)
        if name in seen:
            raise FormatError(
                path, f"image {name!r} already has a block on line {seen[name]}", number
            )
        if i + 1 >= len(lines):
            raise FormatError(
                path, f"file ends after image name {name!r}: missing count line", number
            )
        count_number, count_text = lines[i + 1]
        count = parse_count(path, count_number, count_text, f"{what} count")
        block = lines[i + 2 : i + 2 + count]
        if len(block) < count:
            raise FormatError(
                path,
                f"truncated: image {name!r} announces {count} {what}s on line {count_number}"
                f" but the file ends after {len(block)}",
                lines[-1][0],
            )
        for row_number, row_text in block:
            if " " not in row_text and "\t" not in row_text:
                raise FormatError(
                    path,
                    f"expected a {what} region, got {row_text!r} (image {name!r} announces"
                    f" {count} {what}s on line {count_number}: more than follow?)",
                    row_number,
                )
        seen[name] = number
        names.append(name)
        name_lines.append(number)
        counts.append(count)
        region_rows.extend(block)
        i += 2 + count
    values = parse_rows(path, region_rows, allowed_fields, what)
    return _Blocks(names, name_lines, counts, values)


def _check_name(path: str | Path, name: str) -> None:
    if not name or len(name.split()) != 1 or name != name.strip():
        raise FormatError(path, f"image name {name!r} must be one non-empty word")


def _fmt(x: float) -> str:
    # repr gives the shortest text that parses back to the same float64 (lossless).
    return repr(float(x))


# --------------------------------------------------------------------------- annotations


def read_ellipse_list(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Read an ``FDDB-fold-XX-ellipseList.txt`` annotation file.

    Returns, per image in file order, ``(name, ellipses)`` with ``ellipses`` a float64
    array of shape (N, 5): ``major_axis_radius minor_axis_radius angle center_x center_y``
    (angle in radians). Lines may carry the official trailing ``1`` or omit it. Radii
    must be positive.
    """
    path = Path(path)
    blocks = _read_blocks(path, (6, 5), "face")
    _check_positive(path, blocks, columns=(0, 1), what="ellipse radius", allow_zero=False)
    return list(zip(blocks.names, (v[:, :5].copy() for v in blocks.split()), strict=True))


def write_ellipse_list(path: str | Path, items: Iterable[tuple[str, np.ndarray]]) -> None:
    """Write annotations in the official ellipse-list format (with the trailing ``1``).

    ``items`` yields ``(name, ellipses)`` with ellipses of shape (N, 5) (a sixth column,
    if present, is ignored).
    """
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        for name, ellipses in items:
            _check_name(path, name)
            arr = _as_rows(path, name, ellipses, (5, 6))
            f.write(f"{name}\n{len(arr)}\n")
            for row in arr:
                f.write(" ".join(_fmt(v) for v in row[:5]) + "  1\n")


# --------------------------------------------------------------------------- detections


@dataclass(frozen=True)
class DetectionFile:
    """A parsed detection file: per block the image name, its 1-based line and regions.

    ``format`` is ``"rect"`` (regions (K, 5)) or ``"ellipse"`` (regions (K, 6)).
    """

    path: Path
    format: DetectionFormat
    names: list[str]
    lines: list[int]
    regions: list[np.ndarray]

    @property
    def n_regions(self) -> int:
        return int(sum(len(r) for r in self.regions))


def read_detection_file(
    path: str | Path, format: Literal["auto", "rect", "ellipse"] = "auto"
) -> DetectionFile:
    """Read a detection file with the line of every block (see :func:`read_detections`)."""
    path = Path(path)
    if format == "auto":
        allowed: tuple[int, ...] = (5, 6)
    elif format in DETECTION_FIELDS:
        allowed = (DETECTION_FIELDS[format],)
    else:
        raise ValueError(f"unknown detection format {format!r}")
    blocks = _read_blocks(path, allowed, "detection")
    is_rect = blocks.values.shape[1] == 5
    columns = (2, 3) if is_rect else (0, 1)
    what = "rectangle size" if is_rect else "ellipse radius"
    _check_positive(path, blocks, columns=columns, what=what, allow_zero=True)
    kind: DetectionFormat = "rect" if is_rect else "ellipse"
    return DetectionFile(path, kind, blocks.names, blocks.lines, blocks.split())


def read_detections(
    path: str | Path, format: Literal["auto", "rect", "ellipse"] = "auto"
) -> list[tuple[str, np.ndarray]]:
    """Read a detection file in either official form.

    Returns, per image block in file order, ``(name, regions)``: shape (K, 5)
    ``left top width height score`` for rectangles, (K, 6) ``major minor angle cx cy
    score`` for ellipses. ``format="auto"`` decides from the number of fields (5 or 6),
    which must be the same on every line; a file without any region reads as rectangles
    (there is nothing to convert). Widths, heights and radii must not be negative.
    """
    parsed = read_detection_file(path, format)
    return list(zip(parsed.names, parsed.regions, strict=True))


def detection_format_of(items: Sequence[tuple[str, np.ndarray]]) -> DetectionFormat:
    """The format of parsed detections: ``"ellipse"`` for 6 columns, else ``"rect"``."""
    for _, regions in items:
        return "ellipse" if regions.shape[1] == 6 else "rect"
    return "rect"


def write_detections(
    path: str | Path, items: Iterable[tuple[str, np.ndarray]], format: DetectionFormat
) -> None:
    """Write detections in the official layout (name, count, one region per line).

    ``items`` yields ``(name, regions)`` with regions of shape (K, 5) for ``"rect"`` or
    (K, 6) for ``"ellipse"``, as :func:`read_detections` returns them.
    """
    if format not in DETECTION_FIELDS:
        raise ValueError(f"unknown detection format {format!r}")
    width = DETECTION_FIELDS[format]
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        for name, regions in items:
            _check_name(path, name)
            arr = _as_rows(path, name, regions, (width,))
            f.write(f"{name}\n{len(arr)}\n")
            for row in arr:
                f.write(" ".join(_fmt(v) for v in row) + "\n")


def _as_rows(path: str | Path, name: str, values: np.ndarray, widths: Sequence[int]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, widths[0])
    if arr.ndim != 2 or arr.shape[1] not in widths:
        raise ValueError(
            f"{path}: regions for {name!r} must have shape (K, {widths[0]}), got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: regions for {name!r} contain NaN or inf")
    return arr


def _check_positive(
    path: Path, blocks: _Blocks, columns: Sequence[int], what: str, allow_zero: bool
) -> None:
    if blocks.values.size == 0:
        return
    sizes = blocks.values[:, list(columns)]
    bad = (sizes < 0) if allow_zero else (sizes <= 0)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    # Map the row back to its line: the block it belongs to, then the offset in it.
    ends = np.cumsum(blocks.counts)
    block = int(np.searchsorted(ends, row, side="right"))
    start = int(ends[block] - blocks.counts[block])
    value = float(sizes[row][bad[row]][0])
    kind = "negative" if value < 0 else "zero"
    line = _region_line(path, blocks.lines[block], row - start)
    raise FormatError(path, f"{kind} {what} {value:g} for image {blocks.names[block]!r}", line)


def _region_line(path: Path, name_line: int, offset: int) -> int:
    # Re-read to find the exact line (only on the error path; blank lines make it non-trivial).
    lines = read_lines(path)
    index = next(i for i, (n, _) in enumerate(lines) if n == name_line)
    return lines[index + 2 + offset][0]


# --------------------------------------------------------------------------- S3FD regressor


def rect_to_ellipse_s3fd(rects_xywh: np.ndarray) -> np.ndarray:
    """Convert rectangles to FDDB ellipses with the S3FD authors' linear regressor.

    ``rects_xywh``: (K, 4) ``left top width height`` (extra columns such as a score are
    ignored). Returns (K, 5) ``major minor angle center_x center_y``:
    ``(((rect - meanX) / stdX) @ w) * stdY + meanY``, then the angle is turned by a
    quarter turn towards zero (``angle - pi/2`` if ``angle >= 0`` else ``angle + pi/2``),
    as the S3FD ``fitting.m`` does. Coefficients: :data:`S3FD_FIT` (from ``Fit.mat``).
    """
    rects = np.asarray(rects_xywh, dtype=np.float64)
    if rects.ndim != 2 or rects.shape[1] < 4:
        raise ValueError(f"rectangles must have shape (K, 4), got {rects.shape}")
    fit = S3FD_FIT
    x = (rects[:, :4] - np.asarray(fit["meanX"])) / np.asarray(fit["stdX"])
    y = (x @ np.asarray(fit["w"])) * np.asarray(fit["stdY"]) + np.asarray(fit["meanY"])
    angle = y[:, 2]
    y[:, 2] = np.where(angle >= 0, angle - math.pi / 2, angle + math.pi / 2)
    return y


# --------------------------------------------------------------------------- fold folders


def fold_paths(folds_dir: str | Path, fold: int) -> tuple[Path, Path]:
    """Paths of ``FDDB-fold-XX.txt`` and ``FDDB-fold-XX-ellipseList.txt`` for fold 1..10."""
    folds_dir = Path(folds_dir)
    return (
        folds_dir / f"FDDB-fold-{fold:02d}.txt",
        folds_dir / f"FDDB-fold-{fold:02d}-ellipseList.txt",
    )


@dataclass(frozen=True)
class FddbImage:
    """One annotated image: its name, its fold (1..10) and its (N, 5) ellipses."""

    name: str
    fold: int
    ellipses: np.ndarray


def read_folds(folds_dir: str | Path, folds: Iterable[int] | None = None) -> list[FddbImage]:
    """Read the ground truth of the given folds (default all 10), in fold then file order.

    Checks that each fold's ellipse list holds exactly the images of its image list, in
    the same order, and that no image appears in two folds.
    """
    images: list[FddbImage] = []
    seen: dict[str, int] = {}
    for fold in folds if folds is not None else range(1, N_FOLDS + 1):
        list_path, ellipse_path = fold_paths(folds_dir, fold)
        for p in (list_path, ellipse_path):
            if not p.is_file():
                raise FormatError(p, f"fold {fold} file not found")
        names = read_fold_list(list_path)
        annotated = read_ellipse_list(ellipse_path)
        _check_same_names(ellipse_path, list_path, names, [n for n, _ in annotated])
        for name, ellipses in annotated:
            if name in seen:
                raise FormatError(ellipse_path, f"image {name!r} is also in fold {seen[name]}")
            seen[name] = fold
            images.append(FddbImage(name, fold, ellipses))
    return images


def _check_same_names(path: Path, list_path: Path, listed: list[str], annotated: list[str]) -> None:
    if listed == annotated:
        return
    for i, (a, b) in enumerate(zip(listed, annotated, strict=False)):
        if a != b:
            raise FormatError(
                path, f"image #{i + 1} is {b!r} but {list_path.name} lists {a!r} there"
            )
    raise FormatError(
        path, f"{len(annotated)} annotated images but {list_path.name} lists {len(listed)}"
    )
