"""FDDB evaluator: hand-computed cases, a literal re-implementation of the official flow,
OpenCV full-image masks, the TPR rule, official output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fddb_synthetic import synthetic_detections
from scipy.optimize import linear_sum_assignment

from facebench.evaluation.fddb import (
    FddbDetections,
    FddbResult,
    evaluate_fddb,
    tpr_at,
    write_roc_files,
)
from facebench.evaluation.fddb_matching import DBL_MAX, match_events, roc_rows
from facebench.evaluation.fddb_regions import (
    full_mask,
    pixel_overlaps,
    raster_ellipses,
    raster_rects,
)
from facebench.formats.fddb import FddbImage, read_folds
from facebench.formats.imagesize import read_sizes_csv


def _dets(kind: str, regions: dict[str, np.ndarray]) -> FddbDetections:
    return FddbDetections(kind, regions, {n: (Path("dets.txt"), 1) for n in regions}, ())  # type: ignore[arg-type]


# ------------------------------------------------------------------- rounding rules


def test_ellipse_rounding_rules_by_hand():
    e = raster_ellipses(
        np.array(
            [
                [10.9, 4.2, 0.5, 2.5, 3.5, 1],  # centre half-to-even: (2, 4); axes (10, 4)
                [3.99, 3.0, -0.5, 2.5000001, 7.49, 1],  # float32(2.5000001) == 2.5 -> 2
                [5.0, 5.0, np.pi / 2, 0.0, 0.0, 1],
            ]
        )
    )
    assert e.cx.tolist() == [2, 2, 0] and e.cy.tolist() == [4, 7, 0]
    assert e.a.tolist() == [10, 3, 5] and e.b.tolist() == [4, 3, 5]
    # 0.5 rad = 28.65 deg -> 29; -0.5 -> -29; pi/2 -> 90.
    assert e.degrees.tolist() == [29, -29, 90]


def test_rect_rounding_and_inclusive_corners():
    c = raster_rects(np.array([[1.5, 2.5, 2.0, 0.0], [0.4, 0.6, 3.2, 1.3]]))
    # x: round(1.5)=2, round(3.5)=4; y: round(2.5)=2, round(2.5)=2.
    assert c.tolist() == [[2, 2, 4, 2], [0, 1, 4, 2]]
    mask = full_mask(np.array([1.5, 2.5, 2.0, 0.0]), "rect", 10, 10)
    assert mask.sum() == 3  # (w+1)(h+1) pixels between the rounded corners
    mask = full_mask(np.array([3.0, 3.0, 4.0, 2.0]), "rect", 10, 10)
    assert mask.sum() == 5 * 3


def test_windowed_overlaps_equal_full_image_masks():
    """Drawing on windows must give exactly the official full-image mask overlaps."""
    rng = np.random.default_rng(7)
    width, height = 160, 120
    for trial in range(40):
        ann = np.c_[
            rng.uniform(1, 50, (3, 2)),
            rng.uniform(-1.6, 1.6, 3),
            rng.uniform(-20, 180, 3),
            rng.uniform(-20, 140, 3),
        ]
        kind = "rect" if trial % 2 else "ellipse"
        if kind == "rect":
            det = np.c_[rng.uniform(-30, 160, (5, 2)), rng.uniform(0, 70, (5, 2))]
        else:
            det = np.c_[
                rng.uniform(1, 50, (5, 2)),
                rng.uniform(-1.6, 1.6, 5),
                rng.uniform(-20, 180, 5),
                rng.uniform(-20, 140, 5),
            ]
        got = np.zeros((3, 5))
        pairs = pixel_overlaps(ann, det, kind, width, height)
        got[pairs.annot, pairs.det] = pairs.overlap
        np.testing.assert_array_equal(got, _full_overlaps(ann, det, kind, width, height))


def _full_overlaps(ann, det, kind, width, height) -> np.ndarray:
    out = np.zeros((len(ann), len(det)))
    det_masks = [full_mask(d, kind, width, height).astype(bool) for d in det]
    for i, a in enumerate(ann):
        ma = full_mask(a, "ellipse", width, height).astype(bool)
        for j, md in enumerate(det_masks):
            union = np.count_nonzero(ma | md)
            out[i, j] = np.count_nonzero(ma & md) / union if union else 0.0
    return out


# ------------------------------------------------------------------- hand-computed protocol


def test_hand_computed_roc():
    # Ellipses with radii < 1 draw one pixel (axes truncate to 0).
    images = [
        FddbImage("a", 1, np.array([[0.5, 0.5, 0.0, 2, 2], [0.5, 0.5, 0.0, 7, 7]])),
        FddbImage("b", 1, np.array([[0.5, 0.5, 0.0, 5, 5]])),
    ]
    sizes = {"a": (10, 10), "b": (10, 10)}
    dets = {
        "a": np.array(
            [
                [2, 2, 0, 0, 0.9],  # 1 pixel on face 1: overlap 1
                [7, 7, 1, 0, 0.8],  # 2 pixels, one on face 2: overlap 0.5 (not > 0.5)
                [0, 9, 0, 0, 0.7],  # nowhere: false positive
                [2, 2, 1, 1, 0.9],  # 4 pixels on face 1: 0.25, loses the assignment
            ],
            dtype=float,
        )
    }
    res = evaluate_fddb(images, sizes, _dets("rect", dets))
    rows = res.rows
    np.testing.assert_array_equal(rows.threshold, [0.7, 0.8, 0.9, DBL_MAX])
    np.testing.assert_array_equal(rows.fp, [3, 2, 1, 0])
    np.testing.assert_array_equal(rows.tp_discrete, [1, 1, 1, 0])
    np.testing.assert_allclose(rows.tp_continuous, [1.5, 1.5, 1.0, 0.0])
    assert rows.n_faces == 3
    assert res.images_without_block == ["b"] and res.images_without_detections == 1
    np.testing.assert_allclose(res.tpr_continuous, [0.5, 0.5, 1 / 3, 0])
    # TPR at k: largest FP <= k, first (lowest threshold) row.
    assert res.tpr_at(2) == pytest.approx(1 / 3)
    assert res.tpr_at(2, "continuous") == pytest.approx(0.5)
    assert res.tpr_at(0.5) == 0.0  # only the DBL_MAX row qualifies


def test_max_sum_assignment_not_greedy():
    # d1 overlaps A 0.6 and B 0.55; d2 overlaps only A (0.5).
    annot = np.array([0, 1, 0])
    det = np.array([0, 0, 1])
    overlap = np.array([0.6, 0.55, 0.5])
    scores = np.array([0.9, 0.8])
    rows = roc_rows(scores, match_events(annot, det, overlap, scores, 2), 2, add_dbl_max=False)
    # t=0.9: d1 alone takes A (0.6). t=0.8: d1->B, d2->A (sum 1.05 beats 0.6).
    np.testing.assert_array_equal(rows.threshold, [0.8, 0.9])
    np.testing.assert_allclose(rows.tp_continuous, [1.05, 0.6])
    np.testing.assert_array_equal(rows.tp_discrete, [1, 1])
    np.testing.assert_array_equal(rows.fp, [1, 0])


def test_tpr_rule_and_interpolation():
    # Official row order: ascending threshold; FP mostly decreasing, with a tie at 5.
    fp = np.array([9, 5, 5, 3, 0])
    tpr = np.array([0.9, 0.8, 0.7, 0.5, 0.1])
    assert tpr_at(fp, tpr, 5) == 0.8  # two rows at FP 5: the first (lowest threshold)
    assert tpr_at(fp, tpr, 4) == 0.5
    assert tpr_at(fp, tpr, 100) == 0.9
    assert tpr_at(fp[:-1], tpr[:-1], 2) == 0.0
    assert tpr_at(fp, tpr, 4, interpolate=True) == pytest.approx(0.65)  # between (3,.5),(5,.8)
    assert tpr_at(fp, tpr, 7, interpolate=True) == pytest.approx(0.85)
    assert tpr_at(fp, tpr, 50, interpolate=True) == pytest.approx(0.9)


def test_official_roc_file_format(tmp_path):
    rows = roc_rows(
        np.array([0.25, 0.5]),
        match_events(np.array([0]), np.array([1]), np.array([0.75]), np.array([0.25, 0.5]), 3),
        3,
        add_dbl_max=True,
    )
    res = FddbResult(rows=rows, n_images=2, n_detections=2)
    disc, cont = write_roc_files(tmp_path, "m", res)
    assert disc.name == "mDiscROC.txt" and cont.name == "mContROC.txt"
    assert disc.read_text() == "0.333333 1 0.25\n0.333333 0 0.5\n0 0 1.79769e+308\n"
    assert cont.read_text() == "0.25 1\n0.25 0\n0 0\n"


# ------------------------------------------------------------------- literal official flow


def _official_literal(images, sizes, dets, kind):
    """The official evaluate.cpp flow, written out naively: full-image masks, every
    threshold of every image re-matched from scratch, Results::merge of step lists."""
    cum: list[list[float]] = []  # rows [threshold, N, tp_disc, tp_cont, fp]
    for im in images:
        width, height = sizes[im.name]
        d = dets.get(im.name, np.zeros((0, 5)))
        n = len(im.ellipses)
        if len(d) == 0:
            per = [[DBL_MAX, n, 0, 0.0, 0]]
        else:
            scores = np.unique(d[:, -1])
            ov = _full_overlaps(im.ellipses, d, kind, width, height)
            per = []
            for s in scores:
                valid = d[:, -1] >= s
                sub = ov[:, valid]
                r, c = linear_sum_assignment(sub, maximize=True)
                m = sub[r, c]
                m = m[m > 0]
                tp_d = int((m > 0.5).sum())
                per.append([s, n, tp_d, float(m.sum()), int(valid.sum()) - tp_d])
        cum = _merge(cum, per)
    return np.array(cum)


def _merge(r1, r2):
    """Results::merge: union of thresholds; each side contributes its current row."""
    if not r1:
        return [list(r) for r in r2]
    out, i1, i2 = [], 0, 0
    n1, n2 = r1[0][1], r2[0][1]
    while i1 < len(r1):
        a = r1[i1]
        if i2 < len(r2):
            b = r2[i2]
            out.append([min(a[0], b[0]), a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4]])
            if a[0] < b[0]:
                i1 += 1
            elif a[0] == b[0]:
                i1 += 1
                i2 += 1
            else:
                i2 += 1
        else:
            out.extend([[r[0], r[1] + n2, r[2], r[3], r[4]] for r in r1[i1:]])
            i1 = len(r1)
    out.extend([[r[0], r[1] + n1, r[2], r[3], r[4]] for r in r2[i2:]])
    return out


@pytest.fixture(scope="module")
def fold1(shared_data):
    images = read_folds(shared_data / "fddb" / "FDDB-folds", [1])
    sizes = read_sizes_csv(shared_data / "fddb" / "image_sizes.csv")
    return images[:120], sizes


@pytest.mark.parametrize("kind", ["rect", "ellipse"])
def test_matches_literal_official_flow_on_real_fold(fold1, kind):
    images, sizes = fold1
    dets = synthetic_detections(images, sizes, per_image=3, kind=kind, seed=3, empty_fraction=0.05)
    res = evaluate_fddb(images, sizes, _dets(kind, dets))
    ref = _official_literal(images, sizes, dets, kind)
    assert len(res.rows.threshold) == len(ref)
    np.testing.assert_array_equal(res.rows.threshold, ref[:, 0])
    assert (ref[:, 1] == res.rows.n_faces).all()
    np.testing.assert_array_equal(res.rows.tp_discrete, ref[:, 2])
    np.testing.assert_allclose(res.rows.tp_continuous, ref[:, 3], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(res.rows.fp, ref[:, 4])


# ------------------------------------------------------------------- geometric overlap


def test_geometric_overlap_close_to_pixels_for_large_shapes():
    images = [FddbImage("a", 1, np.array([[80.0, 55.0, 1.2, 200.0, 150.0]]))]
    sizes = {"a": (400, 300)}
    det = {"a": np.array([[85.0, 50.0, 1.1, 205.0, 146.0, 0.9]])}
    pix = evaluate_fddb(images, sizes, _dets("ellipse", det), overlap="pixel")
    geo = evaluate_fddb(images, sizes, _dets("ellipse", det), overlap="geometric")
    assert geo.rows.tp_continuous[0] == pytest.approx(pix.rows.tp_continuous[0], abs=0.01)
    same = {"a": np.c_[images[0].ellipses, [[0.5]]]}
    geo_same = evaluate_fddb(images, sizes, _dets("ellipse", same), overlap="geometric")
    assert geo_same.rows.tp_continuous[0] == pytest.approx(1.0, abs=1e-12)


def test_geometric_ellipse_area_is_exact():
    import shapely

    from facebench.evaluation.fddb_geometric import ellipse_polygons

    poly = ellipse_polygons(np.array([[30.0, 20.0, 0.3, 0.0, 0.0]]))[0]
    assert shapely.area(poly) == pytest.approx(np.pi * 600, rel=1e-12)


def test_max_sum_assignment_equals_scipy_lsa():
    from facebench.evaluation.fddb_matching import max_sum_assignment

    rng = np.random.default_rng(11)
    for _ in range(200):
        m, n = rng.integers(1, 8, size=2)
        w = rng.random((m, n)) * (rng.random((m, n)) < 0.6)
        if rng.random() < 0.3:
            w = np.round(w, 1)  # ties
        r, c = max_sum_assignment(w)
        r2, c2 = linear_sum_assignment(w, maximize=True)
        assert len(r) == len(r2) == min(m, n)
        assert len(set(r.tolist())) == len(r) and len(set(c.tolist())) == len(c)
        assert w[r, c].sum() == pytest.approx(w[r2, c2].sum(), abs=1e-12)
