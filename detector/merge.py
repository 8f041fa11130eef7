"""The cross-scale merge: one behaviour for every output that combines the sub-detectors.

A checkpoint run with NMS inside each anchor scale (``nms_per_scale=True``) gives every
sub-detector (@16, @32, @64, @128) its own boxes. The combined output of such a run, in
``facebench detect --per-scale`` and in the ablation's runs (:mod:`detector.experiments.runs`)
alike, is :func:`merge_scales` of those boxes: greedy NMS in float32 across all scales at the
same IoU, then the ``keep`` highest-scored boxes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from detector.inference import chunked_nms


def merge_scales(dets: np.ndarray, nms_iou: float, keep: int) -> np.ndarray:
    """Merge per-scale detections of one image across anchor scales.

    ``dets``: ``(K, 6)`` rows ``x1 y1 x2 y2 score scale_id``. Returns the rows that survive
    greedy NMS at ``nms_iou`` over all rows whatever their ``scale_id`` (float32, ties in
    input order), first ``keep`` by decreasing score: float32 ``(K', 6)``, ``K' <= keep``.
    """
    t = torch.from_numpy(np.ascontiguousarray(dets, dtype=np.float32).reshape(-1, 6))
    groups = torch.zeros(len(t), dtype=torch.int64)
    kept = chunked_nms(t[:, :4], t[:, 4], groups, nms_iou, keep)
    return t[kept].numpy()


class MergedWriter:
    """Writer adapter: hands ``writer`` each image's :func:`merge_scales` result."""

    def __init__(self, writer: Any, nms_iou: float, keep: int) -> None:
        self.writer = writer
        self.nms_iou = nms_iou
        self.keep = keep

    def write(self, item: Any, dets: np.ndarray) -> None:
        self.writer.write(item, merge_scales(dets, self.nms_iou, self.keep))

    def close(self) -> dict:
        return self.writer.close()
