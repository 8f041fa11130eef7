"""Per-scale Platt calibration before the cross-scale merge (detector.calibration)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.calibration import (
    CalibratedWriter,
    ScaleCalibration,
    fit_from_detections,
    fit_platt,
    label_detections,
    load_calibration,
    save_calibration,
    sidecar_path,
)
from facebench.errors import FacebenchError


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_platt_fit_matches_smoothed_targets_at_two_score_levels():
    """Two distinct scores, two parameters: the maximum-likelihood fit reproduces the mean
    smoothed target at each score exactly (by hand: positives get (P+1)/(P+2), negatives
    1/(Q+2))."""
    scores = np.array([0.3] * 10 + [0.7] * 10)
    labels = np.array([1] * 2 + [0] * 8 + [1] * 9 + [0] * 1)
    a, b = fit_platt(scores, labels)
    t_pos, t_neg = 12 / 13, 1 / 11
    want_low = (2 * t_pos + 8 * t_neg) / 10
    want_high = (9 * t_pos + 1 * t_neg) / 10
    assert _sigmoid(a * _logit(0.3) + b) == pytest.approx(want_low, abs=1e-6)
    assert _sigmoid(a * _logit(0.7) + b) == pytest.approx(want_high, abs=1e-6)


def test_platt_slope_never_reverses_the_order_within_a_scale():
    a, b = fit_platt(np.array([0.2, 0.8, 0.2, 0.8]), np.array([1, 0, 1, 0]))
    assert a > 0 and math.isfinite(b)
    assert fit_platt(np.zeros(0), np.zeros(0)) == (1.0, 0.0)


def test_labels_positive_negative_and_left_out():
    faces = np.array([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    dets = np.array([[0.0, 0, 10, 11, 0.9, 0],    # IoU 10/11 with a valid face
                     [50, 50, 60, 60, 0.8, 1],    # matches only the invalid face
                     [100, 100, 110, 110, 0.7, 0]])  # matches nothing
    labels = label_detections(dets, faces, np.array([False, True]))
    assert labels.tolist() == [1, -1, 0]


def _merge(dets: np.ndarray, iou: float = 0.3) -> np.ndarray:
    """Greedy cross-scale NMS (the merge) by hand for a handful of rows."""
    from detector.calibration import iou_matrix

    order = np.argsort(-dets[:, 4], kind="stable")
    kept: list[int] = []
    for i in order:
        if all(iou_matrix(dets[i : i + 1, :4], dets[j : j + 1, :4])[0, 0] <= iou for j in kept):
            kept.append(int(i))
    return dets[kept]


class _Collect:
    def __init__(self, merge) -> None:
        self.rows: list[np.ndarray] = []
        self.merge = merge

    def write(self, item, dets: np.ndarray) -> None:
        self.rows.append(self.merge(dets))

    def close(self) -> dict:
        return {}


def test_lower_scoring_scale_survives_calibration():
    """@16 fires everywhere at 0.4 and is mostly wrong; @128 scores only 0.15 but is right.
    Fitted on training detections, calibration ranks @128's box above the overlapping @16
    box, so @128's box survives the merge that raw scores give to @16."""
    rng = np.random.default_rng(0)
    dets, faces, invalid = [], [], []
    for _ in range(20):
        face = np.array([[100.0, 100, 228, 228]])
        false = rng.uniform(300, 900, size=(9, 2))
        rows = [[100, 100, 228, 228, 0.15, 3],            # @128 on the face
                [110, 110, 126, 126, 0.40, 0],            # @16 on a patch of the face (IoU<.5)
                *[[x, y, x + 16, y + 16, 0.40, 0] for x, y in false]]
        dets.append(np.array(rows, dtype=np.float32))
        faces.append(face)
        invalid.append(np.array([False]))
    cal = fit_from_detections((16, 32, 64, 128), dets, faces, invalid)
    assert cal.positives == (0, 0, 0, 20) and cal.negatives == (200, 0, 0, 0)
    # Scales without detections keep the identity.
    assert (cal.a[1], cal.b[1]) == (1.0, 0.0)

    test = np.array([[100, 100, 228, 228, 0.15, 3], [104, 104, 220, 220, 0.40, 0]],
                    dtype=np.float32)
    raw = _merge(test)
    assert raw[:, 5].tolist() == [0.0]           # raw scores: @16 wins, @128 is suppressed
    out = _Collect(_merge)
    CalibratedWriter(out, cal).write(None, test)
    assert out.rows[0][:, 5].tolist() == [3.0]   # calibrated: @128 survives
    assert out.rows[0][0, 4] > 0.9


