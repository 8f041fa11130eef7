"""Two-pass anchor matching (paper section 4.1).

Contract of :func:`match_anchors` (IoU of continuous x1,y1,x2,y2 boxes, no ``+1``):

Let ``C(i)`` be anchor i's highest IoU over all faces and ``b(i)`` the face attaining it
(ties between faces: the lowest face index wins).

* Pass 1: ``C(i) >= pos_iou`` -> label 1, matched to ``b(i)``; ``C(i) < neg_iou`` -> label
  0 (negative); otherwise label -1 (ignored during training).
* Pass 2: every face j with no positive anchor after pass 1 takes, among the anchors that
  satisfy the paper's three conditions (1. not matched to another face; 2. IoU with j >=
  ``neg_iou``; 3. j is the anchor's own best face, ``b(i) = j``), the one with the highest
  IoU (ties: the lowest anchor index wins); it becomes positive, matched to j. Because an
  anchor is a candidate only for its own best face, faces never compete for an anchor, so
  pass 2 is one vectorised scatter over faces.
* Ignored faces (``gt_ignore``, e.g. WIDER "invalid" faces): an anchor whose best face is an
  ignored face and ``C(i) >= neg_iou`` gets label -1 (neither trained as a face nor as
  background); with ``C(i) < neg_iou`` it stays negative. Ignored faces take part in the
  arg-max (so they shadow anchors) but never receive anchors in pass 2.
* No faces: every anchor is negative (not an error).

Memory stays bounded on dense images: anchors are processed in spatially compact chunks
(same size, same 128 px tile), and for each chunk only the faces that can reach IoU >=
``neg_iou`` with some anchor of the chunk are compared (a face must overlap the chunk's extent,
and IoU <= min(area)/max(area)); both filters are exact, so results equal the dense
computation, while a chunk never holds more than ~2M anchor-face pairs.
"""

from __future__ import annotations

import torch

from detector.boxes import box_area

# Anchor-face pairs per chunk: the (chunk, faces) IoU temporaries take ~40 bytes a pair,
# so at most ~85 MB.
_PAIRS_PER_CHUNK = 1 << 21
_MIN_CHUNK = 256
_TILE = 128.0
# Slack so float rounding in the exact pre-filters can only keep a face, never drop one.
_SLACK = 1e-5


