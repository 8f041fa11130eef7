"""WIDER FACE formats: split txt, evaluation .mat files, prediction folders.

Expectations come from the real official files (counts in ../shared/data/README.md, the
attribute tallies of the train file counted with awk, the .mat boxes as a second source for
the val txt) and from hand-written broken copies.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.io as sio

from facebench.errors import FormatError
from facebench.formats.wider import (
    WiderEvalGT,
    WiderImage,
    format_prediction_text,
    parse_prediction_bytes,
    read_eval_gt,
    read_prediction_file,
    read_split_txt,
    read_wider_predictions,
    write_eval_gt,
    write_prediction_file,
    write_split_txt,
)


@pytest.fixture(scope="module")
def wider(shared_data):
    return shared_data / "widerface"


@pytest.fixture(scope="module")
def val_gt(wider) -> WiderEvalGT:
    return read_eval_gt(wider)


# ----------------------------------------------------------------------------- split txt


def test_train_split_counts_and_attributes(wider):
    path = wider / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    images = read_split_txt(path)
    assert len(images) == 12880
    empty = [im for im in images if len(im.boxes) == 0]
    # 159,424 rows in the README count the 4 face-less images' placeholder rows.
    assert len(empty) == 4
    assert sum(len(im.boxes) for im in images) + len(empty) == 159424
    attrs = np.concatenate([im.attributes for im in images])
    assert attrs.dtype == np.int32 and attrs.shape == (159420, 6)
    # Column tallies counted independently with awk over the file (zero lines add nothing).
    assert attrs[:, 0].sum() == 40811 + 2 * 95818  # blur
    assert attrs[:, 1].sum() == 1845  # expression
    assert attrs[:, 2].sum() == 8134  # illumination
    assert attrs[:, 3].sum() == 2399  # invalid
    assert attrs[:, 4].sum() == 27830 + 2 * 35730  # occlusion
    assert attrs[:, 5].sum() == 6042  # pose
    assert images[0].boxes.dtype == np.float64 and images[0].boxes.shape[1] == 4


def test_train_split_round_trips_byte_for_byte(wider, tmp_path):
    # The train file is written in exactly the form write_split_txt produces.
    path = wider / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    out = tmp_path / "train.txt"
    write_split_txt(out, read_split_txt(path))
    assert out.read_bytes() == path.read_bytes()


def test_val_split_matches_mat(wider, val_gt):
    images = read_split_txt(wider / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    assert len(images) == 3226
    assert sum(len(im.boxes) for im in images) == 39708 - 4
    by_name = {im.name: im for im in images}
    for (event, stem), boxes, attrs in zip(
        val_gt.image_keys(),
        val_gt.flat_boxes(),
        [a for ev in val_gt.attributes for a in ev],
        strict=True,
    ):
        im = by_name[f"{event}/{stem}.jpg"]
        if len(im.boxes) == 0:
            assert boxes.tolist() == [[0, 0, 0, 0]]
            continue
        expected = boxes.astype(np.float64)
        expected[:, 2:] = np.maximum(expected[:, 2:], 0)  # the txt writes width -2 as 0
        np.testing.assert_array_equal(im.boxes, expected)
        np.testing.assert_array_equal(im.attributes, attrs)


def test_val_416_split(shared_data):
    images = read_split_txt(
        shared_data / "widerface_val_416" / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    )
    assert len(images) == 200
    assert sum(len(im.boxes) for im in images) + sum(len(im.boxes) == 0 for im in images) == 4372
    valid = sum(int((im.attributes[:, 3] == 0).sum()) for im in images)
    assert valid == 4333 - 1  # README's 4,333 counts the face-less image's placeholder row


def test_split_empty_image_forms(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text(
        "a--A/1.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
        "a--A/2.jpg\n1\n0 0 0 0 0 0 0 0 0 0 \n"
        "a--A/3.jpg\n0\n"
        "a--A/4.jpg\n2\n1 2 3.5 4 0 0 0 0 0 0\n5 6 7 8 2 1 1 1 2 1\n"
    )
    images = read_split_txt(path)
    assert [len(im.boxes) for im in images] == [0, 0, 0, 2]
    assert images[3].boxes.tolist() == [[1, 2, 3.5, 4], [5, 6, 7, 8]]
    assert images[3].attributes.tolist()[1] == [2, 1, 1, 1, 2, 1]
    write_split_txt(tmp_path / "o.txt", images)
    again = read_split_txt(tmp_path / "o.txt")
    assert [im.name for im in again] == [im.name for im in images]
    for a, b in zip(again, images, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.attributes, b.attributes)


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["e--E/1.jpg", "2", "1 2 3 4 0 0 0 0 0 0", "1 2 3 x 0 0 0 0 0 0"], 4, "not a number"),
        (["e--E/1.jpg", "2", "1 2 3 4 0 0 0 0 0 0"], 3, "announces 2 faces but only 1"),
        (["e--E/1.jpg", "1", "1 2 3 4 0 0 0 0 0"], 3, "expected 10 numbers"),
        (["e--E/1.jpg", "two", "1 2 3 4 0 0 0 0 0 0"], 2, "whole number"),
        (["e--E/1.jpg", "1", "1 2 nan 4 0 0 0 0 0 0"], 3, "NaN"),
        (["e--E/1.jpg", "1", "1 2 -3 4 0 0 0 0 0 0"], 3, "negative"),
        (["e--E/1.jpg", "1", "1 2 3 4 3 0 0 0 0 0"], 3, "attribute out of range"),
        (["e--E/1.jpg", "1", "1 2 3 4 0 0 0 0 0 0", "7"], 4, "expected an image name"),
        (["e--E/1.jpg"], 2, "missing face count"),
        (["e--E/1.jpg", "-1"], 2, "negative face count"),
    ],
)
def test_split_broken_names_file_and_line(tmp_path, lines, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("ok--O/0.jpg\n1\n1 1 1 1 0 0 0 0 0 0 \n" + "\n".join(lines) + "\n")
    with pytest.raises(FormatError) as info:
        read_split_txt(path)
    assert info.value.path == str(path)
    assert info.value.line == line + 3
    assert message in str(info.value)


def test_real_val_split_broken_copy(wider, tmp_path):
    lines = (wider / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().split("\n")
    assert len(lines[5000].split()) == 10  # a face line
    lines[5000] = "abc " + lines[5000].split(" ", 1)[1]
    path = tmp_path / "val.txt"
    path.write_text("\n".join(lines))
    with pytest.raises(FormatError, match=r"val\.txt:5001: not a number: 'abc'"):
        read_split_txt(path)
    truncated = tmp_path / "trunc.txt"
    truncated.write_text("\n".join(lines[:3]))  # 126 faces announced, 1 present
    with pytest.raises(FormatError, match=r"trunc\.txt:3: .*announces 126 faces but only 1"):
        read_split_txt(truncated)


def test_write_split_checks_lengths(tmp_path):
    with pytest.raises(ValueError):
        write_split_txt(
            tmp_path / "x.txt",
            [WiderImage("a/b.jpg", np.zeros((2, 4)), np.zeros((1, 6), np.int32))],
        )
    assert not (tmp_path / "x.txt").exists()


# ------------------------------------------------------------------------------ eval .mat


def test_eval_gt_counts(val_gt):
    assert len(val_gt.events) == 61
    assert val_gt.n_images == 3226 and val_gt.n_faces == 39708
    kept = {k: sum(len(x) for ev in v for x in ev) for k, v in val_gt.keep.items()}
    assert kept == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert val_gt.events[0] == "0--Parade"
    assert val_gt.files[0][0] == "0_Parade_marchingband_1_465"
    assert max(len(b) for b in val_gt.flat_boxes()) == 709
    assert all(b.dtype == np.int32 and b.shape[1] == 4 for b in val_gt.flat_boxes())
    assert sum(len(k) for k in val_gt.flat_keep("all")) == 39708 - 4  # placeholders excluded
    # Settings nest: easy within medium within hard.
    for e, m, h in zip(
        val_gt.flat_keep("easy"), val_gt.flat_keep("medium"), val_gt.flat_keep("hard"), strict=True
    ):
        assert set(e) <= set(m) <= set(h)


def test_eval_gt_416(shared_data):
    gt = read_eval_gt(shared_data / "widerface_val_416" / "ground_truth")
    assert gt.n_images == 200 and gt.n_faces == 4372
    kept = {k: sum(len(x) for ev in v for x in ev) for k, v in gt.keep.items()}
    assert kept == {"easy": 548, "medium": 1189, "hard": 3477}


def _structure(value):
    """Nested (dtype kind, shape) description of a loadmat value."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return ("cell", value.shape, [_structure(v) for v in value.reshape(-1)])
    if isinstance(value, np.ndarray) and value.size == 0:
        # The official gt_list mixes (0, 1) and (0, 0) empties; MATLAB treats both alike.
        return (value.dtype.str, "empty")
    if isinstance(value, np.ndarray):
        return (value.dtype.str if value.dtype.kind != "U" else "str", value.shape)
    return (type(value).__name__,)


