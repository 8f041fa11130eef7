"""Run any face detector over an image set and write the official output layouts.

The detector interface (duck-typed, see :class:`Detector`): ``.name``,
``.detect_batch(images)`` with images HxWx3 uint8 RGB, returning per image a (K, 6)
float32 array ``x1 y1 x2 y2 score scale_id`` in image pixels (scale_id -1 where it does
not apply), and ``.protocol() -> dict`` of plain values. The peer adapters
(:mod:`facebench.peers`) and the trained checkpoint (``detector.inference``) implement it.

Image sources give :class:`ImageItem` lists: a folder of images (recursive), the WIDER
layout (``WIDER_val/images/<event>/*.jpg``, optionally restricted to the images a split
file lists) and FDDB folds (``FDDB-fold-XX.txt`` names + an image folder). Writers turn
detections into the WIDER submission layout (one ``<event>/<stem>.txt`` per image), FDDB
detection files (rectangles, or ellipses through the S3FD regressor), COCO results
(``detections.json`` + ``images.json``) and, for detectors
with anchor scales, one extra WIDER folder per scale (``<out>@16``...). Every file is
written atomically; ``protocol.json`` in the output folder is written last, so its
presence marks a complete run. This module never imports torch.
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from facebench.atomic import write_json
from facebench.errors import FacebenchError, FormatError, quote
from facebench.images import decode_image_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PROTOCOL_FILE = "protocol.json"


@runtime_checkable
class Detector(Protocol):
    """What ``facebench detect`` runs (see the module docstring for the contract)."""

    name: str

    def detect_batch(self, images: list[np.ndarray]) -> list[np.ndarray]: ...

    def protocol(self) -> dict: ...


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ImageItem:
    """One image to run: its file and its output key.

    ``key``: '/'-separated relative path without extension (WIDER ``event/stem``, FDDB
    ``2002/08/11/big/img_591``, or the path under a plain folder). ``fold``: FDDB fold.
    """

    path: Path
    key: str
    fold: int | None = None

    @property
    def event(self) -> str:
        """The folder part of the key ('' for an image at the top of a plain folder)."""
        return self.key.rpartition("/")[0]

    @property
    def stem(self) -> str:
        return self.key.rpartition("/")[2]


def folder_images(root: str | Path) -> list[ImageItem]:
    """Every image under ``root`` (recursive, sorted), keyed by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise FacebenchError(f"{root}: image folder not found")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FacebenchError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return [ImageItem(p, p.relative_to(root).with_suffix("").as_posix()) for p in paths]


def wider_images(images_dir: str | Path, split: str | Path | None = None) -> list[ImageItem]:
    """Images of a WIDER layout ``<images_dir>/<event>/<name>.jpg``.

    ``images_dir`` may be the ``images`` folder or the ``WIDER_val`` folder above it.
    ``split``: a file whose lines include image paths ``event/name.jpg`` (the official
    ``*_bbx_gt.txt`` or a file list); only those images run, in file order, and each must
    exist.
    """
    root = Path(images_dir)
    if (root / "images").is_dir():
        root = root / "images"
    if not root.is_dir():
        raise FacebenchError(f"{images_dir}: WIDER images folder not found")
    if split is None:
        items = folder_images(root)
        flat = [i for i in items if "/" not in i.key]
        if flat:
            raise FormatError(
                flat[0].path, "image outside an event folder (WIDER layout: images/<event>/*.jpg)"
            )
        return items
    split = Path(split)
    try:
        lines = split.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as exc:
        raise FormatError(split, f"cannot read split file: {exc.strerror or exc}") from None
    items = []
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        path = root / name
        if not path.is_file():
            raise FormatError(split, f"listed image {quote(name)} not found under {root}", number)
        items.append(ImageItem(path, Path(name).with_suffix("").as_posix()))
    if not items:
        raise FormatError(split, "no image paths (event/name.jpg) in this split file")
    return items