def best_face(
    anchors: torch.Tensor, gt_boxes: torch.Tensor, min_iou: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor, the highest IoU over faces and that face (lowest index on ties).

    anchors (A, 4), gt_boxes (G >= 1, 4) -> (best_iou (A,) float32, best_gt (A,) int64).
    Exact where ``best_iou >= min_iou``; below it the value may be reported as 0 (and the
    face as 0) because faces that cannot reach ``min_iou`` are skipped.
    """
    anchors = anchors.float()
    gt_boxes = gt_boxes.float()
    num_anchors, num_gt = anchors.shape[0], gt_boxes.shape[0]
    best_iou = torch.zeros(num_anchors, dtype=torch.float32, device=anchors.device)
    best_gt = torch.zeros(num_anchors, dtype=torch.int64, device=anchors.device)
    gt_area = box_area(gt_boxes)
    # Visit anchors in spatially compact groups (same size, then 128 px tiles) so each
    # chunk meets few faces; results are scattered back, so the order does not matter.
    order = _compact_order(anchors)
    ordered = anchors[order]
    ordered_area = box_area(ordered)
    ratio = max(min_iou - _SLACK, 0.0)
    chunk = max(_MIN_CHUNK, _PAIRS_PER_CHUNK // num_gt)
    start = 0
    while start < num_anchors:
        stop = min(start + chunk, num_anchors)
        keep = _candidate_faces(
            ordered[start:stop], ordered_area[start:stop], gt_boxes, gt_area, ratio
        )
        # Candidates of a range are a superset of those of any sub-range, so shrinking the
        # chunk to the pair budget keeps the result exact.
        stop = min(stop, start + max(_MIN_CHUNK, _PAIRS_PER_CHUNK // max(keep.numel(), 1)))
        if keep.numel():
            # torch.max returns the first maximal index, and `keep` is ascending, so the
            # lowest face index wins ties.
            value, index = _pair_iou(ordered[start:stop], gt_boxes[keep]).max(dim=1)
            best_iou[order[start:stop]] = value
            best_gt[order[start:stop]] = keep[index]
        start = stop
    return best_iou, best_gt


def _pair_iou(anchors: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(N, 4), (M, 4) boxes of positive area -> (N, M) IoU; box_iou with fewer passes."""
    a = anchors.unbind(1)
    f = faces.unbind(1)
    iw = torch.minimum(a[2][:, None], f[2][None, :])
    iw.sub_(torch.maximum(a[0][:, None], f[0][None, :])).clamp_(min=0)
    ih = torch.minimum(a[3][:, None], f[3][None, :])
    ih.sub_(torch.maximum(a[1][:, None], f[1][None, :])).clamp_(min=0)
    inter = iw.mul_(ih)
    union = ((a[2] - a[0]) * (a[3] - a[1]))[:, None] + ((f[2] - f[0]) * (f[3] - f[1]))[None, :]
    return inter.div_(union.sub_(inter))


def _compact_order(anchors: torch.Tensor) -> torch.Tensor:
    """Permutation grouping anchors by area, then by 128 px tile of their centre."""
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2
    tile = ((centre - centre.amin(dim=0)) / _TILE).long()
    cols = int(tile[:, 0].max()) + 1
    rows = int(tile[:, 1].max()) + 1
    _, size_rank = torch.unique(box_area(anchors), return_inverse=True)
    key = (size_rank * rows + tile[:, 1]) * cols + tile[:, 0]
    return torch.argsort(key, stable=True)


def _candidate_faces(
    anchors: torch.Tensor,
    anchor_area: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_area: torch.Tensor,
    ratio: float,
) -> torch.Tensor:
    """Ascending indices of the faces that may reach IoU >= ratio with one of ``anchors``."""
    lo = anchors[:, :2].amin(dim=0)
    hi = anchors[:, 2:].amax(dim=0)
    candidate = (
        (gt_boxes[:, 0] <= hi[0]) & (gt_boxes[:, 2] >= lo[0])
        & (gt_boxes[:, 1] <= hi[1]) & (gt_boxes[:, 3] >= lo[1])
        & (gt_area >= ratio * anchor_area.min()) & (ratio * gt_area <= anchor_area.max())
        & (gt_area > 0)
    )
    return candidate.nonzero().squeeze(1)


def match_anchors(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    pos_iou: float = 0.6,
    neg_iou: float = 0.4,
    gt_ignore: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label anchors by two-pass matching; see the module docstring for the full contract.

    anchors (A, 4) and gt_boxes (G, 4) float x1,y1,x2,y2; gt_ignore (G,) bool or None.
    Returns ``(labels, matched_gt)``: labels (A,) int64 in {1, 0, -1}; matched_gt (A,) int64,
    the face index for positives and -1 elsewhere.
    """
    if not 0.0 < neg_iou <= pos_iou <= 1.0:
        raise ValueError(f"need 0 < neg_iou <= pos_iou <= 1, got {neg_iou}, {pos_iou}")
    device = anchors.device
    num_anchors, num_gt = anchors.shape[0], gt_boxes.shape[0]
    labels = torch.zeros(num_anchors, dtype=torch.int64, device=device)
    matched = torch.full((num_anchors,), -1, dtype=torch.int64, device=device)
    if num_gt == 0 or num_anchors == 0:
        return labels, matched
    if gt_ignore is None:
        gt_ignore = torch.zeros(num_gt, dtype=torch.bool, device=device)
    gt_ignore = gt_ignore.to(device=device, dtype=torch.bool)

    best_iou, best_gt = best_face(anchors, gt_boxes, neg_iou)
    near = best_iou >= neg_iou
    shadowed = near & gt_ignore[best_gt]

    # Pass 1.
    positive = (best_iou >= pos_iou) & ~shadowed
    labels[near] = -1
    labels[positive] = 1
    matched[positive] = best_gt[positive]

    # Pass 2: faces without a positive take their best eligible anchor.
    has_positive = torch.zeros(num_gt, dtype=torch.bool, device=device)
    has_positive[best_gt[positive]] = True
    eligible = near & ~positive & ~shadowed & ~has_positive[best_gt]
    cand = eligible.nonzero().squeeze(1)
    if cand.numel():
        face = best_gt[cand]
        iou = best_iou[cand]
        face_best = torch.full((num_gt,), -1.0, device=device).scatter_reduce(
            0, face, iou, reduce="amax"
        )
        top = cand[iou == face_best[face]]
        first = torch.full((num_gt,), num_anchors, dtype=torch.int64, device=device)
        first = first.scatter_reduce(0, best_gt[top], top, reduce="amin")
        winners = first[first < num_anchors]
        labels[winners] = 1
        matched[winners] = best_gt[winners]
    return labels, matched
