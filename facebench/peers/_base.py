"""Helpers shared by the peer adapters: lazy imports, box conversion, batching by shape."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np

from facebench.errors import FacebenchError

#: Columns of one detection row: x1, y1, x2, y2, score, scale_id (-1 for peers).
DETECTION_COLUMNS = 6


class MissingPackageError(FacebenchError):
    """A peer detector's package is not installed; the message gives the pip command."""

    def __init__(self, detector: str, module: str, install: str, cause: BaseException) -> None:
        self.detector = detector
        self.install = install
        super().__init__(
            f"detector {detector!r} needs the Python module {module!r} "
            f"({type(cause).__name__}: {cause}); install it with: {install}"
        )


def require(module: str, detector: str, install: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingPackageError` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackageError(detector, module, install, exc) from exc


def package_version(distribution: str) -> str | None:
    """Installed version of a pip distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def limit_threads(threads: int | None) -> None:
    """Ask OpenMP-based native code to use ``threads`` threads (set before it loads)."""
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def empty_detections() -> np.ndarray:
    return np.zeros((0, DETECTION_COLUMNS), dtype=np.float32)


def from_xywh(xywh: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(K, 4) ``left top width height`` + (K,) scores -> (K, 6) float32 detection rows.

    Rows are sorted by descending score; the scale_id column is -1.
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return from_xyxy(xyxy, scores)


def from_xyxy(xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(K, 4) ``x1 y1 x2 y2`` + (K,) scores -> (K, 6) float32 rows, best score first."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(xyxy) != len(scores):
        raise ValueError(f"{len(xyxy)} boxes but {len(scores)} scores")
    out = np.empty((len(xyxy), DETECTION_COLUMNS), dtype=np.float32)
    out[:, :4] = xyxy
    out[:, 4] = scores
    out[:, 5] = -1
    return out[np.argsort(-out[:, 4], kind="stable")]


def check_image(image: np.ndarray) -> None:
    """Images given to ``detect_batch`` are HxWx3 uint8 RGB."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")


def by_shape(
    images: Sequence[np.ndarray], run: Callable[[list[np.ndarray]], list[np.ndarray]]
) -> list[np.ndarray]:
    """Call ``run`` once per group of same-shape images, keep the input order.

    Networks with a batch dimension need equal sizes; WIDER images differ in height.
    """
    for image in images:
        check_image(image)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    out: list[np.ndarray | None] = [None] * len(images)
    for indices in groups.values():
        for i, dets in zip(indices, run([images[i] for i in indices]), strict=True):
            out[i] = dets
    return out  # type: ignore[return-value]
