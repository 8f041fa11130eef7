"""WIDER FACE average precision, exactly as the official MATLAB eval_tools compute it.

Specification (protocol ``official``, the default; eval_tools of 2017-03-31: ``read_pred.m``,
``norm_score.m``, ``evaluation.m``, ``boxoverlap.m``, ``VOCap.m``):

1. **Read.** Only images listed in the ground truth, in .mat order. A missing file, a count of
   0, or a file that does not parse gives that image no predictions (reported; ``strict``
   readers raise instead). Columns 1-4 are ``x y w h``, column 5 the score. Each image's
   predictions are sorted by score, descending, with a stable sort (ties keep file order).
2. **Normalise** once over all boxes read: ``max_s = max(realmin('single'), scores)``,
   ``min_s = min(realmax('single'), scores)``, both float32; every score becomes
   ``(single(s) - min_s) / (max_s - min_s)`` computed in float32 (0.700 becomes
   0.69999998807907104). All scores equal: NaN, and such boxes never pass a threshold.
3. **Match** per setting (easy/medium/hard from ``gt_list``; ``all`` keeps every face except
   the ``[0 0 0 0]`` placeholder row of face-less images), per image: ``count_face +=`` the
   number of kept faces (always, also for images without predictions); images with no
   ground-truth rows or no predictions are skipped. Boxes: ``x2 = x + w``, ``y2 = y + h``; IoU
   with the +1 convention in MATLAB int32 arithmetic (see :mod:`.wider_match`): a prediction
   is matched to the FIRST face (annotation order) with the largest rounded overlap, when
   that reaches 0.5.
4. **Greedy** per image in sorted order: matched to a face that is not kept: dropped (neither
   TP nor FP); matched to a kept face not yet recalled: recalls it (TP); otherwise it stays a
   proposal (duplicates are false positives).
5. **Curve and AP.** Thresholds ``thr = 1 - t/1000``, ``t = 1..1000``; per image, ``r`` = the
   last prediction with normalised score ``>= thr``; the proposals and recalled faces among
   the first ``r`` predictions are summed over images. ``precision = TP / proposals`` (NaN at
   0/0), ``recall = TP / count_face``. AP = VOCap: ``mrec = [0; recall; 1]``,
   ``mpre = [0; precision; 0]``, precision envelope from the right ignoring NaN (MATLAB
   ``max``), sum of recall steps times precision.

Protocol ``python-port`` reproduces the widely used Python port (``widerface_evaluate``):
match to the best float64 IoU, scores normalised in float64 starting from max 0 / min 1,
predictions kept in file order (``r`` is then the LAST prediction passing the threshold, with
everything before it counted), and a precision envelope in which NaN propagates. Unlike the
port it does not crash on missing files (they give no predictions).

Implementation: no Python loop over predictions or thresholds. Matching (setting-independent)
runs once per image on a chunked (P, G) block; the greedy step reduces to "first prediction
matched to each face" (a stable unique); the threshold sweep is one prefix-end table per image
(``np.maximum.at`` + ``np.maximum.accumulate``) and gathers from cumulative sums.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from facebench.evaluation.wider_match import match_official, match_python_port
from facebench.formats.wider import WiderEvalGT, WiderPredictions

PROTOCOLS: tuple[str, ...] = ("official", "python-port")
SETTINGS: tuple[str, ...] = ("easy", "medium", "hard", "all")
THRESHOLD_COUNT = 1000
IOU_THRESHOLD = 0.5
PROTOCOL_VERSION = {
    "official": "eval_tools 2017-03-31 (MATLAB int32 IoU, first match, float32 scores)",
    "python-port": "widerface_evaluate Python port (float64 best IoU, file order)",
}
PRETHRESHOLD_SCORE = 0.1


def thresholds() -> np.ndarray:
    """(1000,) the official thresholds ``1 - t/1000`` for t = 1..1000 (descending)."""
    return 1 - np.arange(1, THRESHOLD_COUNT + 1, dtype=np.float64) / THRESHOLD_COUNT


@dataclass
class WiderCurve:
    """The precision-recall curve of one setting, one point per threshold.

    ``tp``, ``proposals``: (1000,) summed over images; ``precision``, ``recall``: (1000,)
    float64 (precision NaN where there are no proposals); ``faces``: count_face.
    """

    setting: str
    thresholds: np.ndarray
    tp: np.ndarray
    proposals: np.ndarray
    faces: int
    precision: np.ndarray
    recall: np.ndarray
    ap: float


@dataclass
class WiderEvaluation:
    """AP and curves of one prediction set under one protocol."""

    protocol: str
    curves: dict[str, WiderCurve]
    images: int
    images_with_predictions: int
    predictions: int
    notes: list[str] = field(default_factory=list)
    # Matching state kept for derived curves (:func:`subset_curve`); not part of the result.
    matched: _Matched | None = field(default=None, repr=False, compare=False)

    @property
    def ap(self) -> dict[str, float]:
        return {name: curve.ap for name, curve in self.curves.items()}


# ------------------------------------------------------------------------- normalisation


def normalise_scores_official(scores: np.ndarray) -> np.ndarray:
    """``norm_score.m``: float32 min-max normalisation seeded with realmin/realmax('single')."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.copy()
    f32 = np.float32
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        single = scores.astype(f32)
        max_s = max(np.finfo(f32).tiny, single.max())
        min_s = min(np.finfo(f32).max, single.min())
        out = (single - f32(min_s)) / (f32(max_s) - f32(min_s))
    return out.astype(np.float64)


