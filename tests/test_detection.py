"""The detection runner and `facebench detect`: sources, writers re-read by the format readers.

A scripted test double stands in for a detector: its boxes are a known function of the
image size, so every written number can be checked against an independent expectation.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from nms_reference import greedy_nms

from cli.app import main
from facebench import detection
from facebench.errors import FacebenchError, FormatError
from facebench.formats import fddb, wider


class ScriptedDetector:
    """Per image: two boxes from its size, scale ids 0 and 1 (second box only if wide)."""

    name = "scripted"

    def __init__(self) -> None:
        self.batches: list[int] = []

    @staticmethod
    def expected(width: int, height: int) -> np.ndarray:
        rows = [[1.5, 2.25, width / 2, height / 2, 0.875, 0]]
        if width > 40:
            rows.append([10, 12, width - 1, height - 3, 0.5, 1])
        return np.array(rows, dtype=np.float32)

    def detect_batch(self, images):
        self.batches.append(len(images))
        return [self.expected(im.shape[1], im.shape[0]) for im in images]

    def protocol(self):
        return {"detector": self.name, "score_threshold": 0.0}


SIZES = {"0--Parade/a": (48, 32), "0--Parade/b": (30, 20), "1--Handshaking/c": (64, 50)}


@pytest.fixture
def wider_root(tmp_path) -> Path:
    root = tmp_path / "WIDER_val" / "images"
    for key, (w, h) in SIZES.items():
        path = root / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return root


def xywh(rows: np.ndarray) -> np.ndarray:
    out = rows[:, :5].astype(np.float64)
    out[:, 2:4] -= out[:, :2]
    return out


# --------------------------------------------------------------------------- sources


def test_folder_and_wider_sources(wider_root, tmp_path):
    items = detection.folder_images(wider_root)
    assert [i.key for i in items] == sorted(SIZES)
    assert (items[0].event, items[0].stem) == ("0--Parade", "a")
    # The WIDER_val folder above images/ works too.
    assert [i.key for i in detection.wider_images(wider_root.parent)] == sorted(SIZES)
    split = tmp_path / "split.txt"
    split.write_text("1--Handshaking/c.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n0--Parade/a.jpg\n0\n")
    assert [i.key for i in detection.wider_images(wider_root, split)] == [
        "1--Handshaking/c",
        "0--Parade/a",
    ]
    split.write_text("0--Parade/a.jpg\n0\n0--Parade/zz.jpg\n0\n")
    with pytest.raises(FormatError) as info:
        detection.wider_images(wider_root, split)
    assert info.value.line == 3 and "zz.jpg" in str(info.value)


def test_wider_source_rejects_flat_images_and_empty_folders(tmp_path):
    cv2.imwrite(str(tmp_path / "flat.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FormatError, match="outside an event folder"):
        detection.wider_images(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacebenchError, match="no images"):
        detection.folder_images(tmp_path / "empty")


def test_fddb_source(tmp_path):
    names = ["2002/07/19/big/img_1", "2002/07/19/big/img_2"]
    for name in names:
        (tmp_path / "pics" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "pics" / f"{name}.jpg"), np.zeros((20, 30, 3), np.uint8))
    folds = tmp_path / "folds"
    folds.mkdir()
    (folds / "FDDB-fold-01.txt").write_text(names[0] + "\n")
    (folds / "FDDB-fold-02.txt").write_text(names[1] + "\n2002/07/19/big/img_9\n")
    items = detection.fddb_images(folds, tmp_path / "pics", [1])
    assert [(i.key, i.fold) for i in items] == [(names[0], 1)]
    with pytest.raises(FormatError, match="img_9"):
        detection.fddb_images(folds, tmp_path / "pics", [1, 2])
    with pytest.raises(FormatError, match="fold 3"):
        detection.fddb_images(folds, tmp_path / "pics", [3])


def test_corrupt_image_is_a_format_error(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(FormatError, match="cannot decode"):
        detection.load_image(bad)
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.array([[[255, 0, 0]]], np.uint8))  # BGR blue
    assert detection.load_image(rgb)[0, 0].tolist() == [0, 0, 255]


# --------------------------------------------------------------------------- writers


def test_wider_and_per_scale_outputs_reread(wider_root, tmp_path):
    det = ScriptedDetector()
    out = tmp_path / "preds"
    items = detection.folder_images(wider_root)
    writers = [detection.WiderWriter(out), detection.PerScaleWiderWriter(out, [16, 32])]
    stats = detection.run_detection(det, items, writers, batch_size=2)
    assert det.batches == [2, 1]
    assert stats.images == 3 and stats.detections == 5 and len(stats.latency_ms) == 3
    for key, (w, h) in SIZES.items():
        expected = ScriptedDetector.expected(w, h)
        got = wider.read_prediction_file(out / f"{key}.txt")
        np.testing.assert_allclose(got, xywh(expected), rtol=1e-7)
        for sid, scale in enumerate((16, 32)):
            part = wider.read_prediction_file(Path(f"{out}@{scale}") / f"{key}.txt")
            np.testing.assert_allclose(part, xywh(expected[expected[:, 5] == sid]), rtol=1e-7)
    assert writers[1].close()["folders"] == {"16": f"{out}@16", "32": f"{out}@32"}


def test_per_scale_backfills_scales_seen_late(tmp_path):
    writer = detection.PerScaleWiderWriter(tmp_path / "p")
    first = detection.ImageItem(Path("x.jpg"), "e/first")
    second = detection.ImageItem(Path("y.jpg"), "e/second")
    writer.write(first, np.array([[0, 0, 4, 4, 0.9, 0]], np.float32))
    writer.write(second, np.array([[0, 0, 4, 4, 0.8, 2]], np.float32))
    assert len(wider.read_prediction_file(tmp_path / "p@2" / "e" / "first.txt")) == 0
    assert len(wider.read_prediction_file(tmp_path / "p@0" / "e" / "second.txt")) == 0
    assert len(wider.read_prediction_file(tmp_path / "p@2" / "e" / "second.txt")) == 1
    with pytest.raises(FacebenchError, match="scale ids"):
        writer.write(second, np.array([[0, 0, 4, 4, 0.8, -1]], np.float32))


@pytest.mark.parametrize("ellipse", [False, True])
def test_fddb_outputs_reread(tmp_path, ellipse):
    items = [
        detection.ImageItem(Path("a.jpg"), "2002/07/19/big/img_1", 1),
        detection.ImageItem(Path("b.jpg"), "2002/07/19/big/img_2", 2),
    ]
    rows = [ScriptedDetector.expected(48, 32), np.zeros((0, 6), np.float32)]
    writer = detection.FddbWriter(tmp_path / "f", ellipse=ellipse)
    for item, r in zip(items, rows, strict=True):
        writer.write(item, r)
    info = writer.close()
    assert info["format"] == ("fddb-ellipse" if ellipse else "fddb-rect")
    got = fddb.read_detections(tmp_path / "f" / "detections.txt")
    assert [n for n, _ in got] == [i.key for i in items]
    rect = xywh(rows[0])
    want = (
        np.column_stack([fddb.rect_to_ellipse_s3fd(rect[:, :4]), rect[:, 4]]) if ellipse else rect
    )
    np.testing.assert_allclose(got[0][1], want, rtol=1e-6)
    assert got[1][1].shape == (0, 6 if ellipse else 5)
    fold2 = fddb.read_detections(tmp_path / "f" / "fold-02-out.txt")
    assert [n for n, _ in fold2] == ["2002/07/19/big/img_2"]


def test_check_detections():
    rows = np.array(
        [[0, 0, 2, 2, 0.5, -1], [3, 0, 1, 2, 0.4, -1], [0, 0, np.nan, 2, 0.3, -1]], np.float64
    )
    kept = detection.check_detections(rows, "demo")
    assert kept.dtype == np.float32 and kept.tolist() == [[0, 0, 2, 2, 0.5, -1]]
    with pytest.raises(FacebenchError, match=r"shape \(3, 5\)"):
        detection.check_detections(rows[:, :5], "demo")


# --------------------------------------------------------------------------- command


def run_cli(*args: str):
    return CliRunner().invoke(main, ["detect", *args])


def test_detect_command_haar_end_to_end(wider_root, tmp_path):
    out = tmp_path / "haar"
    summary = tmp_path / "s.json"
    result = run_cli(
        "--detector", "haar", "--images", str(wider_root), "--out", str(out),
        "--threads", "1", "--json", str(summary),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for key in SIZES:
        assert wider.read_prediction_file(out / f"{key}.txt").shape[1] == 5
    record = json.loads((out / "protocol.json").read_text())
    assert record == json.loads(summary.read_text())
    assert record["detector"] == "haar" and record["run"]["images"] == 3
    assert record["detector_protocol"]["min_neighbors"] == 1
    assert record["source"] == {"kind": "folder", "images": str(wider_root)}
    # A second run refuses to mix outputs unless asked.
    again = run_cli("--detector", "haar", "--images", str(wider_root), "--out", str(out))
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "IMG", "--out", "o"], "choose a detector"),
        (["--detector", "haar", "--images", "IMG", "--out", "o", "--score-thresh", "0.1"],
         "no score threshold"),
        (["--detector", "haar", "--images", "IMG", "--out", "o", "--scales", "1,2"],
         "apply to checkpoints"),
        (["--detector", "facebench", "--images", "IMG", "--out", "o"], "needs --checkpoint"),
        (["--detector", "nope", "--images", "IMG", "--out", "o"], "unknown detector 'nope'"),
        (["--detector", "haar", "--images", "IMG", "--out", "o", "--folds", "1"],
         "--folds needs --fddb-folds"),
        (["--detector", "haar", "--images", "IMG"], "--out is required"),
    ],
)  # fmt: skip
def test_detect_command_bad_options(wider_root, tmp_path, args, message):
    args = [str(wider_root) if a == "IMG" else a for a in args]
    args = [str(tmp_path / "o") if a == "o" else a for a in args]
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_detect_command_fddb_ellipse(tmp_path):
    name = "2002/07/19/big/img_1"
    (tmp_path / "pics" / name).parent.mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "pics" / f"{name}.jpg"), np.zeros((40, 60, 3), np.uint8))
    (tmp_path / "folds").mkdir()
    (tmp_path / "folds" / "FDDB-fold-04.txt").write_text(name + "\n")
    result = run_cli(
        "--detector", "haar", "--fddb-folds", str(tmp_path / "folds"), "--folds", "4",
        "--images", str(tmp_path / "pics"), "--format", "fddb-ellipse", "--out",
        str(tmp_path / "o"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = fddb.read_detections(tmp_path / "o" / "fold-04-out.txt")
    assert [n for n, _ in got] == [name]
    assert json.loads((tmp_path / "o" / "protocol.json").read_text())["source"]["folds"] == [4]


def test_detect_list_and_real_wider_images(shared_data, tmp_path):
    listing = run_cli("--list")
    assert listing.exit_code == 0 and "retinaface-mnet" in listing.output
    images = shared_data / "widerface_val_416" / "WIDER_val" / "images"
    split = shared_data / "widerface_val_416" / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    items = detection.wider_images(images, split)
    assert len(items) == 200
    result = run_cli(
        "--detector", "haar", "--images", str(images), "--split", str(split),
        "--limit", "3", "--out", str(tmp_path / "p"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for item in items[:3]:
        rows = wider.read_prediction_file(tmp_path / "p" / f"{item.key}.txt")
        assert rows.shape[1] == 5 and (rows[:, 2:4] >= 24).all()  # the cascade's 24 px window


# --------------------------------------------------------------------------- bench


def test_gt_from_boxes_and_perfect_predictions_score_one(tmp_path):
    from facebench.bench import LABELLED, BenchSet, evaluate_folder, gt_from_boxes

    keys = [("ev", "a"), ("ev", "b"), ("other", "c")]
    boxes = [
        np.array([[10, 10, 30, 40], [50, 5, 60, 20]]),
        np.zeros((0, 4)),
        np.array([[0, 0, 8.4, 9.6]]),
    ]
    ignore = [np.array([False, True]), np.zeros(0, bool), np.array([False])]
    gt = gt_from_boxes(keys, boxes, ignore)
    assert gt.events == ["ev", "other"] and gt.files == [["a", "b"], ["c"]]
    assert gt.boxes[0][0].tolist() == [[10, 10, 20, 30], [50, 5, 10, 15]]
    assert gt.boxes[1][0].tolist() == [[0, 0, 8, 10]]  # rounded like the official int32 .mat
    assert [k.tolist() for k in gt.flat_keep(LABELLED)] == [[1], [], [1]]
    items = [detection.ImageItem(Path(f"{e}/{s}.jpg"), f"{e}/{s}") for e, s in keys]
    bench_set = BenchSet("t", items, gt, (LABELLED,))
    for folder, shift, ap in (("p", 0, 1.0), ("moved", 100, 0.0)):
        writer = detection.WiderWriter(tmp_path / folder)
        # Distinct scores: the official normalisation turns all-equal scores into NaN.
        for n, (item, b) in enumerate(zip(items, gt.flat_boxes(), strict=True)):
            x1y1 = b[:, :2] + shift
            rows = np.column_stack(
                [x1y1, x1y1 + b[:, 2:], np.full(len(b), 0.9 - 0.1 * n), -np.ones(len(b))]
            )
            writer.write(item, rows.astype(np.float32))
        evaluation = evaluate_folder(bench_set, tmp_path / folder, "official")
        assert evaluation.curves[LABELLED].faces == 2  # the ignored face is not counted
        assert evaluation.ap[LABELLED] == pytest.approx(ap)
    with pytest.raises(FacebenchError, match="contiguous"):
        gt_from_boxes([("a", "x"), ("b", "y"), ("a", "z")], [np.zeros((0, 4))] * 3, [[]] * 3)


def test_leaderboard_markdown_hand_made():
    from facebench.bench import leaderboard_markdown

    row = {
        "set": "s", "detector": "d", "images": 2, "ap": {"easy": 0.5, "all": 0.25},
        "image_size_median": [416.0, 416.0], "latency_ms_median": 12.34, "peak_rss_mib": 99.6,
        "cpu_ms_median": 11.0, "score_threshold": 0.01,
    }  # fmt: skip
    text = leaderboard_markdown([row, {**row, "detector": "e", "ap": {"easy": 0.9, "all": 0.5}}], 1)
    lines = text.splitlines()
    assert lines[0] == "**s** (2 images, median size 416x416; CPU, 1 thread(s))"
    assert lines[2] == (
        "| detector | Easy | All | ms/image (wall) | CPU ms/image | peak RSS MiB "
        "| score threshold |"
    )
    assert lines[4] == "| e | 0.900 | 0.500 | 12.3 | 11.0 | 100 | 0.01 |"  # best "all" first
    assert lines[5] == "| d | 0.500 | 0.250 | 12.3 | 11.0 | 100 | 0.01 |"


def test_bench_command_on_dlib_faces(shared_data, tmp_path):
    from facebench.peers import is_installed

    faces = shared_data / "dlib_faces" / "examples" / "faces"
    names = "haar,retinaface-mnet" if is_installed("retinaface-mnet") else "haar"
    result = CliRunner().invoke(
        main,
        ["bench", "--dlib", str(faces / "training.xml"), "--dlib", str(faces / "testing.xml"),
         "--detectors", names, "--out", str(tmp_path / "b"), "--json", str(tmp_path / "r.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary == json.loads((tmp_path / "b" / "leaderboard.json").read_text())
    rows = {r["detector"]: r for r in summary["results"]}
    assert set(rows) == set(names.split(","))
    for r in rows.values():
        assert r["set"] == "dlib" and r["images"] == 9 and r["faces"] == {"labelled": 43}
        assert r["threads"] == 1 and r["latency_ms_median"] > 0 and r["peak_rss_mib"] > 10
        assert r["cpu_ms_median"] > 0
        assert r["image_size_median"] == [500.0, 375.0]
    assert rows["haar"]["ap"]["labelled"] > 0.5  # frontal, medium-size faces: easy for Haar
    if "retinaface-mnet" in rows:
        assert rows["retinaface-mnet"]["ap"]["labelled"] > 0.9
    assert (tmp_path / "b" / "pr_dlib.png").stat().st_size > 10_000
    assert "| haar |" in (tmp_path / "b" / "leaderboard.md").read_text()


def test_bench_command_errors(tmp_path):
    result = CliRunner().invoke(main, ["bench", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no data" in result.output
    result = CliRunner().invoke(
        main, ["bench", "--voc", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "--voc-images" in result.output


# --------------------------------------------------------------------------- our checkpoint


def test_detect_checkpoint_per_scale_folders(tiny_checkpoint, wider_root, tmp_path):
    out = tmp_path / "p"
    result = run_cli(
        "--checkpoint", str(tiny_checkpoint), "--images", str(wider_root), "--out", str(out),
        "--per-scale", "--max-side", "64", "--score-thresh", "0.05", "--batch-size", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "protocol.json").read_text())
    proto = record["detector_protocol"]
    assert proto["nms_per_scale"] is True and proto["max_side"] == 64
    assert proto["score_thresh"] == 0.05
    folders = record["outputs"][1]["folders"]
    assert list(folders) == ["16", "32", "64", "128"]  # the design's anchor sizes, by scale id
    total = suppressed = 0
    for key in SIZES:
        main_rows = wider.read_prediction_file(out / f"{key}.txt")
        parts = [wider.read_prediction_file(Path(f) / f"{key}.txt") for f in folders.values()]
        union = np.concatenate(parts)
        # The main file is the greedy cross-scale NMS of the per-scale parts (IoU 0.3), redone
        # here in plain numpy on the written rows.
        xyxy = np.column_stack([union[:, :2], union[:, :2] + union[:, 2:4]])
        expected = union[greedy_nms(xyxy, union[:, 4], None, 0.3)]
        np.testing.assert_allclose(main_rows, expected, atol=1e-3)
        assert (main_rows[:, 4] >= 0.05 - 1e-6).all()
        total += len(union)
        suppressed += len(union) - len(main_rows)
    assert total == record["run"]["detections"] > 0
    assert suppressed > 0  # the merge removed cross-scale duplicates: not the plain union



def test_detect_checkpoint_errors(tmp_path, wider_root):
    result = run_cli("--checkpoint", str(tmp_path / "none.pt"), "--images", str(wider_root),
                     "--out", str(tmp_path / "o"))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "none.pt" in result.output


def test_bench_sets_voc_and_limited_wider(shared_data, tmp_path):
    from facebench.bench import LABELLED, voc_set, wider_set

    ann = tmp_path / "ann"
    ann.mkdir()
    (tmp_path / "img" / "ev").mkdir(parents=True)
    for stem, difficult in (("b", "1"), ("a", "0")):
        cv2.imwrite(str(tmp_path / "img" / "ev" / f"{stem}.jpg"), np.zeros((9, 9, 3), np.uint8))
        (ann / f"{stem}.xml").write_text(
            f"<annotation><folder>ev</folder><filename>{stem}.jpg</filename><size><width>9"
            "</width><height>9</height></size><object><name>face</name><difficult>"
            f"{difficult}</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>5</xmax>"
            "<ymax>8</ymax></bndbox></object></annotation>"
        )
    voc = voc_set(ann, tmp_path / "img", None)
    assert [i.key for i in voc.items] == ["ev/a", "ev/b"] and voc.settings == (LABELLED,)
    assert voc.gt.boxes[0][0].tolist() == [[1, 2, 4, 6]]
    assert [k.tolist() for k in voc.gt.flat_keep(LABELLED)] == [[1], []]  # difficult: ignored

    root = shared_data / "widerface_val_416"
    limited = wider_set(root, 40)
    assert len(limited.items) == limited.gt.n_images == 40
    full = wider_set(root, None)
    assert full.gt.n_images == 200
    assert [i.key for i in limited.items] == [i.key for i in full.items[:40]]
    for setting in ("easy", "hard"):
        got = [k.tolist() for k in limited.gt.flat_keep(setting)]
        assert got == [k.tolist() for k in full.gt.flat_keep(setting)[:40]]
