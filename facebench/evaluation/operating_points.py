"""Operating points of a detection curve: where to set a deployed detector's threshold.

A curve is given point by point, ordered by decreasing threshold (as WIDER's 1000 thresholds
and FDDB's score sweep are): ``tp[k]`` true positives and ``proposals[k]`` counted
predictions (TP + FP) when keeping predictions with score >= ``thresholds[k]``, ``faces``
annotated faces and ``images`` images. From it:

* ``best_f1``: the point with the largest F1 = 2PR / (P + R) (the highest threshold among
  ties);
* ``at_precision``: the point with the largest recall whose precision is >= the target (None
  when no point reaches it);
* ``at_fppi``: the point with the largest recall whose false positives per image
  ``(proposals - tp) / images`` are <= the target (None when none does).

Each point reports ``threshold`` (on the curve's own axis: WIDER's normalised score),
``score`` (the same threshold in the detector's raw score units, where the caller gives the
mapping), ``precision``, ``recall``, ``f1``, ``fppi``, ``tp`` and ``fp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def curve_measures(
    tp: np.ndarray, proposals: np.ndarray, faces: int, images: int
) -> dict[str, np.ndarray]:
    """Per point: precision (NaN at 0/0), recall, F1 (NaN where undefined), fppi, fp."""
    tp = np.asarray(tp, dtype=np.float64)
    proposals = np.asarray(proposals, dtype=np.float64)
    fp = proposals - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / proposals
        recall = tp / np.float64(faces) if faces else np.full_like(tp, np.nan)
        f1 = 2 * precision * recall / (precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fppi": fp / max(1, images),
        "fp": fp,
    }


def operating_points(
    thresholds: np.ndarray,
    tp: np.ndarray,
    proposals: np.ndarray,
    faces: int,
    images: int,
    *,
    at_precision: float = 0.9,
    at_fppi: float = 1.0,
    to_score: Callable[[float], float] | None = None,
) -> dict[str, Any]:
    """The three operating points (module docstring) as plain JSON values."""
    m = curve_measures(tp, proposals, faces, images)
    recall = np.nan_to_num(m["recall"], nan=-1.0)
    best = _first_max(np.nan_to_num(m["f1"], nan=-1.0))
    reach = np.flatnonzero(np.nan_to_num(m["precision"], nan=-1.0) >= at_precision)
    under = np.flatnonzero(m["fppi"] <= at_fppi)

    def pick(candidates: np.ndarray, target: float) -> dict[str, Any]:
        if not candidates.size:
            return {"target": target, "threshold": None}
        k = candidates[_first_max(recall[candidates])]
        return {"target": target, **_point(k, thresholds, tp, m, to_score)}

    return {
        "best_f1": _point(best, thresholds, tp, m, to_score) if m["f1"][best] >= 0 else None,
        "at_precision": pick(reach, at_precision),
        "at_fppi": pick(under, at_fppi),
    }


def best_f1_index(tp: np.ndarray, proposals: np.ndarray, faces: int) -> int | None:
    """Index of the best-F1 point (highest threshold among ties), None without any."""
    f1 = curve_measures(tp, proposals, faces, 1)["f1"]
    if not np.isfinite(f1).any():
        return None
    return _first_max(np.nan_to_num(f1, nan=-1.0))


def _first_max(values: np.ndarray) -> int:
    return int(np.argmax(values))  # argmax returns the first of equal maxima


def _point(k: int, thresholds, tp, m: dict[str, np.ndarray], to_score) -> dict[str, Any]:
    thr = float(thresholds[k])
    return {
        "threshold": thr,
        "score": None if to_score is None else float(to_score(thr)),
        "precision": _num(m["precision"][k]),
        "recall": _num(m["recall"][k]),
        "f1": _num(m["f1"][k]),
        "fppi": _num(m["fppi"][k]),
        "tp": int(np.asarray(tp)[k]),
        "fp": int(m["fp"][k]),
    }


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)
