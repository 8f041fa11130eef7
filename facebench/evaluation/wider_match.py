"""Match one image's predictions to its ground-truth faces, as each WIDER evaluator does.

Two rules, both vectorised over a (P, G) block of prediction x face pairs (the block is cut
into row chunks of at most :data:`CHUNK_PAIRS` pairs, so a dense image with 709 faces and
thousands of predictions stays within a few tens of MB):

* :func:`match_official` reproduces ``boxoverlap.m`` + ``[max_overlap, idx] = max(...)`` of the
  official MATLAB eval_tools with MATLAB's integer arithmetic. The ground-truth boxes are int32,
  so every operation that mixes them with the (double) predictions yields int32: the
  prediction corners ``x``, ``y``, ``x + w``, ``y + h`` are rounded half away from zero (and
  saturated to the int32 range), widths/heights/areas/intersections are int32 with
  saturation, the union ``aarea + barea - inter`` is rounded, and the IoU ``inter ./ union``
  is itself an int32 (0 or 1 for ordinary boxes). ``max`` then returns the FIRST face
  reaching the largest rounded overlap, which is a match when it is >= 0.5.
* :func:`match_python_port` reproduces the widely copied Python port (``bbox_overlaps`` in
  float64 with the same +1 convention, best IoU, first index among ties, match when >= 0.5).

Both return, for every prediction, the 0-based index of the matched face or -1.
"""

from __future__ import annotations

import numpy as np

CHUNK_PAIRS = 1 << 20
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def matlab_int32(values: np.ndarray) -> np.ndarray:
    """MATLAB's ``int32(double)``: round half away from zero, saturate, NaN -> 0 (as int64)."""
    values = np.asarray(values, dtype=np.float64)
    rounded = np.rint(values)  # exact, but half to even: fix the exact halves below
    tie = np.abs(values - rounded) == 0.5
    if tie.any():
        rounded[tie] = values[tie] + np.copysign(0.5, values[tie])  # exact for halves
    if rounded.size and not (np.abs(rounded).max() <= INT32_MAX):  # large, inf or NaN
        np.clip(rounded, INT32_MIN, INT32_MAX, out=rounded)
        rounded[np.isnan(rounded)] = 0
    return rounded.astype(np.int64)


def _sat(values: np.ndarray) -> np.ndarray:
    """Saturate int64 results of int32 operations to the int32 range."""
    return np.clip(values, INT32_MIN, INT32_MAX)


def _no_sat(values: np.ndarray) -> np.ndarray:
    return values


# Below this magnitude of every corner and area no int32 operation can saturate, so the
# saturation steps are skipped (they are exact no-ops there).
_SAFE_COORD = 2**13
_SAFE_AREA = 2**28