def normalise_scores_python_port(scores: np.ndarray) -> np.ndarray:
    """The port's ``norm_score``: float64, ``max_score`` seeded with 0 and ``min_score`` with 1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.copy()
    max_s = max(0.0, float(scores.max()))
    min_s = min(1.0, float(scores.min()))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (scores - min_s) / np.float64(max_s - min_s)


def _score_notes(scores: np.ndarray, protocol: str) -> list[str]:
    """Warnings about the score column that explain a surprising AP."""
    notes: list[str] = []
    if not scores.size:
        return notes
    normalise = (
        normalise_scores_official if protocol == "official" else normalise_scores_python_port
    )
    low, high = float(scores.min()), float(scores.max())
    if not np.isfinite(normalise(np.array([low, high]))).all():
        notes.append(
            f"all {scores.size} scores are equal ({low:.6g}): the {protocol} score "
            "normalisation divides by zero (max - min = 0), so every threshold counts no "
            "prediction and AP is 0; write each detection's own confidence"
        )
    elif low > PRETHRESHOLD_SCORE:
        notes.append(
            f"the smallest score is {low:.3g} (> {PRETHRESHOLD_SCORE}): the "
            "predictions look pre-thresholded, which lowers AP; keep low-confidence detections"
        )
    return notes


# ------------------------------------------------------------------------------------ AP


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, nan_propagates: bool = False) -> float:
    """VOCap: area under the right-envelope of precision over recall.

    MATLAB's ``max`` ignores NaN (official); the Python port's ``np.maximum`` propagates it
    (``nan_propagates=True``).
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    envelope = np.maximum if nan_propagates else np.fmax
    mpre = envelope.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


# ----------------------------------------------------------------------------- evaluation


@dataclass
class _Matched:
    """Setting-independent state: predictions in processing order, matched faces, r-table."""

    offsets: np.ndarray  # (n_images + 1,) into the processing-order arrays
    match: np.ndarray  # (M,) global face index or -1
    first: np.ndarray  # (M,) bool: first prediction matched to its face
    active: np.ndarray  # (M,) bool: the image has ground-truth rows (else skipped)
    prefix_end: np.ndarray  # (n_images, 1000) last counted prediction per threshold, -1 none
    face_offsets: np.ndarray  # (n_images + 1,) into the flat face index
    raw_scores: np.ndarray  # (M,) scores as read, processing order


