"""``mtcnn``: MTCNN (P-, R-, O-Net cascade) from facenet-pytorch, weights in the wheel.

Install with ``pip install --no-deps facenet-pytorch`` (its pins on torch are stale; it
runs with the torch this project uses) plus ``tqdm`` and ``requests``, which it imports.
The package's image pyramid (``min_face_size`` 20, ``factor`` 0.709) runs on the full
image; P- and R-Net keep their default thresholds (0.6, 0.7) because they prune
candidates for the next stage, and the final O-Net threshold is ``score_thresh`` (0.01).
Scores: O-Net face probability in [0, 1]. Boxes come back as float ``x1 y1 x2 y2``.
Importing this adapter's package imports torch; the adapter itself is loaded lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facebench.peers._base import by_shape, empty_detections, from_xyxy, package_version, require

INSTALL = "pip install --no-deps facenet-pytorch && pip install tqdm requests"


class Mtcnn:
    """Detector interface over ``facenet_pytorch.MTCNN`` (see the module docstring)."""

    name = "mtcnn"

    def __init__(
        self,
        score_thresh: float = 0.01,
        min_face_size: int = 20,
        stage_thresholds: tuple[float, float] = (0.6, 0.7),
        factor: float = 0.709,
        threads: int | None = None,
    ) -> None:
        facenet = require("facenet_pytorch", self.name, INSTALL)
        torch = require("torch", self.name, INSTALL)
        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.thresholds = [*stage_thresholds, score_thresh]
        self.min_face_size = min_face_size
        self.factor = factor
        self.threads = threads
        self._model = facenet.MTCNN(
            keep_all=True,
            min_face_size=min_face_size,
            thresholds=self.thresholds,
            factor=factor,
            device="cpu",
        )

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(K, 6) float32 ``x1 y1 x2 y2 score -1`` per image, best first."""
        return by_shape(images, self._run_same_shape)

    def _run_same_shape(self, images: list[np.ndarray]) -> list[np.ndarray]:
        with self._torch.inference_mode():
            boxes, probs = self._model.detect(np.stack(images))
        return [
            empty_detections() if b is None else from_xyxy(b, p)
            for b, p in zip(boxes, probs, strict=True)
        ]

    def protocol(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": "MTCNN (Zhang et al. 2016), facenet-pytorch weights",
            "package": "facenet-pytorch",
            "package_version": package_version("facenet-pytorch"),
            "runtime": f"torch {self._torch.__version__} CPU",
            "input": "full image, image pyramid from min_face_size with factor",
            "min_face_size": self.min_face_size,
            "factor": self.factor,
            "stage_thresholds": self.thresholds,
            "score_threshold": self.thresholds[-1],
            "score_range": "[0, 1] O-Net face probability",
            "threads": self.threads,
        }
