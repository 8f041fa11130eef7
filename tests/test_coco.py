"""COCO results as evaluator input (WIDER and FDDB) and as ``facebench detect`` output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.app import main
from facebench.errors import FormatError
from facebench.formats.coco import coco_entries, read_coco_results, read_image_ids, write_coco
from facebench.formats.wider import read_eval_gt, write_prediction_file


def test_read_results_and_id_maps(tmp_path):
    (tmp_path / "ids.json").write_text(json.dumps({"7": "a/b.jpg", "9": "c/d.png"}))
    results = [
        {"image_id": 9, "bbox": [1, 2, 3, 4], "score": 0.5, "category_id": 1},
        {"image_id": 7, "bbox": [5, 6, 7, 8], "score": 0.25},
        {"image_id": 9, "bbox": [0, 0, 1, 1], "score": 0.75},
    ]
    (tmp_path / "r.json").write_text(json.dumps(results))
    got = read_coco_results(tmp_path / "r.json", tmp_path / "ids.json")
    assert got.images == ["a/b", "c/d"]
    assert got.boxes["a/b"].tolist() == [[5, 6, 7, 8, 0.25]]
    assert got.boxes["c/d"].tolist() == [[1, 2, 3, 4, 0.5], [0, 0, 1, 1, 0.75]]  # file order
    # The COCO images form, found beside the results without an explicit map.
    (tmp_path / "images.json").write_text(json.dumps(
        {"images": [{"id": 7, "file_name": "a/b.jpg"}, {"id": 9, "file_name": "c/d.png"}]}
    ))  # fmt: skip
    assert read_image_ids(tmp_path / "images.json") == {"7": "a/b.jpg", "9": "c/d.png"}
    assert read_coco_results(tmp_path / "r.json").boxes.keys() == got.boxes.keys()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"image_id": 7, "bbox": [1, 2, 3, 4]}]', "entry 0: missing score"),
        ('[{"image_id": 8, "bbox": [1, 2, 3, 4], "score": 1}]', "entry 0: image_id 8 not in"),
        ('[{"image_id": 7, "bbox": [1, 2, 3], "score": 1}]', "bbox must be [x, y, w, h]"),
        ('[{"image_id": 7, "bbox": [1, 2, -3, 4], "score": 1}]', "negative size"),
        ('[{"image_id": 7, "bbox": ["a", 2, 3, 4], "score": 1}]', "must be numbers"),
        ('[\n{"image_id": 7,,}]', ":2: not valid JSON"),
        ('{"image_id": 7}', "expected a JSON list"),
    ],
)
def test_bad_results_name_file_and_entry(tmp_path, text, message):
    (tmp_path / "images.json").write_text(json.dumps({"7": "a/b.jpg"}))
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(FormatError) as info:
        read_coco_results(tmp_path / "r.json")
    assert str(tmp_path / "r.json") in str(info.value) and message in str(info.value)


def test_missing_id_map_is_a_clear_cli_error(tmp_path, shared_data):
    (tmp_path / "r.json").write_text("[]")
    gt = shared_data / "widerface_val_416" / "ground_truth"
    result = CliRunner().invoke(main, ["eval", "wider", str(tmp_path / "r.json"), "--gt", str(gt)])
    assert result.exit_code == 2 and "images.json: image-id map" in result.stderr


def test_wider_coco_equals_folder(shared_data, tmp_path):
    gt_dir = shared_data / "widerface_val_416" / "ground_truth"
    gt = read_eval_gt(gt_dir)
    rng = np.random.default_rng(4)
    images, dets = [], []
    for i, ((event, stem), b) in enumerate(zip(gt.image_keys(), gt.flat_boxes(), strict=True)):
        rows = np.column_stack([b + rng.normal(0, 1.5, b.shape), rng.random(len(b))])
        rows[:, 2:4] = np.abs(rows[:, 2:4])
        write_prediction_file(tmp_path / "folder", event, stem, rows[:, :4], rows[:, 4])
        # Ids out of order and longer paths than event/stem, as other tools write them.
        images.append({"id": 1000 - i, "file_name": f"WIDER_val/images/{event}/{stem}.jpg"})
        dets.append(rows)
    write_coco(tmp_path / "coco", images, coco_entries([im["id"] for im in images], dets))
    args = ["eval", "wider", str(tmp_path / "folder"), str(tmp_path / "coco" / "detections.json"),
            "--gt", str(gt_dir), "--json", "-"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    methods = json.loads(result.stdout)["methods"]
    folder, coco = methods["folder"], methods["detections"]
    assert [folder[s] for s in ("easy", "medium", "hard", "all")] == [
        coco[s] for s in ("easy", "medium", "hard", "all")
    ]
    assert coco["predictions"] == folder["predictions"] == 4372


def _synth(tmp_path_factory):
    from facebench.synth.generate import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, num_images=12, seed=1, max_side=128, workers=0)
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return _synth(tmp_path_factory)


def test_detect_format_coco_evaluates_like_the_official_layouts(synth, tiny_checkpoint, tmp_path):
    wider = synth / "widerface"
    split = wider / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    common = ["detect", "--checkpoint", str(tiny_checkpoint), "--threads", "1"]
    for fmt in ("wider", "coco"):
        result = CliRunner().invoke(main, [
            *common, "--images", str(wider / "WIDER_val"), "--split", str(split),
            "--format", fmt, "--out", str(tmp_path / fmt),
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
    ids = json.loads((tmp_path / "coco" / "images.json").read_text())["images"]
    assert [im["id"] for im in ids] == list(range(1, 11)) and ids[0]["width"] > 0
    record = json.loads((tmp_path / "coco" / "protocol.json").read_text())
    assert record["outputs"][0]["format"] == "coco"
    result = CliRunner().invoke(main, [
        "eval", "wider", str(tmp_path / "wider"), str(tmp_path / "coco" / "detections.json"),
        "--gt", str(wider / "ground_truth"), "--json", "-",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    methods = json.loads(result.stdout)["methods"]
    assert methods["wider"]["predictions"] == methods["detections"]["predictions"] > 0
    for s in ("easy", "medium", "hard", "all"):
        assert methods["wider"][s] == pytest.approx(methods["detections"][s], abs=1e-9)

    fddb = synth / "fddb"
    for fmt in ("fddb-rect", "coco"):
        result = CliRunner().invoke(main, [
            *common, "--fddb-folds", str(fddb / "FDDB-folds"), "--images",
            str(fddb / "originalPics"), "--format", fmt, "--out", str(tmp_path / f"f-{fmt}"),
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, [
        "eval", "fddb", f"rect={tmp_path / 'f-fddb-rect' / 'detections.txt'}",
        f"coco={tmp_path / 'f-coco' / 'detections.json'}", "--folds", str(fddb / "FDDB-folds"),
        "--image-sizes", str(fddb / "image_sizes.csv"), "--json", "-",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    methods = json.loads(result.stdout)["methods"]
    assert methods["rect"]["n_detections"] == methods["coco"]["n_detections"] > 0
    rect_rows = [(r["fp"], r["tp_discrete"]) for r in methods["rect"]["rows"]]
    coco_rows = [(r["fp"], r["tp_discrete"]) for r in methods["coco"]["rows"]]
    assert rect_rows == coco_rows