def evaluate_wider(
    gt: WiderEvalGT,
    predictions: WiderPredictions | Sequence[np.ndarray],
    *,
    protocol: str = "official",
    settings: Sequence[str] = SETTINGS,
    progress: Callable[[int, int], None] | None = None,
) -> WiderEvaluation:
    """AP and PR curves of ``predictions`` for each of ``settings``.

    ``predictions``: a :class:`WiderPredictions` read against ``gt``, or one (P, 5) array
    ``x y w h score`` per ground-truth image in .mat order (file order).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    rows, offsets = _as_rows(gt, predictions)
    boxes = gt.flat_boxes()
    matched = _match_all(boxes, rows, offsets, protocol, progress)
    face_counts = np.array([len(b) for b in boxes], dtype=np.int64)
    curves = {}
    for setting in settings:
        keep_lists = gt.flat_keep(setting)
        keep = _keep_mask(keep_lists, face_counts)
        faces = sum(len(k) for k in keep_lists)  # count_face += length(keep_index)
        curves[setting] = _curve(setting, matched, keep, faces, protocol)
    counts = np.diff(offsets)
    notes = _score_notes(rows[:, 4], protocol)
    return WiderEvaluation(
        protocol=protocol,
        curves=curves,
        images=len(boxes),
        images_with_predictions=int((counts > 0).sum()),
        predictions=int(counts.sum()),
        notes=notes,
        matched=matched,
    )


def _as_rows(
    gt: WiderEvalGT, predictions: WiderPredictions | Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    n = gt.n_images
    if isinstance(predictions, WiderPredictions):
        if predictions.n_images != n:
            raise ValueError(f"predictions cover {predictions.n_images} images, GT has {n}")
        return predictions.rows, predictions.offsets
    if len(predictions) != n:
        raise ValueError(f"{len(predictions)} prediction arrays for {n} ground-truth images")
    arrays = [np.asarray(p, dtype=np.float64).reshape(-1, 5) for p in predictions]
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    rows = np.concatenate(arrays) if arrays else np.zeros((0, 5))
    return rows, offsets


def _match_all(
    boxes: list[np.ndarray],
    rows: np.ndarray,
    offsets: np.ndarray,
    protocol: str,
    progress: Callable[[int, int], None] | None,
) -> _Matched:
    n_images = len(boxes)
    counts = np.diff(offsets)
    image_of = np.repeat(np.arange(n_images), counts)
    official = protocol == "official"
    match_image = match_official if official else match_python_port
    order = np.arange(len(rows))
    face_offsets = np.zeros(n_images + 1, dtype=np.int64)
    face_offsets[1:] = np.cumsum([len(b) for b in boxes])
    match = np.full(len(rows), -1, dtype=np.int64)
    step = max(1, n_images // 100)
    for i in range(n_images):
        lo, hi = offsets[i], offsets[i + 1]
        if hi > lo:
            block = rows[lo:hi]
            if official:
                # Stable: ties keep file order, like MATLAB's sort(..., 'descend').
                local_order = np.argsort(-block[:, 4], kind="stable")
                order[lo:hi] = lo + local_order
                block = block[local_order]
            if len(boxes[i]):
                local = match_image(boxes[i], block[:, :4])
                match[lo:hi] = np.where(local >= 0, local + face_offsets[i], -1)
        if progress is not None and (i % step == 0 or i == n_images - 1):
            progress(i + 1, n_images)
    if official:
        scores = normalise_scores_official(rows[order, 4])
    else:
        scores = normalise_scores_python_port(rows[:, 4])
    first = np.zeros(len(rows), dtype=bool)
    hit = np.flatnonzero(match >= 0)
    _, first_index = np.unique(match[hit], return_index=True)  # first in processing order
    first[hit[first_index]] = True
    active = np.repeat(np.array([len(b) > 0 for b in boxes], dtype=bool), counts)
    return _Matched(
        offsets=offsets,
        match=match,
        first=first,
        active=active,
        prefix_end=_prefix_end(scores, image_of, offsets, n_images, sorted_=official),
        face_offsets=face_offsets,
        raw_scores=rows[order, 4],
    )


def _prefix_end(
    scores: np.ndarray,
    image_of: np.ndarray,
    offsets: np.ndarray,
    n_images: int,
    *,
    sorted_: bool,
) -> np.ndarray:
    """(n_images, 1000) local index of the LAST prediction with score >= thr_t, or -1.

    ``find(pred_info(:,5) >= thresh, 1, 'last')`` for every image and threshold at once.
    With ``sorted_`` (scores non-increasing within each image, as after the official sort
    and its monotone normalisation) the passing predictions form a prefix, so the last one
    is the count of passing predictions minus one (a histogram); otherwise a running max.
    """
    thr_ascending = thresholds()[::-1]
    passes = np.searchsorted(thr_ascending, scores, side="right")  # thresholds <= score
    passes[np.isnan(scores)] = 0
    first_t = THRESHOLD_COUNT - passes  # 0-based first threshold passed; 1000 = none
    width = THRESHOLD_COUNT + 1
    if sorted_:
        hist = np.bincount(image_of * width + first_t, minlength=n_images * width)
        return np.cumsum(hist.reshape(n_images, width)[:, :THRESHOLD_COUNT], axis=1) - 1
    local = np.arange(len(scores)) - offsets[image_of]
    table = np.full((n_images, width), -1, dtype=np.int64)
    np.maximum.at(table, (image_of, first_t), local)
    return np.maximum.accumulate(table[:, :THRESHOLD_COUNT], axis=1)


def _keep_mask(keep_lists: list[np.ndarray], face_counts: np.ndarray) -> np.ndarray:
    """(total faces,) bool: face kept in the setting (from 1-based per-image indices)."""
    face_offsets = np.concatenate([[0], np.cumsum(face_counts)])
    mask = np.zeros(int(face_offsets[-1]), dtype=bool)
    sizes = np.array([len(k) for k in keep_lists], dtype=np.int64)
    if sizes.sum():
        flat = np.concatenate([np.asarray(k, dtype=np.int64).reshape(-1) for k in keep_lists])
        mask[flat - 1 + np.repeat(face_offsets[:-1], sizes)] = True
    return mask


def subset_curve(evaluation: WiderEvaluation, keep: np.ndarray, name: str) -> WiderCurve:
    """The PR curve of a subset of faces, with the matching of ``evaluation``.

    ``keep``: (total face rows,) bool over the flat face index (:meth:`WiderEvalGT.flat_boxes`
    concatenated): the faces that count, exactly as a setting's ``gt_list`` (predictions
    matched to other faces are neither TP nor FP).
    """
    m = _matched_of(evaluation)
    keep = np.asarray(keep, dtype=bool)
    return _curve(name, m, keep, int(keep.sum()), evaluation.protocol)


def group_curves(
    evaluation: WiderEvaluation, keep: np.ndarray, groups: np.ndarray, names: Sequence[str]
) -> list[WiderCurve]:
    """One PR curve per image group (e.g. per event): only the group's images count, their
    predictions and their faces in ``keep``. ``groups``: (n_images,) int in
    ``0..len(names)-1``. The per-image counts are computed once for all groups."""
    m = _matched_of(evaluation)
    keep = np.asarray(keep, dtype=bool)
    groups = np.asarray(groups, dtype=np.int64)
    tp_flags, proposal_flags = _flags(m, keep)
    one_hot = np.zeros((len(names), len(groups)))
    one_hot[groups, np.arange(len(groups))] = 1.0
    tp = one_hot @ _per_image_counts(tp_flags, m)
    proposals = one_hot @ _per_image_counts(proposal_flags, m)
    face_image = np.repeat(np.arange(len(groups)), np.diff(m.face_offsets))
    faces = np.bincount(groups[face_image], weights=keep, minlength=len(names))
    return [
        _curve_from_sums(name, tp[g], proposals[g], int(faces[g]), evaluation.protocol)
        for g, name in enumerate(names)
    ]


def _matched_of(evaluation: WiderEvaluation) -> _Matched:
    if evaluation.matched is None:
        raise ValueError("this evaluation holds no matching state (built by evaluate_wider)")
    return evaluation.matched


def _flags(m: _Matched, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M,) bool per prediction: true positive, counted proposal (not matched to an ignored
    face), for the faces in ``keep``."""
    hit = m.match >= 0
    kept_hit = np.zeros_like(hit)
    kept_hit[hit] = keep[m.match[hit]]
    tp = m.first & kept_hit & m.active
    proposal = ~(hit & ~kept_hit) & m.active
    return tp, proposal


