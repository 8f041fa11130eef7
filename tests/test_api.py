"""The Python API: ``from facebench import evaluate_wider, evaluate_fddb``."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cli.app import main
from facebench.errors import FacebenchError
from facebench.formats.wider import read_eval_gt, write_prediction_file


def test_api_is_lazy_and_torch_free():
    code = (
        "import sys, facebench; assert 'facebench.api' not in sys.modules; "
        "from facebench import evaluate_wider, evaluate_fddb; "
        "assert 'torch' not in sys.modules, 'torch imported'; print(evaluate_wider.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "facebench.api"


@pytest.fixture(scope="module")
def wider(shared_data, tmp_path_factory):
    gt_dir = shared_data / "widerface_val_416" / "ground_truth"
    gt = read_eval_gt(gt_dir)
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("api") / "mine"
    arrays = {}
    for (event, stem), b in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        rows = np.column_stack([b + rng.normal(0, 2, b.shape), rng.random(len(b))])
        rows[:, 2:4] = np.abs(rows[:, 2:4])
        write_prediction_file(root, event, stem, rows[:, :4], rows[:, 4])
        arrays[f"{event}/{stem}"] = np.loadtxt(root / event / f"{stem}.txt", skiprows=2, ndmin=2)
    return gt_dir, root, arrays


def test_evaluate_wider_matches_the_cli(wider):
    from facebench import evaluate_wider

    gt_dir, root, arrays = wider
    result = evaluate_wider(root, gt_dir, breakdown=True, at_precision=0.8)
    cli = CliRunner().invoke(main, ["eval", "wider", str(root), "--gt", str(gt_dir), "--json",
                                    "-", "--breakdown", "--at-precision", "0.8"])  # fmt: skip
    entry = json.loads(cli.stdout)["methods"]["mine"]
    doc = result.as_json()
    assert doc["protocol"] == "official"
    for key in ("easy", "medium", "hard", "all", "operating_points", "breakdown", "checks"):
        assert doc[key] == entry[key], key
    assert result.ap == {s: entry[s] for s in ("easy", "medium", "hard", "all")}
    # In-memory predictions (a dict by image, file-order arrays) give the same AP.
    assert evaluate_wider(arrays, gt_dir).ap == result.ap
    gt = read_eval_gt(gt_dir)
    ordered = [arrays[f"{e}/{s}"] for e, s in gt.image_keys()]
    assert evaluate_wider(ordered, gt).ap == result.ap


def test_nan_ap_is_null_in_json(tmp_path):
    from facebench import evaluate_wider
    from facebench.synth.generate import generate

    generate(tmp_path, num_images=12, seed=1, max_side=128, workers=0)  # no Easy face
    gt_dir = tmp_path / "widerface" / "ground_truth"
    gt = read_eval_gt(gt_dir)
    perfect = [np.column_stack([b, np.linspace(1, 0.5, len(b))]) for b in gt.flat_boxes()]
    with pytest.raises(FacebenchError, match=r"expected a \(P, 5\)"):
        evaluate_wider([b.astype(float) for b in gt.flat_boxes()], gt_dir)
    result = evaluate_wider(perfect, gt_dir)
    assert result.evaluation.curves["easy"].faces == 0 and math.isnan(result.ap["easy"])
    doc = result.as_json()
    assert doc["easy"] is None and doc["hard"] > 0
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN anywhere


def test_evaluate_fddb_matches_the_cli(shared_data, tmp_path):
    from fddb_synthetic import synthetic_detections

    from facebench import evaluate_fddb
    from facebench.formats.fddb import read_folds, write_detections
    from facebench.formats.imagesize import read_sizes_csv

    folds = shared_data / "fddb" / "FDDB-folds"
    sizes_csv = shared_data / "fddb" / "image_sizes.csv"
    images = read_folds(folds, [2])
    dets = synthetic_detections(images, read_sizes_csv(sizes_csv), per_image=2, kind="rect",
                                seed=3)  # fmt: skip
    write_detections(tmp_path / "d.txt", [(im.name, dets[im.name]) for im in images], "rect")
    result = evaluate_fddb(tmp_path / "d.txt", folds, image_sizes=sizes_csv, folds=[2])
    cli = CliRunner().invoke(main, ["eval", "fddb", str(tmp_path / "d.txt"), "--folds",
                                    str(folds), "--fold", "2", "--image-sizes", str(sizes_csv),
                                    "--json", "-"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    entry = json.loads(cli.stdout)["methods"]["d"]
    assert result.as_json() == entry
    assert result.tpr_at(1000) == entry["discrete"]["1000"] > 0
