"""Our WIDER evaluator against the official eval_tools run under GNU Octave (pinned outputs,
see tests/data/wider_official/PROVENANCE.md): same PR points bit for bit, AP within 1e-15."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facebench.evaluation.wider import evaluate_wider
from facebench.formats.wider import read_eval_gt, read_wider_predictions, write_prediction_file

PINS = Path(__file__).parent / "data" / "wider_official"
SETTINGS = ("easy", "medium", "hard")


@pytest.fixture(scope="module")
def gt(shared_data):
    return read_eval_gt(shared_data / "widerface_val_416" / "ground_truth")


def _pinned_predictions(gt) -> list[np.ndarray]:
    rows: dict[str, list[list[float]]] = {}
    for line in (PINS / "predictions.txt").read_text().splitlines():
        key, *values = line.split()
        rows.setdefault(key, []).append([float(v) for v in values])
    return [np.array(rows.get(f"{e}/{s}", []), np.float64).reshape(-1, 5)
            for e, s in gt.image_keys()]


def _official() -> dict[str, tuple[np.ndarray, float]]:
    ap = dict(line.split() for line in (PINS / "official-ap.txt").read_text().splitlines())
    return {s: (np.loadtxt(PINS / f"official-pr-{s}.txt"), float(ap[f"{s}_val"]))
            for s in SETTINGS}


def _check(evaluation) -> None:
    for setting, (pr, ap) in _official().items():
        curve = evaluation.curves[setting]
        assert np.array_equal(curve.precision, pr[:, 0], equal_nan=True), setting
        assert np.array_equal(curve.recall, pr[:, 1]), setting
        assert abs(curve.ap - ap) <= 1e-15, (setting, curve.ap, ap)


def test_pins_are_a_real_test():
    official = _official()
    for pr, ap in official.values():
        assert pr.shape == (1000, 2) and np.isfinite(pr[:, 0]).sum() > 900 and 0.3 < ap < 0.9
    # The highest thresholds pass no box in some setting: NaN precision is part of the pin.
    assert any(np.isnan(pr[:, 0]).any() for pr, _ in official.values())
    aps = [ap for _, ap in official.values()]
    assert len(set(aps)) == 3


def test_in_memory_predictions_match_the_official_tool(gt):
    _check(evaluate_wider(gt, _pinned_predictions(gt), settings=SETTINGS))


def test_submission_folder_matches_the_official_tool(gt, tmp_path):
    # The official tool read these boxes from the submission layout (6 significant digits).
    for (event, stem), rows in zip(gt.image_keys(), _pinned_predictions(gt), strict=True):
        write_prediction_file(tmp_path, event, stem, rows[:, :4], rows[:, 4], digits=6)
    predictions = read_wider_predictions(tmp_path, gt, strict=True)
    _check(evaluate_wider(gt, predictions, settings=SETTINGS))