def fddb_images(
    folds_dir: str | Path, images_dir: str | Path, folds: Iterable[int] | None = None
) -> list[ImageItem]:
    """FDDB images ``<images_dir>/<name>.jpg`` for the names of ``FDDB-fold-XX.txt``."""
    from facebench.formats.fddb import N_FOLDS, fold_paths, read_fold_list

    images_dir = Path(images_dir)
    items = []
    for fold in folds if folds is not None else range(1, N_FOLDS + 1):
        list_path, _ = fold_paths(folds_dir, fold)
        if not list_path.is_file():
            raise FormatError(list_path, f"fold {fold} image list not found")
        for name in read_fold_list(list_path):
            path = images_dir / f"{name}.jpg"
            if not path.is_file():
                raise FormatError(list_path, f"image {name!r} not found as {path}")
            items.append(ImageItem(path, name, fold))
    return items


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB (pixel limit and EXIF rule of
    :mod:`facebench.images`)."""
    return decode_image_rgb(path)


# --------------------------------------------------------------------------- checks


def check_detections(dets: np.ndarray, where: str) -> np.ndarray:
    """Validate one image's detector output; return (K, 6) float32 without unusable rows.

    Raises FacebenchError for a wrong shape; drops rows that are not finite or have
    ``x2 < x1`` / ``y2 < y1`` (an official file cannot hold a negative size).
    """
    arr = np.asarray(dets)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise FacebenchError(f"{where}: detector returned shape {arr.shape}, expected (K, 6)")
    arr = arr.astype(np.float32, copy=False)
    good = np.isfinite(arr).all(axis=1) & (arr[:, 2] >= arr[:, 0]) & (arr[:, 3] >= arr[:, 1])
    return arr if good.all() else arr[good]


def to_xywh(dets: np.ndarray) -> np.ndarray:
    """(K, >=4) ``x1 y1 x2 y2 ...`` -> (K, 4) float64 ``x y w h``."""
    xyxy = np.asarray(dets[:, :4], dtype=np.float64)
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


# --------------------------------------------------------------------------- writers


class OutputWriter(Protocol):
    """Receives each image's detections; ``close()`` finishes and describes the output."""

    def write(self, item: ImageItem, dets: np.ndarray) -> None: ...

    def close(self) -> dict[str, Any]: ...


