"""Protocol checks, operating points and breakdowns of ``facebench eval wider``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.app import main
from facebench.evaluation.breakdown import size_labels, wider_breakdown
from facebench.evaluation.checks import ProtocolHints, protocol_checks
from facebench.evaluation.operating_points import operating_points
from facebench.evaluation.wider import evaluate_wider, subset_curve
from facebench.formats.wider import WiderEvalGT, read_eval_gt, write_prediction_file

# ------------------------------------------------------------------- operating points


def test_operating_points_hand_computed():
    # 4 points, thresholds descending; 10 faces, 5 images.
    thr = np.array([0.9, 0.7, 0.5, 0.3])
    tp = np.array([2, 5, 7, 8])
    proposals = np.array([2, 6, 10, 20])
    p = operating_points(thr, tp, proposals, 10, 5, at_precision=0.8, at_fppi=0.5,
                         to_score=lambda t: 10 * t)  # fmt: skip
    # F1: 2*1*.2/1.2=.333, 2*(5/6)*.5/(5/6+.5)=.625, 2*.7*.7/1.4=.7, 2*.4*.8/1.2=.533
    assert p["best_f1"]["threshold"] == 0.5 and p["best_f1"]["f1"] == pytest.approx(0.7)
    assert p["best_f1"]["score"] == pytest.approx(5.0) and p["best_f1"]["fp"] == 3
    # precision >= 0.8 at points 0 (1.0) and 1 (0.833): most recall at point 1.
    assert p["at_precision"]["threshold"] == 0.7 and p["at_precision"]["recall"] == 0.5
    # fppi = (proposals - tp) / 5 = 0, .2, .6, 2.4: <= 0.5 at points 0, 1.
    assert p["at_fppi"]["recall"] == 0.5 and p["at_fppi"]["fppi"] == pytest.approx(0.2)
    unreachable = operating_points(thr, tp, proposals, 10, 5, at_precision=1.01)
    assert unreachable["at_precision"] == {"target": 1.01, "threshold": None}


# ------------------------------------------------------------------------------ checks


def _rows(*boxes):
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 5)


def _status(checks):
    return {c.name: c.status for c in checks}


def test_checks_flag_each_problem_and_pass_clean_predictions():
    rng = np.random.default_rng(1)
    n = 40
    clean = np.column_stack([rng.uniform(0, 80, (n, 2)), rng.uniform(4, 20, (n, 2)),
                             rng.uniform(0.01, 1, n)])  # fmt: skip
    offsets = np.array([0, 20, 40])
    sizes = np.array([[100, 100], [100, 100]])
    gt_heights = np.array([5.0, 12, 30])
    ok = protocol_checks(clean, offsets, image_sizes=sizes, gt_heights=gt_heights)
    assert set(_status(ok).values()) == {"ok"}

    high = clean.copy()
    high[:, 4] = 0.3 + 0.5 * high[:, 4]
    c = protocol_checks(high, offsets, gt_heights=gt_heights)
    assert _status(c)["thresholded"] == "warn" and "0.3" in c[0].message
    assert _status(c)["outside_image"] == "skipped"
    # Few boxes per face, although scores are low: 40 boxes for 30 faces.
    c = protocol_checks(clean, offsets, gt_heights=np.full(30, 20.0))
    assert _status(c)["thresholded"] == "warn" and "per face" in c[0].message
    # The detector's recorded threshold.
    c = protocol_checks(clean, offsets, hints=ProtocolHints(score_thresh=0.5))
    assert _status(c)["thresholded"] == "warn"
    # Thresholds as `facebench detect` records them: checkpoints and peer adapters.
    peer = ProtocolHints.from_record({"detector_protocol": {"score_threshold": 0.2}})
    assert peer.score_thresh == 0.2
    own = ProtocolHints.from_record({"detector_protocol": {"score_thresh": 0.01, "scales": [1, 2]}})
    assert own.score_thresh == 0.01 and own.test_scales == (1.0, 2.0)

    same = clean.copy()
    same[:, 4] = 0.7
    assert _status(protocol_checks(same, offsets))["equal_scores"] == "warn"

    big = clean.copy()
    big[:, 3] = 12
    c = protocol_checks(big, offsets, gt_heights=gt_heights)
    assert _status(c)["low_resolution"] == "warn"
    # ... but not when the ground truth has no face under 10 px either.
    assert (
        _status(protocol_checks(big, offsets, gt_heights=np.array([12.0, 40])))["low_resolution"]
        == "ok"
    )
    c = protocol_checks(clean, offsets, hints=ProtocolHints(test_scales=(0.5, 0.75)))
    assert _status(c)["low_resolution"] == "warn" and "below 1" in c[2].message

    out = clean.copy()
    out[25, :2] = [150, 20]  # image 1 is 100 x 100: centre at x >= 154
    c = protocol_checks(out, offsets, image_sizes=sizes, image_names=["a/x", "a/y"])
    assert _status(c)["outside_image"] == "warn" and "a/y" in c[3].message
    assert c[3].values["centre_outside"] == 1


# -------------------------------------------------------------------------- breakdown


def _gt(boxes, attributes=None, events=None):
    arrays = [np.asarray(b, dtype=np.int32).reshape(-1, 4) for b in boxes]
    events = events or ["0--E"] * len(arrays)
    names = list(dict.fromkeys(events))
    idx = [[i for i, e in enumerate(events) if e == n] for n in names]
    keep = [np.arange(1, len(b) + 1) for b in arrays]
    attrs = None
    if attributes is not None:
        attrs = [[np.asarray(attributes[i], np.int32).reshape(-1, 6) for i in ix] for ix in idx]
    return WiderEvalGT(
        names,
        [[f"img{i}" for i in ix] for ix in idx],
        [[arrays[i] for i in ix] for ix in idx],
        {s: [[keep[i] for i in ix] for ix in idx] for s in ("easy", "medium", "hard")},
        attrs,
    )


def test_breakdown_by_size_hand_computed():
    # One image, faces of height 8 (bucket <10), 15 (10-20) and 100 (80-160).
    gt = _gt([[[0, 0, 8, 8], [50, 50, 15, 15], [200, 200, 100, 100]]])
    preds = [np.array([
        [200, 200, 100, 100, 0.9],  # finds the big face
        [500, 500, 10, 10, 0.8],  # false positive
        [0, 0, 8, 8, 0.7],  # finds the tiny face
    ], dtype=np.float64)]  # fmt: skip
    ev = evaluate_wider(gt, preds)
    bd = wider_breakdown(gt, ev)
    size = {b.name: b for b in bd.groups["size"]}
    assert list(size) == size_labels() == ["<10", "10-20", "20-40", "40-80", "80-160", ">160"]
    assert [size[k].faces for k in size] == [1, 1, 0, 0, 1, 0]
    # Bucket 80-160: the big face is the first prediction -> precision 1 at recall 1: AP 1.
    assert size["80-160"].ap == pytest.approx(1.0)
    # Bucket <10: the big face's match is ignored, then 1 FP, then TP: precision 1/2 at
    # recall 1 -> AP 0.5. Bucket 10-20: never found -> AP 0.
    assert size["<10"].ap == pytest.approx(0.5)
    assert size["10-20"].ap == 0.0
    # best F1 of all: after 3 predictions P=2/3, R=2/3 (F1 .667) vs after 1: P=1, R=1/3 (.5).
    assert size["<10"].recall == 1.0 and size["10-20"].recall == 0.0
    assert size["20-40"].faces == 0 and np.isnan(size["20-40"].ap)


def test_subset_curve_reproduces_settings_and_per_event_evaluation(shared_data):
    gt = read_eval_gt(shared_data / "widerface_val_416" / "ground_truth")
    rng = np.random.default_rng(3)
    preds = []
    first_of_event = {files[0] for files in gt.files}
    for (_, stem), b in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        p = b.astype(float) + rng.normal(0, 2, (len(b), 4))
        noise = np.column_stack([rng.uniform(0, 300, (5, 2)), rng.uniform(5, 40, (5, 2))])
        scores = rng.uniform(0.01, 0.99, len(p) + 5)
        if stem in first_of_event:  # every event spans scores 0..1: same normalisation
            scores[:2] = [0.0, 1.0]
        preds.append(np.column_stack([np.vstack([p, noise]), scores]))
    ev = evaluate_wider(gt, preds)
    face_counts = [len(b) for b in gt.flat_boxes()]
    for setting in ("easy", "hard"):
        keep = np.zeros(sum(face_counts), dtype=bool)
        starts = np.cumsum([0, *face_counts[:-1]])
        for s, k in zip(starts, gt.flat_keep(setting), strict=True):
            keep[s + k - 1] = True
        curve = subset_curve(ev, keep, setting)
        assert curve.ap == ev.curves[setting].ap and curve.faces == ev.curves[setting].faces
        np.testing.assert_array_equal(curve.tp, ev.curves[setting].tp)
    bd = wider_breakdown(gt, ev)
    offsets = np.cumsum([0, *(len(f) for f in gt.files)])
    for e in (0, 4):
        sub = WiderEvalGT(
            [gt.events[e]], [gt.files[e]], [gt.boxes[e]],
            {s: [gt.keep[s][e]] for s in gt.keep},
        )  # fmt: skip
        alone = evaluate_wider(sub, preds[offsets[e] : offsets[e + 1]], settings=("all",))
        bucket = bd.groups["event"][e]
        assert bucket.name == gt.events[e] and bucket.faces == alone.curves["all"].faces
        assert bucket.ap == pytest.approx(alone.curves["all"].ap, abs=1e-12)
    # Attribute levels partition the faces of the all setting.
    for attr in ("blur", "occlusion", "pose"):
        assert sum(b.faces for b in bd.groups[attr]) == ev.curves["all"].faces
    assert sum(b.faces for b in bd.groups["size"]) == ev.curves["all"].faces


# ------------------------------------------------------------------------------- CLI


def test_cli_checks_operating_points_breakdown(shared_data, tmp_path):
    root = shared_data / "widerface_val_416"
    gt = read_eval_gt(root / "ground_truth")
    rng = np.random.default_rng(0)
    for (event, stem), b in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        boxes = b.astype(float) + rng.normal(0, 0.5, (len(b), 4))
        write_prediction_file(tmp_path / "p", event, stem, boxes, rng.uniform(0.2, 1, len(b)))
    (tmp_path / "p" / "protocol.json").write_text(
        json.dumps({"detector_protocol": {"score_thresh": 0.3, "scales": [0.5]}})
    )
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, [
        "eval", "wider", str(tmp_path / "p"), "--gt", str(root / "ground_truth"),
        "--images", str(root / "WIDER_val"), "--json", str(out), "--at-precision", "0.95",
        "--breakdown-plot", str(tmp_path / "b.png"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pre-thresholded" in result.stderr and "score threshold 0.3" in result.stderr
    assert "every test scale is below 1" in result.stderr
    assert "Operating points" in result.stdout and "size <10" in result.stdout
    doc = json.loads(out.read_text())["methods"]["p"]
    assert doc["protocol_hints"]["score_thresh"] == 0.3
    assert {c["name"]: c["status"] for c in doc["checks"]} == {
        "thresholded": "warn", "equal_scores": "ok", "low_resolution": "warn",
        "outside_image": "ok",
    }  # fmt: skip
    hard = doc["operating_points"]["hard"]
    assert hard["at_precision"]["target"] == 0.95
    assert hard["at_precision"]["threshold"] is None or hard["at_precision"]["precision"] >= 0.95
    curve = doc["curves"]["hard"]
    pr = zip(curve["precision"], curve["recall"], strict=True)
    f1 = [2 * p * r / (p + r) for p, r in pr if p]
    assert hard["best_f1"]["f1"] == pytest.approx(max(f1))
    assert set(doc["breakdown"]) >= {"size", "blur", "pose", "event", "threshold"}
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    # Flags override the protocol record.
    result = CliRunner().invoke(main, [
        "eval", "wider", str(tmp_path / "p"), "--gt", str(root / "ground_truth"),
        "--test-scales", "1,2", "--score-thresh", "0.01", "--json", "-",
    ])  # fmt: skip
    hints = json.loads(result.stdout)["methods"]["p"]["protocol_hints"]
    assert hints["test_scales"] == [1.0, 2.0] and hints["score_thresh"] == 0.01
    assert "flags" in hints["source"]


def test_fddb_checks_and_operating_points(shared_data, tmp_path):
    from facebench.evaluation.fddb_extras import ellipse_boxes
    from facebench.formats.fddb import read_folds, write_detections
    from facebench.formats.imagesize import read_sizes_csv

    folds = shared_data / "fddb" / "FDDB-folds"
    images = read_folds(folds, [1])
    sizes = read_sizes_csv(shared_data / "fddb" / "image_sizes.csv")
    rng = np.random.default_rng(2)
    blocks = []
    for k, im in enumerate(images):
        boxes = ellipse_boxes(im.ellipses)
        fp = np.array([[5.0, 5.0, 30.0, 30.0]])
        if k == 0:  # a box far outside the image
            w, h = sizes[im.name]
            fp = np.array([[w + 50.0, h + 50.0, 30.0, 30.0]])
        rows = np.vstack([boxes, fp])
        blocks.append((im.name, np.column_stack([rows, rng.uniform(0.3, 1, len(rows))])))
    write_detections(tmp_path / "dets.txt", blocks, "rect")
    (tmp_path / "protocol.json").write_text(json.dumps({"options": {"score_thresh": 0.3}}))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, [
        "eval", "fddb", str(tmp_path / "dets.txt"), "--folds", str(folds), "--fold", "1",
        "--image-sizes", str(shared_data / "fddb" / "image_sizes.csv"), "--json", str(out),
        "--at-fppi", "0.5",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "score threshold 0.3" in result.stderr and "centre outside" in result.stderr
    doc = json.loads(out.read_text())["methods"]["dets"]
    status = {c["name"]: c["status"] for c in doc["checks"]}
    assert status["thresholded"] == "warn" and status["outside_image"] == "warn"
    point = doc["operating_points"]["discrete"]["at_fppi"]
    rows = doc["rows"]
    allowed = [r["tpr_discrete"] for r in rows if r["fp"] / doc["n_images"] <= 0.5]
    assert point["recall"] == pytest.approx(max(allowed)) and point["fppi"] <= 0.5
    best = doc["operating_points"]["discrete"]["best_f1"]
    # One false positive per image: at the lowest threshold P = faces / (faces + images).
    assert best["recall"] > 0.9 and best["score"] == best["threshold"]
    assert "best F1" in result.stderr


def test_wider_operating_point_scores_are_raw_detector_scores():
    from facebench.evaluation.wider_extras import analyse_wider

    # Every face kept in every setting, so counted predictions = predictions passing.
    gt = _gt([[[0, 0, 20, 20], [40, 0, 20, 20]], [[0, 0, 30, 30]]])
    rng = np.random.default_rng(5)
    preds = []
    for faces in ([[0, 0, 20, 20], [40, 0, 20, 20]], [[0, 0, 30, 30]]):
        hits = np.column_stack([np.asarray(faces, float), rng.uniform(0.3, 0.8, len(faces))])
        noise = np.column_stack([rng.uniform(100, 200, (6, 2)), np.full((6, 2), 10.0),
                                 rng.uniform(0.2, 0.8, 6)])  # fmt: skip
        preds.append(np.vstack([hits, noise]))
    ev = evaluate_wider(gt, preds)
    rows = np.vstack(preds)
    offsets = np.array([0, len(preds[0]), len(rows)])
    analysis = analyse_wider(gt, ev, rows, offsets, at_precision=0.5, at_fppi=2)
    for point in analysis.operating_points["all"].values():
        if point is None or point.get("score") is None:
            continue
        passing = int((rows[:, 4] >= point["score"] - 1e-6).sum())
        assert passing == point["tp"] + point["fp"]
        assert 0.2 <= point["score"] <= 0.8
