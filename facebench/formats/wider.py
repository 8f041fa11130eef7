"""WIDER FACE file formats: split annotations, evaluation ground truth, prediction folders.

Three formats, each with a reader and a writer (no torch; numpy + scipy.io only):

* **Split annotations** ``wider_face_split/wider_face_{train,val}_bbx_gt.txt``: per image a
  relative path (``event/file.jpg``), a face count, then one line per face
  ``x y w h blur expression illumination invalid occlusion pose``. An image without faces
  appears in two forms in the official files: count ``0`` followed by one line of zeros
  (train) and count ``1`` with an all-zero box (val). Both read as an image with **no**
  boxes; :func:`write_split_txt` writes the train form.
* **Evaluation ground truth** ``wider_face_val.mat`` (``event_list``, ``file_list``,
  ``face_bbx_list`` int32 ``x y w h``, six ``*_label_list`` attribute cells) and
  ``wider_{easy,medium,hard}_val.mat`` (the same plus ``gt_list``: per image the 1-based
  indices of the faces kept in that setting). Boxes stay exactly as stored (int32, including
  the ``[0 0 0 0]`` placeholder row of face-less images), because the official protocol's
  arithmetic depends on them.
* **Prediction folders** in the official submission layout ``<root>/<event>/<stem>.txt``:
  line 1 the image name (ignored, as the official tool does), line 2 the box count, then one
  ``x y w h score`` line per box (any whitespace, floats allowed, extra columns ignored).
  :func:`read_wider_predictions` reads a whole folder against the ground truth with one numpy
  parse per file and reports missing files, files that do not parse and files the ground truth
  does not list; with ``strict=True`` the first problem raises :class:`FormatError`.

Every reader raises :class:`facebench.errors.FormatError` naming the file, the 1-based line
and the problem.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facebench.atomic import atomic_open
from facebench.errors import FormatError, os_problem, output_error, quote
from facebench.formats._lines import parse_count, read_text

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "blur",
    "expression",
    "illumination",
    "invalid",
    "occlusion",
    "pose",
)
# Largest legal value of each attribute column (wider_face_split/readme.txt).
ATTRIBUTE_MAX = np.array([2, 1, 1, 1, 2, 1], dtype=np.int32)
SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
EVAL_GT_FILES: dict[str, str] = {
    "face": "wider_face_val.mat",
    "easy": "wider_easy_val.mat",
    "medium": "wider_medium_val.mat",
    "hard": "wider_hard_val.mat",
}

# Bytes that separate tokens: space, \t, \n, \v, \f, \r.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True


# --------------------------------------------------------------------------- split txt


@dataclass
class WiderImage:
    """One image of a split file.

    ``name``: relative path ``event/file.jpg``; ``boxes``: (N, 4) float64 ``x y w h``;
    ``attributes``: (N, 6) int32, columns :data:`ATTRIBUTE_NAMES`.
    """

    name: str
    boxes: np.ndarray
    attributes: np.ndarray

    @property
    def event(self) -> str:
        return self.name.split("/", 1)[0]


def read_split_txt(path: str | Path) -> list[WiderImage]:
    """Read an official ``wider_face_*_bbx_gt.txt``; raises FormatError(path, problem, line)."""
    path = Path(path)
    text = read_text(path)
    lines = text.split("\n")
    n_lines = len(lines)
    names: list[str] = []
    starts: list[int] = []  # 0-based line index of each image's first box line
    counts: list[int] = []
    face_lines: list[str] = []
    face_line_no: list[int] = []  # 0-based line index of every face line
    i = 0
    while i < n_lines:
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if not _looks_like_image_name(name):
            raise FormatError(
                path, f"expected an image name (event/file.jpg), found {quote(name)}", i + 1
            )
        if i + 1 >= n_lines or not lines[i + 1].strip():
            raise FormatError(path, f"missing face count after image name {quote(name)}", i + 2)
        count = parse_count(path, i + 2, lines[i + 1].strip())
        i += 2
        block = count
        if count == 0 and i < n_lines and _is_zero_line(lines[i]):
            i += 1  # the official placeholder line of a face-less image
        if i + block > n_lines or any(not lines[j].strip() for j in range(i, i + block)):
            found = sum(1 for j in range(i, min(i + block, n_lines)) if lines[j].strip())
            raise FormatError(
                path, f"image {name!r} announces {count} faces but only {found} follow", i + 1
            )
        names.append(name)
        starts.append(len(face_lines))
        counts.append(block)
        face_lines.extend(lines[i : i + block])
        face_line_no.extend(range(i, i + block))
        i += block
    values = _parse_rows(face_lines, face_line_no, 10, path, "x y w h + 6 attributes")
    _check_finite(values, face_line_no, path)
    negative = np.flatnonzero((values[:, 2] < 0) | (values[:, 3] < 0))
    if negative.size:
        k = int(negative[0])
        raise FormatError(path, "negative face width or height", face_line_no[k] + 1)
    attrs = values[:, 4:]
    bad = np.flatnonzero(
        (attrs != np.round(attrs)).any(axis=1)
        | (attrs < 0).any(axis=1)
        | (attrs > ATTRIBUTE_MAX).any(axis=1)
    )
    if bad.size:
        k = int(bad[0])
        raise FormatError(
            path,
            "attribute out of range (blur 0-2, expression 0-1, illumination 0-1, invalid 0-1, "
            "occlusion 0-2, pose 0-1)",
            face_line_no[k] + 1,
        )
    images = []
    for name, start, count in zip(names, starts, counts, strict=True):
        rows = values[start : start + count]
        if count == 1 and not rows.any():
            rows = rows[:0]  # the val form of a face-less image: count 1, all-zero box
        images.append(WiderImage(name, rows[:, :4].copy(), rows[:, 4:].astype(np.int32)))
    return images


def write_split_txt(path: str | Path, images: Sequence[WiderImage]) -> None:
    """Write images in the official split format (atomically); face-less: count 0 + zeros."""
    parts: list[str] = []
    for image in images:
        boxes = np.asarray(image.boxes, dtype=np.float64).reshape(-1, 4)
        attrs = np.asarray(image.attributes).reshape(-1, 6)
        if len(boxes) != len(attrs):
            raise ValueError(f"{image.name}: {len(boxes)} boxes but {len(attrs)} attribute rows")
        parts.append(f"{image.name}\n{len(boxes)}\n")
        if len(boxes) == 0:
            parts.append("0 0 0 0 0 0 0 0 0 0 \n")
            continue
        box_text = _format_numbers(boxes)
        for box_row, attr_row in zip(box_text, attrs.astype(np.int64).tolist(), strict=True):
            parts.append(" ".join(box_row) + " " + " ".join(map(str, attr_row)) + " \n")
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(parts))


# ------------------------------------------------------------------ evaluation .mat files


@dataclass
class WiderEvalGT:
    """The official evaluation ground truth.

    ``events[e]``: event folder name; ``files[e][i]``: image stem (no extension), .mat order;
    ``boxes[e][i]``: int32 (N, 4) ``x y w h`` as stored; ``keep[setting][e][i]``: int64 1-D
    1-based indices of the faces kept in ``setting`` (``easy``, ``medium``, ``hard``);
    ``attributes[e][i]``: int32 (N, 6) label columns :data:`ATTRIBUTE_NAMES`, or None.
    """

    events: list[str]
    files: list[list[str]]
    boxes: list[list[np.ndarray]]
    keep: dict[str, list[list[np.ndarray]]]
    attributes: list[list[np.ndarray]] | None = None

    @property
    def n_images(self) -> int:
        return sum(len(f) for f in self.files)

    @property
    def n_faces(self) -> int:
        """Box rows, the [0 0 0 0] placeholders of face-less images included (as the .mat)."""
        return sum(len(b) for ev in self.boxes for b in ev)

    def image_keys(self) -> list[tuple[str, str]]:
        """(event, stem) of every image in .mat order (the flat image index)."""
        return [
            (ev, stem) for ev, stems in zip(self.events, self.files, strict=True) for stem in stems
        ]

    def flat_boxes(self) -> list[np.ndarray]:
        return [b for ev in self.boxes for b in ev]

    def flat_keep(self, setting: str) -> list[np.ndarray]:
        """1-based kept indices per image; ``all`` keeps every face that is not a placeholder."""
        if setting == "all":
            return [np.flatnonzero(b.any(axis=1)) + 1 for b in self.flat_boxes()]
        return [k for ev in self.keep[setting] for k in ev]


def read_eval_gt(gt_dir: str | Path) -> WiderEvalGT:
    """Read ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` from ``gt_dir``."""
    gt_dir = Path(gt_dir)
    face_path = gt_dir / EVAL_GT_FILES["face"]
    face = _load_mat(face_path)
    events = _read_events(face, face_path)
    files = _read_files(face, face_path, len(events))
    shape = [len(f) for f in files]
    boxes = _read_cells(face, "face_bbx_list", face_path, shape, _as_box_array)
    attributes = None
    if all(f"{a}_label_list" in face for a in ATTRIBUTE_NAMES):
        columns = [
            _read_cells(face, f"{a}_label_list", face_path, shape, _as_column)
            for a in ATTRIBUTE_NAMES
        ]
        attributes = []
        for e in range(len(events)):
            row = []
            for i in range(shape[e]):
                cols = [c[e][i] for c in columns]
                if any(len(c) != len(boxes[e][i]) for c in cols):
                    raise FormatError(
                        face_path,
                        f"{events[e]}/{files[e][i]}: label lists and face_bbx_list differ in size",
                    )
                row.append(np.stack(cols, axis=1).astype(np.int32).reshape(-1, 6))
            attributes.append(row)
    keep: dict[str, list[list[np.ndarray]]] = {}
    for setting in SETTINGS:
        path = gt_dir / EVAL_GT_FILES[setting]
        mat = _load_mat(path)
        if _read_events(mat, path) != events or _read_files(mat, path, len(events)) != files:
            raise FormatError(path, f"event_list/file_list differ from {face_path.name}")
        lists = _read_cells(mat, "gt_list", path, shape, _as_column)
        for e in range(len(events)):
            for i in range(shape[e]):
                k = lists[e][i]
                n = len(boxes[e][i])
                if k.size and (k.min() < 1 or k.max() > n):
                    raise FormatError(
                        path,
                        f"gt_list of {events[e]}/{files[e][i]} holds index {int(k.max())} "
                        f"outside 1..{n}",
                    )
        keep[setting] = lists
    return WiderEvalGT(events, files, boxes, keep, attributes)


_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: facebench"


def write_eval_gt(gt_dir: str | Path, gt: WiderEvalGT) -> None:
    """Write the four official evaluation .mat files into ``gt_dir`` (each atomically).

    The structure mirrors the official files: (E, 1) cells ``event_list`` (char),
    ``file_list`` ((F, 1) cells of char), ``face_bbx_list`` (int32 (N, 4)), the six
    ``*_label_list`` (uint8 (N, 1); written when ``gt.attributes`` is set) and, in the
    setting files, ``gt_list`` (uint8 (K, 1), uint16 where an index exceeds 255).
    """
    from scipy.io import savemat

    gt_dir = Path(gt_dir)
    n_events = len(gt.events)
    base: dict[str, np.ndarray] = {
        "event_list": _cell([np.array([ev]) for ev in gt.events]),
        "file_list": _cell([_cell([np.array([s]) for s in stems]) for stems in gt.files]),
        "face_bbx_list": _cell(
            [_cell([np.asarray(b, dtype=np.int32).reshape(-1, 4) for b in ev]) for ev in gt.boxes]
        ),
    }
    if gt.attributes is not None:
        for col, name in enumerate(ATTRIBUTE_NAMES):
            base[f"{name}_label_list"] = _cell(
                [
                    _cell([np.asarray(a)[:, col].astype(np.uint8).reshape(-1, 1) for a in ev])
                    for ev in gt.attributes
                ]
            )
    for key, filename in EVAL_GT_FILES.items():
        content = dict(base)
        if key != "face":
            lists = gt.keep[key]
            if len(lists) != n_events:
                raise ValueError(f"keep[{key!r}] has {len(lists)} events, expected {n_events}")
            content["gt_list"] = _cell([_cell([_gt_list_entry(k) for k in ev]) for ev in lists])
        buffer = io.BytesIO()
        savemat(buffer, content, do_compression=True, oned_as="column")
        data = buffer.getbuffer()
        # scipy stamps the creation time into the 116-byte text header; a fixed text keeps
        # the bytes a function of the content (reproducible data sets, stable checksums).
        data[:116] = _MAT_HEADER.ljust(116, b" ")
        with atomic_open(gt_dir / filename, "wb") as f:
            f.write(data)


# ------------------------------------------------------------------- prediction folders


@dataclass
class PredictionProblem:
    """A prediction file that was missing or did not (fully) parse."""

    path: str
    problem: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.problem}"

    def error(self) -> FormatError:
        return FormatError(self.path, self.problem, self.line)


@dataclass
class WiderPredictions:
    """A prediction folder read against the ground truth.

    ``rows``: (M, 5) float64 ``x y w h score`` of all images, in ground-truth image order and
    file order within an image; ``offsets``: (n_images + 1,) int64, image ``i`` owns
    ``rows[offsets[i]:offsets[i+1]]``. ``missing``: relative paths of absent files;
    ``invalid``: files that did not parse (they contribute no predictions, like the official
    tool); ``notes``: files used with a caveat (more box lines than their count: the first
    ``count`` are used, as the official tool does); ``extra``: relative paths of ``.txt`` files
    the ground truth does not list; ``empty``: relative paths of files with a box count of 0.
    """

    root: Path
    rows: np.ndarray
    offsets: np.ndarray
    missing: list[str] = field(default_factory=list)
    invalid: list[PredictionProblem] = field(default_factory=list)
    notes: list[PredictionProblem] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.offsets) - 1

    def image(self, index: int) -> np.ndarray:
        """(P, 5) rows of image ``index`` (flat ground-truth order)."""
        return self.rows[self.offsets[index] : self.offsets[index + 1]]

    def counts(self) -> np.ndarray:
        """(n_images,) number of predictions per image."""
        return np.diff(self.offsets)


def prediction_path(root: str | Path, event: str, stem: str) -> Path:
    return Path(root) / event / f"{stem}.txt"


def write_prediction_file(
    root: str | Path,
    event: str,
    stem: str,
    boxes_xywh: np.ndarray,
    scores: np.ndarray,
    *,
    digits: int = 9,
) -> Path:
    """Write ``<root>/<event>/<stem>.txt`` in the official layout (atomically).

    ``boxes_xywh``: (N, 4); ``scores``: (N,). Numbers are written with ``digits``
    significant digits (9 round-trips float32 exactly).
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    path = prediction_path(root, event, stem)
    _replace_file(path, format_prediction_text(stem, boxes, scores, digits=digits).encode())
    return path


def _replace_file(path: Path, data: bytes) -> None:
    """Write via a temp file + ``os.replace``: a killed writer never leaves a partial file.

    Unlike :func:`facebench.atomic.atomic_open` there is no fsync: a detector writes
    thousands of these small files, and an fsync each costs more than the detection output
    itself; the rename alone already rules out half-written files.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # name the user's file, never the temp file
            raise output_error(exc, path) from None
        raise


def format_prediction_text(
    stem: str, boxes_xywh: np.ndarray, scores: np.ndarray, *, digits: int = 9
) -> str:
    """The text of one prediction file (name line, count line, ``x y w h score`` lines)."""
    rows = np.column_stack([np.asarray(boxes_xywh, float).reshape(-1, 4), scores])
    lines = [f"{stem}", f"{len(rows)}"]
    fmt = f"%.{digits}g"
    if len(rows):
        lines.append("\n".join(" ".join(fmt % v for v in row) for row in rows.tolist()))
    return "\n".join(lines) + "\n"


def read_prediction_file(path: str | Path) -> np.ndarray:
    """Read one prediction file strictly: (N, 5) float64; raises FormatError on any problem."""
    path = Path(path)
    rows, problem, _ = parse_prediction_bytes(path.read_bytes(), str(path))
    if problem is not None:
        raise problem.error()
    return rows


def parse_prediction_bytes(
    data: bytes, path: str
) -> tuple[np.ndarray, PredictionProblem | None, PredictionProblem | None]:
    """Parse one prediction file's bytes: ``(rows (N, 5), fatal problem, note)``.

    A fatal problem means the official tool would read no boxes from the file (rows is then
    empty); a note means the rows are usable but the file deviates (more lines than its count).
    """
    empty = np.zeros((0, 5))
    nl1 = data.find(b"\n")
    if not data.strip():
        return (
            empty,
            PredictionProblem(path, "empty file (expected image name and box count)", 1),
            None,
        )
    if nl1 < 0:
        return empty, PredictionProblem(path, "missing box count (line 2)", 2), None
    nl2 = data.find(b"\n", nl1 + 1)
    count_text = data[nl1 + 1 : nl2 if nl2 >= 0 else len(data)].strip()
    try:
        count_value = float(count_text)
        if not count_value.is_integer() or count_value < 0:
            raise ValueError
        count = int(count_value)
    except ValueError:
        shown = count_text.decode("utf-8", "replace")[:40]
        return (
            empty,
            PredictionProblem(path, f"box count {shown!r} is not a non-negative integer", 2),
            None,
        )
    if count == 0:
        return empty, None, None
    body = data[nl2 + 1 :] if nl2 >= 0 else b""
    rows = _parse_clean_body(body, count)
    if rows is not None:
        return rows, None, None
    # Something is off: the exact (slower) path below finds the line and the problem.
    buf = np.frombuffer(body, dtype=np.uint8)
    tokens_per_line = _tokens_per_line(buf)
    used = np.flatnonzero(tokens_per_line)  # blank lines are skipped
    n_rows = len(used)
    if n_rows < count:
        return (
            empty,
            PredictionProblem(
                path,
                f"box count says {count} but {n_rows} box lines follow",
                2 + (int(used[-1]) + 1 if n_rows else 1),
            ),
            None,
        )
    per_row = tokens_per_line[used[:count]]
    short = np.flatnonzero(per_row < 5)
    if short.size:
        k = int(short[0])
        return (
            empty,
            PredictionProblem(
                path,
                f"expected 5 numbers (x y w h score), found {int(per_row[k])}",
                3 + int(used[k]),
            ),
            None,
        )
    try:
        values = np.fromstring(body, sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != int(tokens_per_line.sum()):
        line, token = _first_bad_token(body)
        return empty, PredictionProblem(path, f"not a number: {token!r}", 3 + line), None
    if n_rows and tokens_per_line[used].max() == 5 and tokens_per_line[used].min() == 5:
        rows = values.reshape(-1, 5)[:count]
    else:  # extra columns: keep the first five of each line
        first = np.concatenate([[0], np.cumsum(tokens_per_line[used])[:-1]])[:count]
        rows = values[first[:, None] + np.arange(5)]
    finite = np.isfinite(rows)
    if not finite.all():
        k = int(np.flatnonzero(~finite.all(axis=1))[0])
        what = "score" if finite[k, :4].all() else "coordinate"
        return empty, PredictionProblem(path, f"{what} is NaN or infinite", 3 + int(used[k])), None
    negative = (rows[:, 2] < 0) | (rows[:, 3] < 0)
    if negative.any():
        k = int(np.flatnonzero(negative)[0])
        return (
            empty,
            PredictionProblem(path, "negative box width or height", 3 + int(used[k])),
            None,
        )
    note = None
    if n_rows > count:
        note = PredictionProblem(
            path,
            f"box count says {count} but {n_rows} box lines follow (first {count} used)",
            3 + int(used[count]),
        )
    return np.ascontiguousarray(rows, dtype=np.float64), None, note


def _parse_clean_body(body: bytes, count: int) -> np.ndarray | None:
    """Fast path: (count, 5) rows when the body is exactly ``count`` clean lines, else None.

    numpy's C text parser (``loadtxt``) is the fastest parser numpy offers; any irregularity
    (wrong columns, text, NaN/inf, negative sizes, a count mismatch) returns None so the exact
    path can name the line.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data"
            rows = np.loadtxt(io.BytesIO(body), dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    if rows.shape[0] != count or rows.shape[1] < 5:
        return None
    rows = rows[:, :5]
    if not np.isfinite(rows).all() or (rows[:, 2:4] < 0).any():
        return None
    return np.ascontiguousarray(rows)


def read_wider_predictions(
    root: str | Path,
    gt: WiderEvalGT,
    *,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> WiderPredictions:
    """Read the prediction folder ``root`` for every ground-truth image, in .mat order.

    Missing files and files that do not parse give an image no predictions and are recorded;
    ``strict=True`` raises FormatError for the first such file instead (and for a file with
    more box lines than its count). ``progress(done, total)`` is called as files are read.
    """
    root = Path(root)
    if not root.is_dir():
        raise FormatError(root, "prediction folder does not exist or is not a folder")
    keys = gt.image_keys()
    n = len(keys)
    chunks: list[np.ndarray] = []
    counts = np.zeros(n, dtype=np.int64)
    result = WiderPredictions(root, np.zeros((0, 5)), np.zeros(n + 1, dtype=np.int64))
    step = max(1, n // 100)
    for index, (event, stem) in enumerate(keys):
        rel = f"{event}/{stem}.txt"
        path = os.path.join(root, event, stem + ".txt")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            if strict:
                raise FormatError(
                    path, "prediction file missing for a ground-truth image"
                ) from None
            result.missing.append(rel)
            continue
        except OSError as exc:  # a folder or an unreadable file where a file should be
            unreadable = PredictionProblem(path, os_problem(exc))
            if strict:
                raise unreadable.error() from None
            result.invalid.append(unreadable)
            continue
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        rows, problem, note = parse_prediction_bytes(data, path)
        if problem is not None:
            if strict:
                raise problem.error()
            result.invalid.append(problem)
        if note is not None:
            if strict:
                raise note.error()
            result.notes.append(note)
        if len(rows):
            chunks.append(rows)
            counts[index] = len(rows)
        elif problem is None:
            result.empty.append(rel)
        if progress is not None and (index % step == 0 or index == n - 1):
            progress(index + 1, n)
    result.rows = np.concatenate(chunks) if chunks else np.zeros((0, 5))
    result.offsets[1:] = np.cumsum(counts)
    result.extra = _extra_files(root, keys)
    return result


# ------------------------------------------------------------------------------ helpers


def _looks_like_image_name(name: str) -> bool:
    return "/" in name and not _is_numeric_line(name)


def _is_numeric_line(line: str) -> bool:
    try:
        [float(t) for t in line.split()]
    except ValueError:
        return False
    return True


def _is_zero_line(line: str) -> bool:
    tokens = line.split()
    return bool(tokens) and all(_is_zero(t) for t in tokens)


def _is_zero(token: str) -> bool:
    try:
        return float(token) == 0.0
    except ValueError:
        return False


def _parse_rows(
    lines: list[str], line_no: list[int], width: int, path: Path, what: str
) -> np.ndarray:
    """Parse ``lines`` (each ``width`` numbers) into (len(lines), width) float64."""
    if not lines:
        return np.zeros((0, width))
    body = "\n".join(lines).encode()
    per_line = _tokens_per_line(np.frombuffer(body, dtype=np.uint8))
    wrong = np.flatnonzero(per_line != width)
    if wrong.size:
        k = int(wrong[0])
        raise FormatError(
            path, f"expected {width} numbers ({what}), found {int(per_line[k])}", line_no[k] + 1
        )
    try:
        values = np.fromstring(body, sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != width * len(lines):
        line, token = _first_bad_token(body)
        raise FormatError(path, f"not a number: {token!r}", line_no[line] + 1)
    return values.reshape(-1, width)


def _check_finite(values: np.ndarray, line_no: list[int], path: Path) -> None:
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise FormatError(path, "NaN or infinite value", line_no[int(bad[0])] + 1)


def _tokens_per_line(buf: np.ndarray) -> np.ndarray:
    """Number of whitespace-separated tokens on each ``\\n``-separated line of ``buf``."""
    if buf.size == 0:
        return np.zeros(1, dtype=np.int64)
    ws = _WHITESPACE[buf]
    starts = ~ws
    starts[1:] &= ws[:-1]
    newline_positions = np.flatnonzero(buf == 10)
    line_of_start = np.searchsorted(newline_positions, np.flatnonzero(starts))
    return np.bincount(line_of_start, minlength=len(newline_positions) + 1)


def _first_bad_token(body: bytes) -> tuple[int, str]:
    """(0-based line, token) of the first token that is not a number (slow path)."""
    for i, line in enumerate(body.decode("utf-8", "replace").split("\n")):
        for token in line.split():
            try:
                float(token)
            except ValueError:
                return i, token[:40]
    return 0, ""


def _format_numbers(values: np.ndarray) -> list[list[str]]:
    if np.array_equal(values, np.round(values)):
        return [[str(v) for v in row] for row in values.astype(np.int64).tolist()]
    return [[f"{v:.10g}" for v in row] for row in values.tolist()]


def _extra_files(root: Path, keys: list[tuple[str, str]]) -> list[str]:
    expected = {f"{ev}/{stem}.txt" for ev, stem in keys}
    extra = []
    for dirpath, _dirs, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if not name.endswith(".txt"):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel not in expected:
                extra.append(rel)
    return sorted(extra)


def _load_mat(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.is_file():
        raise FormatError(path, "ground-truth file not found")
    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt or non-MAT files
        raise FormatError(path, f"not a readable MATLAB .mat file ({exc})") from None


def _read_events(mat: dict, path: Path) -> list[str]:
    cells = _top_cell(mat, "event_list", path)
    return [_mat_string(c, path, f"event_list{{{i + 1}}}") for i, c in enumerate(cells)]


def _read_files(mat: dict, path: Path, n_events: int) -> list[list[str]]:
    cells = _top_cell(mat, "file_list", path)
    if len(cells) != n_events:
        raise FormatError(path, f"file_list has {len(cells)} events, event_list {n_events}")
    files = []
    for e, c in enumerate(cells):
        inner = _inner_cell(c, path, f"file_list{{{e + 1}}}")
        files.append(
            [_mat_string(s, path, f"file_list{{{e + 1}}}{{{i + 1}}}") for i, s in enumerate(inner)]
        )
    return files


def _read_cells(
    mat: dict, key: str, path: Path, shape: list[int], convert
) -> list[list[np.ndarray]]:
    cells = _top_cell(mat, key, path)
    if len(cells) != len(shape):
        raise FormatError(path, f"{key} has {len(cells)} events, expected {len(shape)}")
    out = []
    for e, c in enumerate(cells):
        where = f"{key}{{{e + 1}}}"
        inner = _inner_cell(c, path, where)
        if len(inner) != shape[e]:
            raise FormatError(path, f"{where} has {len(inner)} images, expected {shape[e]}")
        out.append([convert(x, path, f"{where}{{{i + 1}}}") for i, x in enumerate(inner)])
    return out


def _top_cell(mat: dict, key: str, path: Path) -> list:
    if key not in mat:
        raise FormatError(path, f"variable {key!r} missing")
    value = mat[key]
    if not isinstance(value, np.ndarray) or value.dtype != object:
        raise FormatError(path, f"{key} is not a cell array")
    return list(value.reshape(-1))


def _inner_cell(value, path: Path, where: str) -> list:
    if not isinstance(value, np.ndarray) or value.dtype != object:
        raise FormatError(path, f"{where} is not a cell array")
    return list(value.reshape(-1))


def _mat_string(value, path: Path, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        return str(value.reshape(-1)[0])
    raise FormatError(path, f"{where} is not a string")


def _as_box_array(value, path: Path, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        raise FormatError(path, f"{where} is not a numeric matrix")
    if value.size == 0:
        return np.zeros((0, 4), dtype=np.int32)
    if value.ndim != 2 or value.shape[1] != 4:
        raise FormatError(path, f"{where} has shape {value.shape}, expected (N, 4)")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise FormatError(path, f"{where} holds NaN or infinite values")
    if value.dtype != np.int32:
        info = np.iinfo(np.int32)
        low, high = value.min(), value.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise FormatError(path, f"{where} holds {bad:.6g}, outside the int32 box range")
        value = value.astype(np.int32)
    return value


def _as_column(value, path: Path, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        raise FormatError(path, f"{where} is not a numeric array")
    if value.size and value.ndim == 2 and min(value.shape) != 1:
        raise FormatError(path, f"{where} has shape {value.shape}, expected a column")
    flat = value.reshape(-1)
    if flat.dtype.kind == "f" and not (np.isfinite(flat).all() and (flat == np.round(flat)).all()):
        raise FormatError(path, f"{where} holds non-integer values")
    return flat.astype(np.int64)


def _cell(items: list) -> np.ndarray:
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def _gt_list_entry(keep: np.ndarray) -> np.ndarray:
    keep = np.asarray(keep, dtype=np.int64).reshape(-1, 1)
    dtype = np.uint8 if keep.size == 0 or keep.max() <= 255 else np.uint16
    return keep.astype(dtype)
