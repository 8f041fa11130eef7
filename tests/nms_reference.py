"""Textbook greedy NMS in numpy: the independent expectation for the merge tests."""

from __future__ import annotations

import numpy as np


def greedy_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray | None, iou: float
) -> np.ndarray:
    """Indices kept by greedy NMS (score order, ties by input order) on ``x1 y1 x2 y2`` boxes;
    a box only suppresses boxes of its own group (all one group when ``groups`` is None)."""
    boxes = np.asarray(boxes, np.float64)
    groups = np.zeros(len(boxes), np.int64) if groups is None else np.asarray(groups)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    b, g = boxes[order], groups[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    alive = np.ones(len(b), bool)
    for i in range(len(b)):
        if alive[i]:
            w = np.clip(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), 0, None)
            h = np.clip(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), 0, None)
            inter = w * h
            over = (inter / (area[i] + area - inter) > iou) & (g == g[i])
            over[: i + 1] = False
            alive &= ~over
    return order[alive]