def official_corners(pred_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction terms of ``boxoverlap.m``: (P, 4) int32-rounded x1 y1 x2 y2, (P,) barea.

    Computed once for many images (the rounding is elementwise).
    """
    pred = np.asarray(pred_xywh, dtype=np.float64).reshape(-1, 4)
    corners = np.empty_like(pred)
    corners[:, :2] = pred[:, :2]
    corners[:, 2:] = pred[:, :2] + pred[:, 2:]
    barea = (corners[:, 2] - corners[:, 0] + 1) * (corners[:, 3] - corners[:, 1] + 1)
    return matlab_int32(corners), barea


def match_official(gt_xywh: np.ndarray, pred_xywh: np.ndarray) -> np.ndarray:
    """First-max match of eval_tools (MATLAB int32 semantics).

    ``gt_xywh``: (G, 4) integer boxes (the .mat's int32); ``pred_xywh``: (P, 4) float64 boxes in
    processing order. Returns (P,) int64: index of the matched face, -1 for none.
    """
    rounded, barea = official_corners(pred_xywh)
    return match_official_corners(gt_xywh, rounded, barea)


def match_official_corners(
    gt_xywh: np.ndarray, rounded: np.ndarray, barea: np.ndarray
) -> np.ndarray:
    """:func:`match_official` from precomputed :func:`official_corners`."""
    gt = np.asarray(gt_xywh, dtype=np.int64).reshape(-1, 4)
    n_pred, n_gt = len(rounded), len(gt)
    match = np.full(n_pred, -1, dtype=np.int64)
    if n_pred == 0 or n_gt == 0:
        return match
    safe = (
        np.abs(gt).max() < _SAFE_COORD // 2
        and np.abs(rounded).max() < _SAFE_COORD
        and np.abs(barea).max() < _SAFE_AREA
    )
    sat = _no_sat if safe else _sat
    # Ground truth, all int32: x2 = x + w (saturating), area = (x2 - x1 + 1)(y2 - y1 + 1).
    gx1, gy1 = gt[:, 0], gt[:, 1]
    gx2, gy2 = sat(gx1 + gt[:, 2]), sat(gy1 + gt[:, 3])
    aarea = sat(sat(sat(gx2 - gx1) + 1) * sat(sat(gy2 - gy1) + 1))
    # Prediction corners meet the int32 ground truth in max/min, so they enter rounded.
    rx1, ry1, rx2, ry2 = rounded[:, 0], rounded[:, 1], rounded[:, 2], rounded[:, 3]
    rows = max(1, CHUNK_PAIRS // n_gt)
    for start in range(0, n_pred, rows):
        stop = min(n_pred, start + rows)
        # int64 keeps w = x2 - x1 + 1 exact; only its sign decides which pairs can overlap.
        iw = np.minimum(gx2, rx2[start:stop, None]) - np.maximum(gx1, rx1[start:stop, None]) + 1
        ih = np.minimum(gy2, ry2[start:stop, None]) - np.maximum(gy1, ry1[start:stop, None]) + 1
        pi, gi = np.nonzero((iw > 0) & (ih > 0))  # row-major: by prediction, then face order
        if pi.size == 0:
            continue
        inter = sat(sat(iw[pi, gi]) * sat(ih[pi, gi]))
        union = sat(matlab_int32(aarea[gi] + barea[start + pi]) - inter)
        overlap = _rounded_ratio(inter, union)
        _first_max_match(overlap, pi, gi, 0.5, match[start:stop])
    return match


def _rounded_ratio(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """MATLAB ``int32 ./ int32``: the quotient rounded half away from zero, saturated."""
    if inter.size and inter.min() >= 0 and union.min() > 0:
        # Exact integer form of round-half-up for non-negative quotients.
        return (2 * inter + union) // (2 * union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return matlab_int32(inter / union)


def match_python_port(gt_xywh: np.ndarray, pred_xywh: np.ndarray) -> np.ndarray:
    """Best-IoU match of the Python port (float64 ``bbox_overlaps``, first among ties)."""
    pred = np.asarray(pred_xywh, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
    n_pred, n_gt = len(pred), len(gt)
    match = np.full(n_pred, -1, dtype=np.int64)
    if n_pred == 0 or n_gt == 0:
        return match
    gx1, gy1 = gt[:, 0], gt[:, 1]
    gx2, gy2 = gx1 + gt[:, 2], gy1 + gt[:, 3]
    garea = (gx2 - gx1 + 1) * (gy2 - gy1 + 1)
    px1, py1 = pred[:, 0], pred[:, 1]
    px2, py2 = px1 + pred[:, 2], py1 + pred[:, 3]
    parea = (px2 - px1 + 1) * (py2 - py1 + 1)
    rows = max(1, CHUNK_PAIRS // n_gt)
    for start in range(0, n_pred, rows):
        stop = min(n_pred, start + rows)
        iw = np.minimum(px2[start:stop, None], gx2) - np.maximum(px1[start:stop, None], gx1) + 1
        ih = np.minimum(py2[start:stop, None], gy2) - np.maximum(py1[start:stop, None], gy1) + 1
        pi, gi = np.nonzero((iw > 0) & (ih > 0))
        if pi.size == 0:
            continue
        inter = iw[pi, gi] * ih[pi, gi]
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / (parea[start + pi] + garea[gi] - inter)
        _first_max_match(overlap, pi, gi, 0.5, match[start:stop])
    return match


def _first_max_match(
    overlap: np.ndarray, pi: np.ndarray, gi: np.ndarray, threshold: float, out: np.ndarray
) -> None:
    """Per prediction: the first face with the largest overlap, if that overlap >= threshold.

    ``overlap[k]`` belongs to pair (``pi[k]``, ``gi[k]``), sorted by ``pi`` then ``gi``; pairs
    not listed overlap 0 (< threshold), so they can never be the matched maximum.
    """
    new_pred = np.empty(len(pi), dtype=bool)
    new_pred[0] = True
    np.not_equal(pi[1:], pi[:-1], out=new_pred[1:])
    starts = np.flatnonzero(new_pred)
    best = np.maximum.reduceat(overlap, starts)
    best_of_pair = best[np.cumsum(new_pred) - 1]
    hit = (overlap == best_of_pair) & (best_of_pair >= threshold)
    hit_pos = np.flatnonzero(hit)
    if hit_pos.size == 0:
        return
    owner = pi[hit_pos]
    first = np.empty(len(owner), dtype=bool)
    first[0] = True
    np.not_equal(owner[1:], owner[:-1], out=first[1:])
    chosen = hit_pos[first]
    out[pi[chosen]] = gi[chosen]
