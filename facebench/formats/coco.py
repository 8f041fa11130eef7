"""COCO detection results as input to both evaluators, and as output of ``facebench detect``.

A results file is the COCO ``loadRes`` form: a JSON list of
``{"image_id": ID, "bbox": [x, y, w, h], "score": S}`` (``category_id`` and other keys are
allowed and ignored: every box is a face). Image ids are resolved to image names through an
**image-id map**, one of

* a JSON object ``{"ID": "name", ...}``;
* a COCO ``images`` list, bare or inside an object: ``{"images": [{"id": ID, "file_name":
  "name", ...}, ...]}`` (the form ``facebench detect --format coco`` writes as
  ``images.json``; it also records ``width`` and ``height``).

Without an explicit map, ``images.json`` beside the results file is used. Names are compared
without their extension: WIDER names are ``event/stem`` (a longer path, e.g.
``WIDER_val/images/event/stem.jpg``, matches on its last two parts), FDDB names are the fold
lists' ``2002/08/11/big/img_591``. Images with no entry have no detections (COCO lists only
detections). Errors name the file and the entry (0-based index in the list).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from facebench.atomic import write_json
from facebench.errors import FormatError
from facebench.formats.wider import WiderEvalGT, WiderPredictions

IMAGES_FILE = "images.json"
RESULTS_FILE = "detections.json"
FACE_CATEGORY = 1


@dataclass
class CocoResults:
    """Detections of a COCO results file by image name (extension stripped).

    ``boxes[name]``: (K, 5) float64 ``x y w h score`` in file order; ``images``: every name
    of the image-id map (also those without detections), in map order.
    """

    path: Path
    boxes: dict[str, np.ndarray]
    images: list[str] = field(default_factory=list)

    @property
    def n_detections(self) -> int:
        return int(sum(len(b) for b in self.boxes.values()))


def is_coco_results(path: str | Path) -> bool:
    """True for a ``.json`` file (a COCO results file; prediction folders are folders)."""
    path = Path(path)
    return path.suffix.lower() == ".json" and not path.is_dir()


def image_key(name: str) -> str:
    """An image name without extension, with '/' separators."""
    posix = PurePosixPath(str(name).replace("\\", "/"))
    return str(posix.with_suffix("")) if posix.suffix else str(posix)


def read_image_ids(path: str | Path) -> dict[str, str]:
    """``{str(id): name}`` from an image-id map file (module docstring)."""
    path = Path(path)
    data = _load(path, "image-id map")
    images = data.get("images") if isinstance(data, dict) else data
    if isinstance(data, dict) and images is None:
        if not all(isinstance(v, str) for v in data.values()):
            raise FormatError(path, 'an image-id map object must map ids to names {"1": "a.jpg"}')
        return {str(k): v for k, v in data.items()}
    if not isinstance(images, list):
        raise FormatError(path, 'expected {"id": "name"}, an images list or {"images": [...]}')
    out: dict[str, str] = {}
    for i, entry in enumerate(images):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise FormatError(path, f"images entry {i}: needs 'id' and 'file_name'")
        key = str(entry["id"])
        if key in out:
            raise FormatError(path, f"images entry {i}: id {entry['id']!r} given twice")
        out[key] = str(entry["file_name"])
    return out


def default_image_ids(results_path: str | Path) -> Path:
    """Where the image-id map of a results file is looked for without ``--image-ids``."""
    return Path(results_path).parent / IMAGES_FILE


def read_coco_results(path: str | Path, image_ids: str | Path | None = None) -> CocoResults:
    """Read a COCO results file, resolving ids with ``image_ids`` (default: images.json beside
    it). Raises FormatError naming the file and entry for anything malformed."""
    path = Path(path)
    ids_path = Path(image_ids) if image_ids is not None else default_image_ids(path)
    if not ids_path.is_file():
        raise FormatError(
            ids_path, f"image-id map for {path.name} not found (give --image-ids MAP.json)"
        )
    id_map = read_image_ids(ids_path)
    data = _load(path, "COCO results")
    if not isinstance(data, list):
        raise FormatError(path, 'expected a JSON list of {"image_id", "bbox", "score"}')
    image_index = np.empty(len(data), dtype=np.int64)
    rows = np.empty((len(data), 5), dtype=np.float64)
    names = list(dict.fromkeys(image_key(n) for n in id_map.values()))
    slot = {n: i for i, n in enumerate(names)}
    key_of = {k: slot[image_key(v)] for k, v in id_map.items()}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise FormatError(path, f"entry {i}: expected an object, got {type(entry).__name__}")
        missing = [k for k in ("image_id", "bbox", "score") if k not in entry]
        if missing:
            raise FormatError(path, f"entry {i}: missing {', '.join(missing)}")
        key = str(entry["image_id"])
        if key not in key_of:
            raise FormatError(path, f"entry {i}: image_id {entry['image_id']!r} not in {ids_path}")
        bbox = entry["bbox"]
        try:
            values = [float(v) for v in bbox] + [float(entry["score"])]
        except (TypeError, ValueError):
            raise FormatError(path, f"entry {i}: bbox and score must be numbers") from None
        if len(values) != 5:
            raise FormatError(path, f"entry {i}: bbox must be [x, y, w, h], got {bbox!r}")
        if not np.isfinite(values).all() or values[2] < 0 or values[3] < 0:
            raise FormatError(path, f"entry {i}: non-finite value or negative size {values}")
        image_index[i] = key_of[key]
        rows[i] = values
    order = np.argsort(image_index, kind="stable")
    counts = np.bincount(image_index, minlength=len(names))
    split = np.split(rows[order], np.cumsum(counts)[:-1]) if len(names) else []
    boxes = {n: b for n, b, c in zip(names, split, counts, strict=True) if c}
    return CocoResults(path, boxes, names)


def _load(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(path, f"{what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read {what}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"not valid JSON: {exc.msg}", exc.lineno) from None


def match_names(results: CocoResults, wanted: Sequence[str]) -> tuple[list[int], list[str]]:
    """For each name in ``wanted`` (extension-free), the index into ``results.images`` or -1;
    plus the result names that match nothing. A result name matches exactly, or by its last
    ``n`` parts where ``wanted`` names have ``n`` parts (WIDER ``event/stem``)."""
    exact = {n: i for i, n in enumerate(results.images)}
    tail: dict[str, int] = {}
    for i, n in enumerate(results.images):
        parts = n.split("/")
        for k in range(1, len(parts)):
            tail.setdefault("/".join(parts[k:]), i)
    index = [exact.get(w, tail.get(w, -1)) for w in wanted]
    used = set(index)
    unmatched = [n for i, n in enumerate(results.images) if i not in used and n in results.boxes]
    return index, unmatched


def coco_entries(
    image_ids: Iterable[int], detections: Iterable[np.ndarray]
) -> list[dict[str, Any]]:
    """Result entries for (K, >=5) ``x y w h score`` arrays, one per image id."""
    out = []
    for image_id, dets in zip(image_ids, detections, strict=True):
        for x, y, w, h, s in np.asarray(dets, dtype=np.float64).reshape(-1, 5).tolist():
            out.append(
                {"image_id": image_id, "category_id": FACE_CATEGORY,
                 "bbox": [x, y, w, h], "score": s}
            )  # fmt: skip
    return out


def write_coco(
    out_dir: str | Path,
    images: Sequence[Mapping[str, Any]],
    entries: Sequence[Mapping[str, Any]],
) -> tuple[Path, Path]:
    """Write ``detections.json`` (results list) and ``images.json`` (``{"images": [...],
    "categories": [{"id": 1, "name": "face"}]}``) atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    images_path, results_path = out_dir / IMAGES_FILE, out_dir / RESULTS_FILE
    write_json(
        images_path,
        {"images": list(images), "categories": [{"id": FACE_CATEGORY, "name": "face"}]},
    )
    write_json(results_path, list(entries))
    return results_path, images_path


def wider_predictions_from_coco(results: CocoResults, gt: WiderEvalGT) -> WiderPredictions:
    """The COCO detections as a :class:`WiderPredictions` in ground-truth order.

    Images of the ground truth without detections get none (not reported as missing: COCO
    lists only detections); result images the ground truth does not hold are ``extra``.
    """
    keys = [f"{event}/{stem}" for event, stem in gt.image_keys()]
    index, unmatched = match_names(results, keys)
    empty = np.zeros((0, 5))
    per_image = [results.boxes.get(results.images[i], empty) if i >= 0 else empty for i in index]
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in per_image])
    rows = np.concatenate(per_image) if per_image else empty
    return WiderPredictions(results.path, rows, offsets, extra=unmatched)