def _curve(setting: str, m: _Matched, keep: np.ndarray, faces: int, protocol: str) -> WiderCurve:
    tp, proposal = _flags(m, keep)
    tp_sum = _per_image_counts(tp, m).sum(axis=0).astype(np.float64)
    proposal_sum = _per_image_counts(proposal, m).sum(axis=0).astype(np.float64)
    return _curve_from_sums(setting, tp_sum, proposal_sum, faces, protocol)


def _curve_from_sums(
    setting: str, tp_sum: np.ndarray, proposal_sum: np.ndarray, faces: int, protocol: str
) -> WiderCurve:
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp_sum / proposal_sum
        recall = tp_sum / np.float64(faces)
    ap = voc_ap(recall, precision, nan_propagates=protocol == "python-port")
    return WiderCurve(
        setting=setting,
        thresholds=thresholds(),
        tp=tp_sum.astype(np.int64),
        proposals=proposal_sum.astype(np.int64),
        faces=faces,
        precision=precision,
        recall=recall,
        ap=ap,
    )


def _per_image_counts(flags: np.ndarray, m: _Matched) -> np.ndarray:
    """(n_images, 1000) int64: per image, ``flags`` summed within its counted prefix."""
    cumulative = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    starts = m.offsets[:-1, None]
    return cumulative[starts + m.prefix_end + 1] - cumulative[starts]
