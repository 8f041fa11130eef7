"""``facebench eval wider`` end to end on the real 200-image ground truth (widerface_val_416)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.app import main
from facebench.evaluation.wider import evaluate_wider
from facebench.formats.wider import read_eval_gt, read_wider_predictions, write_prediction_file


@pytest.fixture(scope="module")
def gt_dir(shared_data):
    return shared_data / "widerface_val_416" / "ground_truth"


@pytest.fixture(scope="module")
def folders(gt_dir, tmp_path_factory):
    """Two prediction folders: 'good' (small jitter) and 'rough' (large jitter)."""
    gt = read_eval_gt(gt_dir)
    root = tmp_path_factory.mktemp("preds")
    rng = np.random.default_rng(0)
    for name, noise in (("good", 0.05), ("rough", 0.3)):
        for (event, stem), b in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
            boxes = b.astype(float) + rng.normal(0, noise, (len(b), 4)) * np.maximum(b[:, 2:3], 2)
            boxes[:, 2:] = np.abs(boxes[:, 2:])
            write_prediction_file(root / name, event, stem, boxes, rng.random(len(b)))
    return root


def _run(*args):
    return CliRunner().invoke(main, ["eval", "wider", *map(str, args)])


def test_table_json_curves_plot(gt_dir, folders, tmp_path):
    out = tmp_path / "r.json"
    result = _run(
        folders / "good",
        f"mine={folders / 'rough'}",
        "--gt",
        gt_dir,
        "--json",
        out,
        "--curves",
        tmp_path / "c.csv",
        "--plot",
        tmp_path / "p.png",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().split("\n\n")[0].splitlines()  # the AP table comes first
    assert lines[1].split() == ["method", "Easy", "Medium", "Hard", "All"]
    assert [line.split()[0] for line in lines[2:]] == ["good", "mine"]
    doc = json.loads(out.read_text())
    assert doc["protocol"] == "official" and "eval_tools" in doc["protocol_version"]
    assert doc["ground_truth"]["faces"] == {"easy": 548, "medium": 1189, "hard": 3477, "all": 4371}
    gt = read_eval_gt(gt_dir)
    expected = evaluate_wider(gt, read_wider_predictions(folders / "good", gt)).ap
    good = doc["methods"]["good"]
    assert {s: good[s] for s in expected} == expected
    assert good["predictions"] == 4372 and good["files_missing"] == 0  # one per box row
    assert len(good["curves"]["hard"]["precision"]) == 1000
    assert good["curves"]["hard"]["precision"][0] is None or good["curves"]["hard"]["tp"][0] > 0
    assert doc["methods"]["mine"]["hard"] < good["hard"]
    # The table shows the same AP in percent.
    assert float(lines[2].split()[3]) == pytest.approx(100 * good["hard"], abs=0.005)
    csv = (tmp_path / "c.csv").read_text().splitlines()
    assert csv[0] == "method,setting,t,threshold,precision,recall,tp,proposals"
    assert len(csv) == 1 + 2 * 4 * 1000
    assert csv[1].startswith("good,easy,1,0.999,")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_problems_are_reported_and_strict_fails(gt_dir, folders, tmp_path):
    import shutil

    pred = tmp_path / "p"
    shutil.copytree(folders / "good", pred)
    victim = sorted((pred / "1--Handshaking").glob("*.txt"))[0]
    victim.unlink()
    broken = sorted((pred / "2--Demonstration").glob("*.txt"))[0]
    lines = broken.read_text().splitlines()
    lines[3] = "1 2 three 4 0.5"
    broken.write_text("\n".join(lines) + "\n")
    (pred / "2--Demonstration" / "not_in_gt.txt").write_text("x\n0\n")
    result = _run(pred, "--gt", gt_dir, "--json", tmp_path / "r.json")
    assert result.exit_code == 0
    assert "1 of 200 prediction files missing" in result.stderr
    assert f"{broken}:4: not a number: 'three'" in result.stderr
    assert "1 prediction files are not in the ground truth" in result.stderr
    doc = json.loads((tmp_path / "r.json").read_text())["methods"]["p"]
    assert doc["files_missing"] == 1 and doc["files_invalid"] == 1 and doc["files_extra"] == 1
    result = _run(pred, "--gt", gt_dir, "--strict")
    assert result.exit_code == 2
    assert "prediction file missing" in result.stderr or ":4: not a number" in result.stderr


def test_python_port_protocol_and_json_on_stdout(gt_dir, folders):
    result = _run(folders / "rough", "--gt", gt_dir, "--protocol", "python-port", "--json", "-")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["protocol"] == "python-port"
    official = json.loads(_run(folders / "rough", "--gt", gt_dir, "--json", "-").stdout)
    assert doc["methods"]["rough"]["hard"] != official["methods"]["rough"]["hard"]
    assert "WIDER FACE AP" in result.stderr  # the table moves to stderr


def test_prethresholded_warning(gt_dir, tmp_path):
    gt = read_eval_gt(gt_dir)
    for (event, stem), b in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        write_prediction_file(tmp_path, event, stem, b, np.linspace(0.5, 0.9, len(b)))
    result = _run(tmp_path, "--gt", gt_dir)
    assert result.exit_code == 0 and "pre-thresholded" in result.stderr


def test_bad_arguments_exit_2(gt_dir, folders, tmp_path):
    result = _run(f"a={folders / 'good'}", f"a={folders / 'rough'}", "--gt", gt_dir)
    assert result.exit_code == 2 and "given twice" in result.stderr
    result = _run(folders / "good", "--gt", tmp_path)
    assert (
        result.exit_code == 2 and "wider_face_val.mat: ground-truth file not found" in result.stderr
    )
    result = _run(tmp_path / "nope", "--gt", gt_dir)
    assert result.exit_code == 2 and "does not exist" in result.stderr