class WiderWriter:
    """The WIDER submission layout: ``<root>/<event>/<stem>.txt`` per image, ``x y w h s``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.files = 0

    def write(self, item: ImageItem, dets: np.ndarray) -> None:
        from facebench.formats.wider import write_prediction_file

        write_prediction_file(self.root, item.event, item.stem, to_xywh(dets), dets[:, 4])
        self.files += 1

    def close(self) -> dict[str, Any]:
        return {"format": "wider", "path": str(self.root), "files": self.files}


class PerScaleWiderWriter:
    """One extra WIDER folder per anchor scale, ``<root>@<scale>``, from the scale_id column.

    ``scale_names[i]`` names scale id ``i`` (e.g. ``16`` for the 16 px anchors); without
    names the id itself is used. Every image gets a file in every scale folder (empty
    when that scale found nothing); a scale first seen after some images gets empty files
    for those images as soon as it appears.
    """

    def __init__(self, root: str | Path, scale_names: Sequence[str | int] | None = None) -> None:
        self.root = Path(root)
        self.names = [str(s) for s in scale_names] if scale_names else None
        self._folders: dict[int, WiderWriter] = {}
        self._seen: list[ImageItem] = []
        if self.names:
            for sid in range(len(self.names)):
                self._folder(sid)

    def _folder(self, sid: int) -> WiderWriter:
        if sid not in self._folders:
            name = self.names[sid] if self.names and 0 <= sid < len(self.names) else str(sid)
            self._folders[sid] = WiderWriter(self.root.parent / f"{self.root.name}@{name}")
            # Images written before this scale appeared get their (empty) file now.
            for earlier in self._seen:
                self._folders[sid].write(earlier, np.zeros((0, 6), np.float32))
        return self._folders[sid]

    def write(self, item: ImageItem, dets: np.ndarray) -> None:
        ids = dets[:, 5].astype(np.int64)
        if (ids < 0).any():
            raise FacebenchError(
                f"{item.key}: --per-scale needs scale ids >= 0; this detector reports -1"
            )
        for sid in np.unique(ids).tolist():
            self._folder(sid)
        for sid, writer in self._folders.items():
            writer.write(item, dets[ids == sid])
        self._seen.append(item)

    def close(self) -> dict[str, Any]:
        return {
            "format": "wider-per-scale",
            "folders": {
                (self.names[s] if self.names and s < len(self.names) else str(s)): str(w.root)
                for s, w in sorted(self._folders.items())
            },
        }


class FddbWriter:
    """FDDB detection files: ``<root>/detections.txt`` (all images, input order) and, for
    FDDB fold sources, ``<root>/fold-XX-out.txt`` per fold.

    ``ellipse=False`` writes ``left top width height score``; ``ellipse=True`` converts
    each rectangle with the S3FD regressor (:func:`facebench.formats.fddb.rect_to_ellipse_s3fd`)
    and writes ``major minor angle cx cy score``.
    """

    def __init__(self, root: str | Path, ellipse: bool = False) -> None:
        self.root = Path(root)
        self.ellipse = ellipse
        self._items: list[tuple[str, int | None, np.ndarray]] = []

    def write(self, item: ImageItem, dets: np.ndarray) -> None:
        from facebench.formats.fddb import rect_to_ellipse_s3fd

        xywh = to_xywh(dets)
        shape = rect_to_ellipse_s3fd(xywh) if self.ellipse else xywh
        rows = np.column_stack([shape, dets[:, 4].astype(np.float64)])
        self._items.append((item.key, item.fold, rows))

    def close(self) -> dict[str, Any]:
        from facebench.formats.fddb import write_detections

        fmt = "ellipse" if self.ellipse else "rect"
        write_detections(self.root / "detections.txt", [(k, r) for k, _, r in self._items], fmt)
        files = [str(self.root / "detections.txt")]
        folds = sorted({f for _, f, _ in self._items if f is not None})
        for fold in folds:
            path = self.root / f"fold-{fold:02d}-out.txt"
            write_detections(path, [(k, r) for k, f, r in self._items if f == fold], fmt)
            files.append(str(path))
        return {"format": f"fddb-{fmt}", "path": str(self.root), "files": files}


class CocoWriter:
    """COCO results: ``<root>/detections.json`` (``[{"image_id", "category_id": 1, "bbox":
    [x, y, w, h], "score"}]``) and ``<root>/images.json`` (``{"images": [{"id", "file_name",
    "width", "height"}]}``, ids 1, 2, ... in input order; ``file_name`` the item key plus
    its image suffix). Both evaluators read this pair (:mod:`facebench.formats.coco`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._images: list[dict[str, Any]] = []
        self._dets: list[np.ndarray] = []

    def write(self, item: ImageItem, dets: np.ndarray) -> None:
        from facebench.formats.imagesize import image_size

        width, height = image_size(item.path)
        self._images.append({"id": len(self._images) + 1, "file_name": item.key + item.path.suffix,
                             "width": width, "height": height})  # fmt: skip
        self._dets.append(np.column_stack([to_xywh(dets), dets[:, 4].astype(np.float64)]))

    def close(self) -> dict[str, Any]:
        from facebench.formats.coco import coco_entries, write_coco

        ids = [im["id"] for im in self._images]
        results, images = write_coco(self.root, self._images, coco_entries(ids, self._dets))
        return {"format": "coco", "path": str(results), "image_ids": str(images),
                "images": len(ids)}  # fmt: skip


# --------------------------------------------------------------------------- runner


@dataclass
class RunStats:
    """What a run measured. ``latency_ms[i]``: detector wall time per image of image i's
    batch (batch time / batch size, decoding excluded); ``cpu_ms[i]``: the same in process
    CPU time (all threads; robust to other load on a shared machine); ``sizes``: (N, 2)
    width, height."""

    images: int = 0
    detections: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms, dtype=np.float64)
        sizes = np.asarray(self.sizes, dtype=np.int64).reshape(-1, 2)
        return {
            "images": self.images,
            "detections": self.detections,
            "dropped_invalid_rows": self.dropped,
            "seconds": round(self.seconds, 3),
            "latency_ms_median": float(np.median(lat)) if lat.size else None,
            "latency_ms_p90": float(np.percentile(lat, 90)) if lat.size else None,
            "cpu_ms_median": float(np.median(self.cpu_ms)) if self.cpu_ms else None,
            "image_size_median": (
                [float(np.median(sizes[:, 0])), float(np.median(sizes[:, 1]))]
                if len(sizes)
                else None
            ),
            "peak_rss_mib": peak_rss_mib(),
        }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux ``ru_maxrss`` is KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def batches(items: Sequence[ImageItem], size: int) -> Iterable[Sequence[ImageItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_detection(
    detector: Detector,
    items: Sequence[ImageItem],
    writers: Sequence[OutputWriter],
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> RunStats:
    """Detect on every item in batches, hand each image's rows to every writer.

    Returns :class:`RunStats`; writers are not closed here (the caller closes them, then
    writes the protocol). ``progress(done, total)`` is called after each batch.
    """
    if batch_size < 1:
        raise FacebenchError(f"batch size must be >= 1, got {batch_size}")
    stats = RunStats()
    start = time.perf_counter()
    for chunk in batches(items, batch_size):
        images = [load_image(item.path) for item in chunk]
        t0, c0 = time.perf_counter(), time.process_time()
        results = detector.detect_batch(images)
        per_image = (time.perf_counter() - t0) * 1000.0 / len(chunk)
        cpu_per_image = (time.process_time() - c0) * 1000.0 / len(chunk)
        if len(results) != len(chunk):
            raise FacebenchError(
                f"{detector.name}: {len(results)} results for a batch of {len(chunk)} images"
            )
        for item, image, dets in zip(chunk, images, results, strict=True):
            rows = check_detections(dets, f"{detector.name} on {item.path}")
            stats.dropped += len(dets) - len(rows)
            for writer in writers:
                writer.write(item, rows)
            stats.detections += len(rows)
            stats.latency_ms.append(per_image)
            stats.cpu_ms.append(cpu_per_image)
            stats.sizes.append((image.shape[1], image.shape[0]))
        stats.images += len(chunk)
        if progress is not None:
            progress(stats.images, len(items))
    stats.seconds = time.perf_counter() - start
    return stats


def protocol_record(
    detector: Detector,
    source: dict[str, Any],
    outputs: list[dict[str, Any]],
    stats: RunStats,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The test protocol as plain values: detector settings, inputs, outputs, timing."""
    from facebench import __version__

    run = stats.summary()
    # Detectors that time their phases (preprocess / forward / postprocess) report them.
    for key, attr in (("phase_ms_per_image", "phase_seconds"),
                      ("phase_cpu_ms_per_image", "phase_cpu_seconds")):  # fmt: skip
        phases = getattr(detector, attr, None)
        if isinstance(phases, dict) and stats.images:
            run[key] = {k: round(1000.0 * v / stats.images, 3) for k, v in phases.items()}
    return {
        "facebench_version": __version__,
        "detector": detector.name,
        "detector_protocol": detector.protocol(),
        "source": source,
        "outputs": outputs,
        "run": run,
        "options": options or {},
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_protocol(out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``<out_dir>/protocol.json`` atomically and return its path."""
    path = Path(out_dir) / PROTOCOL_FILE
    write_json(path, record)
    return path
