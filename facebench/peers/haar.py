"""``haar``: OpenCV's Viola-Jones cascade (``haarcascade_frontalface_default.xml``).

Ships with ``opencv-python-headless`` < 5 (already a facebench dependency; OpenCV 5
dropped ``cv2.data``). The image is converted to grey and scanned at its full size
(``scaleFactor`` 1.1, the cascade's 24 px minimum window). ``detectMultiScale3`` with
``outputRejectLevels=True`` returns, per grouped window, the weight sum of the last
cascade stage: that is the score. It is an unbounded real number (about -3 to 8 in
practice, higher = more face-like), not a probability; the WIDER protocol min-max
normalises scores, so the ranking is what counts. ``min_neighbors`` 1 (OpenCV's default
is 3) keeps weakly supported windows so that the score, not grouping, cuts the curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facebench.peers._base import (
    MissingPackageError,
    check_image,
    empty_detections,
    from_xywh,
    require,
)

INSTALL = "pip install 'opencv-python-headless<5'"
CASCADE = "haarcascade_frontalface_default.xml"


class Haar:
    """Detector interface over ``cv2.CascadeClassifier`` (see the module docstring)."""

    name = "haar"

    def __init__(
        self, scale_factor: float = 1.1, min_neighbors: int = 1, threads: int | None = None
    ) -> None:
        cv2 = require("cv2", self.name, INSTALL)
        data = getattr(cv2, "data", None)
        if data is None:
            raise MissingPackageError(
                self.name, "cv2.data", INSTALL, ImportError("this OpenCV has no cv2.data")
            )
        self._classifier = cv2.CascadeClassifier(data.haarcascades + CASCADE)
        if self._classifier.empty():
            raise MissingPackageError(
                self.name, "cv2.data", INSTALL, ImportError(f"cannot load {CASCADE}")
            )
        if threads is not None:
            cv2.setNumThreads(threads)
        self._cv2 = cv2
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.threads = threads

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(K, 6) float32 ``x1 y1 x2 y2 score -1`` per image, best first."""
        return [self._detect(image) for image in images]

    def _detect(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        grey = self._cv2.cvtColor(image, self._cv2.COLOR_RGB2GRAY)
        rects, _levels, weights = self._classifier.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            outputRejectLevels=True,
        )
        if len(rects) == 0:
            return empty_detections()
        return from_xywh(np.asarray(rects), np.asarray(weights).reshape(-1))

    def protocol(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": f"OpenCV Haar cascade {CASCADE}",
            "package": "opencv-python-headless",
            "package_version": self._cv2.__version__,
            "input": "full image, greyscale",
            "scale_factor": self.scale_factor,
            "min_neighbors": self.min_neighbors,
            "score_threshold": None,
            "score_threshold_note": "no score cut: every grouped window is kept",
            "score_range": "unbounded real: last-stage weight sum (levelWeights)",
            "threads": self.threads,
        }