def test_write_eval_gt_reproduces_official_structure(shared_data, tmp_path):
    src = shared_data / "widerface_val_416" / "ground_truth"
    gt = read_eval_gt(src)
    write_eval_gt(tmp_path, gt)
    for name in ["wider_face_val", "wider_easy_val", "wider_medium_val", "wider_hard_val"]:
        ours = sio.loadmat(tmp_path / f"{name}.mat")
        theirs = sio.loadmat(src / f"{name}.mat")
        keys = sorted(k for k in theirs if not k.startswith("__"))
        assert sorted(k for k in ours if not k.startswith("__")) == keys
        for key in keys:
            assert _structure(ours[key]) == _structure(theirs[key]), (name, key)
    again = read_eval_gt(tmp_path)
    assert again.events == gt.events and again.files == gt.files
    for a, b in zip(again.flat_boxes(), gt.flat_boxes(), strict=True):
        np.testing.assert_array_equal(a, b)
    for setting in ("easy", "medium", "hard"):
        for a, b in zip(again.flat_keep(setting), gt.flat_keep(setting), strict=True):
            np.testing.assert_array_equal(a, b)


def test_write_eval_gt_bytes_depend_only_on_content(shared_data, tmp_path):
    # scipy stamps the time into MAT headers; ours must not, so data sets are reproducible.
    gt = read_eval_gt(shared_data / "widerface_val_416" / "ground_truth")
    write_eval_gt(tmp_path / "a", gt)
    time.sleep(1.1)
    write_eval_gt(tmp_path / "b", gt)
    for path in sorted((tmp_path / "a").glob("*.mat")):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name
        assert path.read_bytes().startswith(b"MATLAB 5.0 MAT-file")