def test_apply_keeps_order_within_a_scale_and_checks_scale_ids():
    cal = ScaleCalibration((16, 32), a=(2.0, 0.5), b=(-1.0, 1.0), positives=(1, 1),
                           negatives=(1, 1))
    dets = np.array([[0, 0, 1, 1, 0.9, 0], [0, 0, 1, 1, 0.2, 0], [0, 0, 1, 1, 0.5, 1]],
                    dtype=np.float32)
    out = cal.apply(dets)
    by_scale0 = out[out[:, 5] == 0, 4]
    assert by_scale0[0] > by_scale0[1]
    assert out[out[:, 5] == 1, 4][0] == pytest.approx(_sigmoid(0.5 * 0 + 1.0), rel=1e-6)
    with pytest.raises(FacebenchError, match="scale id 2"):
        cal.apply(np.array([[0, 0, 1, 1, 0.5, 2]], dtype=np.float32))


def test_sidecar_round_trip_and_bad_file(tmp_path):
    cal = ScaleCalibration((16, 32), a=(1.5, 0.5), b=(-1.0, 1.0), positives=(3, 4),
                           negatives=(5, 6), images=7, source="x")
    path = save_calibration(cal, sidecar_path(tmp_path / "model_final.pt"))
    assert path.name == "model_final.pt.calibration.json"
    assert load_calibration(path) == cal
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "scales": [16]}')
    with pytest.raises(FacebenchError, match=r"bad\.json: not a calibration file"):
        load_calibration(bad)


def test_calibrate_then_detect_uses_the_calibrated_merge(tmp_path, tiny_checkpoint):
    import json
    import shutil

    from click.testing import CliRunner

    from cli.app import main
    from facebench.synth import generate

    data = tmp_path / "synth"
    generate(data, num_images=12, seed=1, max_side=128, workers=0)
    ckpt = tmp_path / "run" / tiny_checkpoint.name
    ckpt.parent.mkdir()
    shutil.copy(tiny_checkpoint, ckpt)
    root = data / "widerface"
    source = ["--images", str(root / "WIDER_val"),
              "--split", str(root / "wider_face_split" / "wider_face_val_bbx_gt.txt")]

    # No calibration yet: the default merges raw scores; asking for calibration is an error.
    refused = CliRunner().invoke(main, ["detect", "--checkpoint", str(ckpt), *source,
                                        "--merge", "calibrated", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2
    assert "calibration.json: no calibration for this checkpoint" in refused.output

    fit = CliRunner().invoke(main, ["calibrate", "--checkpoint", str(ckpt), "--data", str(data),
                                    "--images", "2", "--json", str(tmp_path / "cal.json")])
    assert fit.exit_code == 0, fit.output
    sidecar = ckpt.parent / (ckpt.name + ".calibration.json")
    stored = json.loads(sidecar.read_text())
    assert stored["images"] == 2 and stored["scales"] == [16, 32, 64, 128]
    assert stored["settings"]["scales"] == [1.0]

    modes = {}
    for merge in ([], ["--merge", "nms"]):
        out = tmp_path / f"preds{len(merge)}"
        result = CliRunner().invoke(main, ["detect", "--checkpoint", str(ckpt), *source,
                                           *merge, "--out", str(out)])
        assert result.exit_code == 0, result.output
        modes[tuple(merge)] = json.loads((out / "protocol.json").read_text())["options"]["merge"]
    assert modes == {(): "calibrated", ("--merge", "nms"): "nms"}

    peer = CliRunner().invoke(main, ["detect", "--detector", "yunet", *source, "--merge", "nms",
                                     "--out", str(tmp_path / "p")])
    assert peer.exit_code == 2 and "--merge apply to checkpoints" in peer.output
