"""The WIDER evaluator against hand-computed cases and a literal loop transliteration.

``_reference`` below re-states eval_tools (read_pred sort, norm_score, evaluation.m's
image_evaluation/boxoverlap/image_pr_info, VOCap) and the Python port as plain scalar Python
loops, one statement per MATLAB statement, with MATLAB's int32 rules spelled out per scalar
operation. It shares no code with the vectorised implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from facebench.evaluation import wider_match
from facebench.evaluation.wider import (
    evaluate_wider,
    normalise_scores_official,
    thresholds,
    voc_ap,
)
from facebench.evaluation.wider_match import match_official, match_python_port, matlab_int32
from facebench.formats.wider import WiderEvalGT

# ----------------------------------------------------------- literal scalar reference

I32 = (-(2**31), 2**31 - 1)


def _sat(v: int) -> int:
    return max(I32[0], min(I32[1], v))


def _i32(x: float) -> int:
    """int32(double) in MATLAB: round half away from zero, saturate, NaN -> 0."""
    if math.isnan(x):
        return 0
    if math.isinf(x):
        return I32[1] if x > 0 else I32[0]
    a = abs(x)
    f = math.floor(a)
    r = f + (1 if a - f >= 0.5 else 0)
    return _sat(int(math.copysign(r, x)))


def _boxoverlap(gt: list[list[int]], b: list[float]) -> list[int]:
    """boxoverlap.m with a = int32 ground truth (x1 y1 x2 y2), b = double prediction."""
    out = []
    for a in gt:
        x1 = max(a[0], _i32(b[0]))  # max(int32, double) -> int32
        y1 = max(a[1], _i32(b[1]))
        x2 = min(a[2], _i32(b[2]))
        y2 = min(a[3], _i32(b[3]))
        w = _sat(_sat(x2 - x1) + 1)
        h = _sat(_sat(y2 - y1) + 1)
        inter = _sat(w * h)
        aarea = _sat(_sat(_sat(a[2] - a[0]) + 1) * _sat(_sat(a[3] - a[1]) + 1))
        barea = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
        union = _sat(_i32(aarea + barea) - inter)
        o = (
            _i32(inter / union)
            if union != 0
            else (0 if inter == 0 else _i32(math.copysign(math.inf, inter)))
        )
        if w <= 0 or h <= 0:
            o = 0
        out.append(o)
    return out


def _port_overlap(gt: list[list[float]], b: list[float]) -> list[float]:
    out = []
    for q in gt:
        box_area = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        o = 0.0
        iw = min(b[2], q[2]) - max(b[0], q[0]) + 1
        if iw > 0:
            ih = min(b[3], q[3]) - max(b[1], q[1]) + 1
            if ih > 0:
                ua = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + box_area - iw * ih
                o = iw * ih / ua
        out.append(o)
    return out


def _reference(
    boxes: list[np.ndarray], keeps: list[np.ndarray], preds: list[np.ndarray], protocol: str
) -> tuple[float, list[float], list[float]]:
    """AP, precision, recall by literal loops (official eval_tools or the Python port)."""
    official = protocol == "official"
    lists = []
    for p in preds:
        rows = [list(map(float, r)) for r in np.asarray(p).reshape(-1, 5)]
        if official:  # sort(bbx(:,5), 'descend') is stable
            rows = sorted(rows, key=lambda r: -r[4])
        lists.append(rows)
    scores = [r[4] for rows in lists for r in rows]
    if official:
        f32 = np.float32
        max_s, min_s = f32(np.finfo(f32).tiny), f32(np.finfo(f32).max)
        for s in scores:
            max_s = max(max_s, f32(s))
            min_s = min(min_s, f32(s))
        with np.errstate(all="ignore"):
            for rows in lists:
                for r in rows:
                    r[4] = float((f32(r[4]) - min_s) / (max_s - min_s))
    else:
        max_s, min_s = 0.0, 1.0
        for s in scores:
            max_s, min_s = max(s, max_s), min(s, min_s)
        diff = max_s - min_s
        for rows in lists:
            for r in rows:
                r[4] = (r[4] - min_s) / diff if diff else math.nan
    pr = np.zeros((1000, 2))
    count_face = 0
    for gt, keep, rows in zip(boxes, keeps, lists, strict=True):
        count_face += len(keep)
        if len(gt) == 0 or len(rows) == 0:
            continue
        ignore = [0] * len(gt)
        for k in keep:
            ignore[int(k) - 1] = 1
        if official:
            g = [
                [int(a[0]), int(a[1]), _sat(int(a[0]) + int(a[2])), _sat(int(a[1]) + int(a[3]))]
                for a in gt
            ]
        else:
            g = [[float(a[0]), float(a[1]), float(a[0] + a[2]), float(a[1] + a[3])] for a in gt]
        recall_list = [0] * len(gt)
        proposal = [1] * len(rows)
        pred_recall = [0] * len(rows)
        for h, r in enumerate(rows):
            b = [r[0], r[1], r[0] + r[2], r[1] + r[3]]
            ov = _boxoverlap(g, b) if official else _port_overlap(g, b)
            best = max(ov)
            idx = ov.index(best)  # first maximum
            if best >= 0.5:
                if ignore[idx] == 0:
                    recall_list[idx] = -1
                    proposal[h] = -1
                elif recall_list[idx] == 0:
                    recall_list[idx] = 1
            pred_recall[h] = sum(1 for v in recall_list if v == 1)
        for t in range(1, 1001):
            thresh = 1 - t / 1000
            r_index = None
            for k, r in enumerate(rows):
                if r[4] >= thresh:
                    r_index = k
            if r_index is not None:
                pr[t - 1, 0] += sum(1 for v in proposal[: r_index + 1] if v == 1)
                pr[t - 1, 1] += pred_recall[r_index]
    with np.errstate(all="ignore"):
        precision = [pr[i, 1] / pr[i, 0] for i in range(1000)]
        recall = [pr[i, 1] / count_face for i in range(1000)]
    mrec = [0.0, *recall, 1.0]
    mpre = [0.0, *precision, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        if official:  # MATLAB max ignores NaN
            a, b = mpre[i], mpre[i + 1]
            mpre[i] = b if math.isnan(a) else (a if math.isnan(b) else max(a, b))
        else:  # np.maximum propagates NaN
            mpre[i] = float(np.maximum(mpre[i], mpre[i + 1]))
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap, precision, recall


def _gt(boxes: list, keeps: dict[str, list] | None = None) -> WiderEvalGT:
    arrays = [np.asarray(b, dtype=np.int32).reshape(-1, 4) for b in boxes]
    if keeps is None:
        keeps = {s: [np.arange(1, len(b) + 1) for b in arrays] for s in ("easy", "medium", "hard")}
    n = len(arrays)
    return WiderEvalGT(
        ["0--E"],
        [[f"img{i}" for i in range(n)]],
        [arrays],
        {s: [[np.asarray(k, dtype=np.int64) for k in keeps[s]]] for s in keeps},
    )


def _pred(*rows) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _check_against_reference(gt: WiderEvalGT, preds: list[np.ndarray], protocol: str) -> None:
    result = evaluate_wider(gt, preds, protocol=protocol, settings=("hard",))
    curve = result.curves["hard"]
    ap, precision, recall = _reference(gt.flat_boxes(), gt.flat_keep("hard"), preds, protocol)
    assert curve.ap == pytest.approx(ap, abs=1e-12)
    np.testing.assert_allclose(curve.precision, precision, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(curve.recall, recall, rtol=0, atol=1e-12, equal_nan=True)


# ------------------------------------------------------------------- hand-computed rules


def test_first_match_versus_best_match():
    # Face A = [0,0,10,10], face B = [1,0,10,10]; the prediction is exactly B. In int32,
    # IoU(A) = 110/132 = 0.83 rounds to 1, so MATLAB's max picks A (the first 1), while the
    # port picks B (IoU 1.0 > 0.83).
    gt = [[0, 0, 10, 10], [1, 0, 10, 10]]
    pred = [[1, 0, 10, 10]]
    assert match_official(gt, pred).tolist() == [0]
    assert match_python_port(gt, pred).tolist() == [1]
    # Only B kept: officially the prediction hits the ignored A and is dropped -> AP 0;
    # the port recalls B -> precision 1 at recall 1 -> AP 1.
    g = _gt([gt], {s: [[2]] for s in ("easy", "medium", "hard")})
    preds = [_pred([1, 0, 10, 10, 0.9], [80, 80, 5, 5, 0.0])]  # far FP anchors the min
    assert evaluate_wider(g, preds).ap["hard"] == 0.0
    assert evaluate_wider(g, preds, protocol="python-port").ap["hard"] == 1.0


def test_int32_rounding_of_corners_union_and_iou():
    gt = [[0, 0, 9, 9]]  # x2 = 9, area 10 x 10 = 100
    # Prediction x2 = 3.6 rounds to 4: inter 5*10 = 50, barea 4.6*10 = 46,
    # union = round(146) - 50 = 96, 50/96 = 0.52 -> 1: a match. In float64: 46/100 < 0.5.
    assert match_official(gt, [[0, 0, 3.6, 9]]).tolist() == [0]
    assert match_python_port(gt, [[0, 0, 3.6, 9]]).tolist() == [-1]
    # x2 = 3.4 rounds to 3: inter 40, union round(144) - 40 = 104, 40/104 = 0.38 -> 0.
    assert match_official(gt, [[0, 0, 3.4, 9]]).tolist() == [-1]
    # Exactly half: inter 50 / union 100 (barea 50 + 100 - 50) rounds up to 1.
    assert match_official(gt, [[0, 0, 4, 9]]).tolist() == [0]
    # Rounding half away from zero, on negative corners too.
    assert matlab_int32(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994])).tolist() == [
        1,
        2,
        3,
        -1,
        -3,
        0,
    ]
    assert matlab_int32(np.array([3e10, -3e10, np.nan])).tolist() == [2**31 - 1, -(2**31), 0]


def test_tiny_prediction_rounded_overlap_above_one_wins():
    # A 0.2-px prediction at x=0.4 rounds to corners 0..1: inter 4 with the 2x2 face B,
    # barea 1.44 -> union round(4 + 1.44) - 4 = 1, overlap 4 (!). MATLAB's max takes the
    # largest rounded overlap, so B wins over the earlier A whose overlap rounds to 1.
    gt = [[0, 0, 3, 3], [0, 0, 1, 1]]
    pred = [[0.4, 0.4, 0.2, 0.2]]
    ov = _boxoverlap([[0, 0, 3, 3], [0, 0, 1, 1]], [0.4, 0.4, 0.6, 0.6])
    assert ov == [0, 4]
    assert match_official(gt, pred).tolist() == [1]


def test_float32_normalisation_at_an_exact_threshold():
    # Scores 0, 0.7, 1: officially 0.7 becomes 0.69999998807907104 < thr(300) = 0.7, so it
    # counts from t = 301; the port keeps 0.7 and counts it from t = 300.
    norm = normalise_scores_official(np.array([0.0, 0.7, 1.0]))
    assert norm[1] == 0.69999998807907104 and norm[1] < thresholds()[299] == 0.7
    gt = _gt([[[0, 0, 9, 9], [20, 0, 9, 9], [40, 0, 9, 9]]])
    preds = [_pred([0, 0, 9, 9, 1.0], [20, 0, 9, 9, 0.7], [40, 0, 9, 9, 0.0])]
    official = evaluate_wider(gt, preds, settings=("hard",)).curves["hard"]
    port = evaluate_wider(gt, preds, protocol="python-port", settings=("hard",)).curves["hard"]
    assert official.tp[298:301].tolist() == [1, 1, 2]  # t = 299, 300, 301
    assert port.tp[298:301].tolist() == [1, 2, 2]
    assert official.tp[-1] == 3 and official.proposals[-1] == 3


def test_all_scores_equal_give_nan_and_no_threshold_passes():
    norm = normalise_scores_official(np.array([0.5, 0.5]))
    assert np.isnan(norm).all()
    gt = _gt([[[0, 0, 9, 9]]])
    result = evaluate_wider(gt, [_pred([0, 0, 9, 9, 0.5])], settings=("hard",))
    assert result.curves["hard"].tp.sum() == 0 and result.ap["hard"] == 0.0


def test_unsorted_file_is_sorted_officially_but_not_by_the_port():
    # File order: TP (score 0.5), FP (score 1.0), FP anchor (score 0.0). One face.
    gt = _gt([[[0, 0, 9, 9]]])
    preds = [_pred([0, 0, 9, 9, 0.5], [50, 50, 9, 9, 1.0], [80, 80, 9, 9, 0.0])]
    off = evaluate_wider(gt, preds, settings=("hard",)).curves["hard"]
    # Official order: FP(1.0), TP(0.5), FP(0.0). t < 500: 1 proposal, 0 TP; from t = 500
    # (thr 0.5): 2 proposals, 1 TP; at t = 1000 (thr 0): 3 proposals.
    assert (off.tp[:499] == 0).all() and (off.proposals[:499] == 1).all()
    assert off.tp[499] == 1 and off.proposals[499] == 2 and off.proposals[-1] == 3
    # VOCap: recall 0 -> 1 at precision 1/2; envelope max(1/2, 1/3) = 1/2.
    assert off.ap == pytest.approx(0.5, abs=1e-15)
    port = evaluate_wider(gt, preds, protocol="python-port", settings=("hard",)).curves["hard"]
    # Port: r = LAST prediction >= thr. For t < 500 it is the FP at index 1, and the TP
    # before it is counted: 2 proposals, 1 TP already at thr 0.999.
    assert port.tp[0] == 1 and port.proposals[0] == 2
    assert port.ap == pytest.approx(0.5, abs=1e-15)


def test_ties_keep_file_order_and_duplicates_are_false_positives():
    gt = _gt([[[0, 0, 9, 9]]])
    preds = [_pred([0, 0, 9, 9, 0.5], [1, 0, 9, 9, 0.5], [60, 60, 5, 5, 0.0], [0, 0, 9, 9, 1.0])]
    curve = evaluate_wider(gt, preds, settings=("hard",)).curves["hard"]
    # Sorted: 1.0 (TP), 0.5, 0.5 (duplicates: FP), 0.0 (FP).
    assert curve.tp[-1] == 1 and curve.proposals[-1] == 4
    assert curve.proposals[499] == 3 and curve.tp[0] == 1


def test_missing_predictions_and_faceless_images():
    # Image 0: one face, no predictions (missing file) -> still counted in count_face.
    # Image 1: face-less, [0 0 0 0] placeholder: a prediction elsewhere is a false positive.
    # Image 2: no ground-truth rows at all: its predictions are skipped entirely.
    # Image 3: one face found.
    boxes = [[[0, 0, 9, 9]], [[0, 0, 0, 0]], np.zeros((0, 4)), [[0, 0, 9, 9]]]
    keeps = {s: [[1], [], [], [1]] for s in ("easy", "medium", "hard")}
    gt = _gt(boxes, keeps)
    preds = [
        _pred(),
        _pred([30, 30, 9, 9, 0.9]),
        _pred([0, 0, 9, 9, 1.0], [5, 5, 5, 5, 0.95]),
        _pred([0, 0, 9, 9, 0.0]),
    ]
    result = evaluate_wider(gt, preds)
    curve = result.curves["hard"]
    assert curve.faces == 2
    assert curve.proposals[-1] == 2 and curve.tp[-1] == 1  # image 2 ignored
    assert curve.recall[-1] == 0.5
    # "all" keeps every face but the placeholder: same count here.
    assert result.curves["all"].faces == 2
    # A prediction exactly on the placeholder matches it (IoU 1 in int32) and is dropped.
    preds[1] = _pred([0, 0, 0, 0, 0.9])
    curve = evaluate_wider(gt, preds, settings=("hard",)).curves["hard"]
    assert curve.proposals[-1] == 1
    for protocol in ("official", "python-port"):
        _check_against_reference(gt, preds, protocol)


def test_ignored_faces_drop_predictions_per_setting():
    boxes = [[[0, 0, 9, 9], [30, 0, 9, 9], [60, 0, 9, 9]]]
    keeps = {"easy": [[1]], "medium": [[1, 2]], "hard": [[1, 2, 3]]}
    gt = _gt(boxes, keeps)
    preds = [_pred([0, 0, 9, 9, 0.9], [30, 0, 9, 9, 0.8], [60, 0, 9, 9, 0.7], [90, 0, 9, 9, 0.1])]
    result = evaluate_wider(gt, preds)
    ends = {s: (c.tp[-1], c.proposals[-1], c.faces) for s, c in result.curves.items()}
    assert ends == {"easy": (1, 2, 1), "medium": (2, 3, 2), "hard": (3, 4, 3), "all": (3, 4, 3)}


def test_voc_ap_envelope_and_nan():
    # Precision NaN where nothing was proposed; MATLAB's max skips it.
    recall = np.array([0.0, 0.5, 0.5, 1.0])
    precision = np.array([np.nan, 1.0, 0.5, 0.25])
    # Steps: 0 -> 0.5 at envelope 1.0, 0.5 -> 1.0 at 0.25; the final 1 -> 1 adds nothing.
    assert voc_ap(recall, precision) == pytest.approx(0.5 * 1.0 + 0.5 * 0.25)
    assert voc_ap(np.zeros(3), np.full(3, np.nan)) == 0.0


def test_dense_image_with_750_faces_chunked(monkeypatch):
    rng = np.random.default_rng(7)
    xs, ys = np.meshgrid(np.arange(30) * 12, np.arange(25) * 12)
    faces = np.column_stack([xs.ravel(), ys.ravel(), np.full(750, 10), np.full(750, 10)])
    picks = rng.integers(0, 750, 300)
    jitter = faces[picks] + rng.normal(0, 2.5, (300, 4))
    jitter[:, 2:] = np.abs(jitter[:, 2:])
    preds = [np.column_stack([jitter, rng.random(300).round(2)])]
    keeps = {
        "easy": [np.arange(1, 751, 7)],
        "medium": [np.arange(1, 751, 2)],
        "hard": [np.arange(1, 751)],
    }
    gt = _gt([faces], keeps)
    full = evaluate_wider(gt, preds)
    monkeypatch.setattr(wider_match, "CHUNK_PAIRS", 5000)  # force many chunks
    chunked = evaluate_wider(gt, preds)
    assert chunked.ap == full.ap
    ref_gt = _gt([faces])
    for protocol in ("official", "python-port"):
        _check_against_reference(ref_gt, preds, protocol)


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_literal_reference(seed):
    rng = np.random.default_rng(seed)
    n_images = 6
    boxes, preds, keeps = [], [], []
    for _ in range(n_images):
        g = int(rng.integers(0, 6))
        b = np.column_stack([rng.integers(0, 60, (g, 2)), rng.integers(-1, 25, (g, 2))])
        if g == 0:
            b = np.zeros((1, 4), int)
        boxes.append(b)
        keeps.append(np.flatnonzero(rng.random(len(b)) < 0.7) + 1)
        p = int(rng.integers(0, 12))
        src = b[rng.integers(0, len(b), p)].astype(float)
        src += rng.normal(0, 3, src.shape)
        src[:, 2:] = np.abs(src[:, 2:])
        score = rng.choice([0.1, 0.25, 0.5, 0.7, 0.7, 0.9, 1.3], p) if seed % 2 else rng.random(p)
        preds.append(np.column_stack([src, score]))
    gt = _gt(boxes, {s: keeps for s in ("easy", "medium", "hard")})
    for protocol in ("official", "python-port"):
        _check_against_reference(gt, preds, protocol)


def test_real_ground_truth_perfect_and_empty_predictions(shared_data):
    from facebench.formats.wider import read_eval_gt

    gt = read_eval_gt(shared_data / "widerface_val_416" / "ground_truth")
    boxes = gt.flat_boxes()
    # Every face predicted exactly, distinct scores: every kept face is recalled (faces
    # with w or h <= 0 cannot be matched), so the last recall point = matchable/kept.
    rng = np.random.default_rng(0)
    preds = [np.column_stack([b.astype(float), rng.random(len(b))]) for b in boxes]
    result = evaluate_wider(gt, preds)
    for setting in ("easy", "medium", "hard"):
        curve = result.curves[setting]
        assert curve.faces == {"easy": 548, "medium": 1189, "hard": 3477}[setting]
        assert 0.9 < curve.recall[-1] <= 1.0
    none = evaluate_wider(gt, [np.zeros((0, 5))] * gt.n_images)
    assert none.ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0, "all": 0.0}
    assert none.predictions == 0 and none.images == 200


def test_prethresholded_note():
    gt = _gt([[[0, 0, 9, 9]]])
    result = evaluate_wider(gt, [_pred([0, 0, 9, 9, 0.6], [20, 0, 9, 9, 0.5])])
    assert any("pre-thresholded" in n for n in result.notes)
    result = evaluate_wider(gt, [_pred([0, 0, 9, 9, 0.6], [20, 0, 9, 9, 0.01])])
    assert result.notes == []


def test_unknown_protocol_rejected():
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_wider(_gt([[[0, 0, 1, 1]]]), [_pred()], protocol="matlab")