def test_write_eval_gt_uses_uint16_for_large_indices(tmp_path):
    boxes = np.tile(np.array([[1, 1, 5, 5]], np.int32), (300, 1))
    keep = np.array([1, 299])
    gt = WiderEvalGT(
        ["0--E"], [["img"]], [[boxes]], {s: [[keep]] for s in ("easy", "medium", "hard")}
    )
    write_eval_gt(tmp_path, gt)
    mat = sio.loadmat(tmp_path / "wider_hard_val.mat")
    assert mat["gt_list"][0, 0][0, 0].dtype == np.uint16
    assert read_eval_gt(tmp_path).keep["hard"][0][0].tolist() == [1, 299]


def test_eval_gt_broken(shared_data, tmp_path):
    src = shared_data / "widerface_val_416" / "ground_truth"
    gt = read_eval_gt(src)
    gt.keep["medium"][0][0] = np.array([1, 10_000])
    write_eval_gt(tmp_path, gt)
    with pytest.raises(FormatError, match=r"wider_medium_val\.mat: gt_list .* outside"):
        read_eval_gt(tmp_path)
    (tmp_path / "wider_easy_val.mat").write_bytes(b"not a mat file")
    with pytest.raises(FormatError, match=r"wider_easy_val\.mat: not a readable"):
        read_eval_gt(tmp_path)
    (tmp_path / "wider_easy_val.mat").unlink()
    with pytest.raises(FormatError, match="ground-truth file not found"):
        read_eval_gt(tmp_path)


# --------------------------------------------------------------------- prediction folders


def test_prediction_file_round_trip(tmp_path):
    boxes = np.array([[1.5, 2, 30, 40], [0, 0, 1e-3, 7]], np.float32)
    scores = np.array([0.7, 0.123456789], np.float32)
    path = write_prediction_file(tmp_path, "0--Parade", "img_1", boxes, scores)
    assert path == tmp_path / "0--Parade" / "img_1.txt"
    assert path.read_text().split("\n")[:2] == ["img_1", "2"]
    rows = read_prediction_file(path)
    np.testing.assert_array_equal(rows[:, :4].astype(np.float32), boxes)
    np.testing.assert_array_equal(rows[:, 4].astype(np.float32), scores)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("img\n2\n1 2 3 4 0.5\n1 2 3 4\n", 4, "expected 5 numbers"),
        ("img\n2\n1 2 3 4 0.5\n1 2 3 4 zz\n", 4, "not a number: 'zz'"),
        ("img\n3\n1 2 3 4 0.5\n1 2 3 4 0.5\n", 4, "count says 3 but 2"),
        ("img\n1\n1 2 3 4 nan\n", 3, "score is NaN"),
        ("img\n1\n1 inf 3 4 0.5\n", 3, "coordinate is NaN"),
        ("img\n2\n1 2 3 4 0.5\n\n1 2 -3 4 0.5\n", 5, "negative box width"),
        ("img\nmany\n1 2 3 4 0.5\n", 2, "not a non-negative integer"),
        ("img", 2, "missing box count"),
        ("", 1, "empty file"),
    ],
)
def test_prediction_parse_errors(text, line, message):
    rows, problem, _ = parse_prediction_bytes(text.encode(), "p.txt")
    assert len(rows) == 0
    assert problem is not None and problem.line == line and message in problem.problem
    assert str(problem.error()).startswith(f"p.txt:{line}: ")


def test_prediction_parse_tolerant_forms():
    text = b"img\r\n3\r\n1\t2 3 4 0.5 9 9\r\n\r\n5 6 7 8 0.25\r\n9 9 9 9 1e-1 \r\n"
    rows, problem, note = parse_prediction_bytes(text, "p.txt")
    assert problem is None and note is None
    assert rows.tolist() == [[1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.25], [9, 9, 9, 9, 0.1]]
    rows, problem, note = parse_prediction_bytes(b"img\n1\n1 2 3 4 0.5\n5 6 7 8 0.4\n", "p")
    assert problem is None and rows.tolist() == [[1, 2, 3, 4, 0.5]]  # first `count` used
    assert note is not None and note.line == 4
    rows, problem, _ = parse_prediction_bytes(b"img\n0\n", "p")
    assert problem is None and rows.shape == (0, 5)


def _tiny_gt() -> WiderEvalGT:
    boxes = [[np.array([[0, 0, 10, 10]], np.int32)] * 3, [np.array([[5, 5, 5, 5]], np.int32)]]
    keep = [[np.array([1])] * 3, [np.array([1])]]
    return WiderEvalGT(
        ["1--A", "2--B"],
        [["a1", "a2", "a3"], ["b1"]],
        boxes,
        {s: keep for s in ("easy", "medium", "hard")},
    )


def test_prediction_folder_reader(tmp_path):
    gt = _tiny_gt()
    write_prediction_file(tmp_path, "1--A", "a1", [[0, 0, 10, 10], [1, 1, 2, 2]], [0.9, 0.2])
    (tmp_path / "1--A" / "a2.txt").write_text("a2\n1\n1 2 3 oops 0.1\n")
    write_prediction_file(tmp_path, "2--B", "b1", [[5, 5, 5, 5]], [0.4])
    write_prediction_file(tmp_path, "2--B", "stray", [[5, 5, 5, 5]], [0.4])
    (tmp_path / "notes.md").write_text("not a prediction")
    preds = read_wider_predictions(tmp_path, gt)
    assert preds.counts().tolist() == [2, 0, 0, 1]
    assert preds.image(0)[:, 4].tolist() == [0.9, 0.2]
    assert preds.image(3).tolist() == [[5, 5, 5, 5, 0.4]]
    assert preds.missing == ["1--A/a3.txt"]
    assert [(p.line, p.problem) for p in preds.invalid] == [(3, "not a number: 'oops'")]
    assert preds.extra == ["2--B/stray.txt"]
    assert preds.empty == []
    with pytest.raises(FormatError, match=r"a2\.txt:3: not a number"):
        read_wider_predictions(tmp_path, gt, strict=True)
    (tmp_path / "1--A" / "a2.txt").write_text("a2\n0\n")
    assert read_wider_predictions(tmp_path, gt).empty == ["1--A/a2.txt"]
    with pytest.raises(FormatError, match=r"a3\.txt: prediction file missing"):
        read_wider_predictions(tmp_path, gt, strict=True)
    with pytest.raises(FormatError, match="does not exist"):
        read_wider_predictions(tmp_path / "nope", gt)


def test_format_prediction_text_is_official_layout():
    text = format_prediction_text("x", np.array([[1, 2, 3, 4]]), np.array([0.5]))
    assert text == "x\n1\n1 2 3 4 0.5\n"
