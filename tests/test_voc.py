"""VOC XML and dlib imglab readers: real files (WIDER voc_xml, dlib faces) and broken copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facebench.errors import FormatError
from facebench.formats.voc import count_boxes, read_imglab_xml, read_voc_dir, read_voc_xml

VOC_ONE = """<annotation><folder>0--Parade</folder><filename>a.jpg</filename>
<size><width>640</width><height>480</height><depth>3</depth></size>
<object><name>face</name><difficult>0</difficult>
<bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30.5</xmax><ymax>60</ymax></bndbox></object>
<object><name>face</name><difficult>1</difficult>
<bndbox><xmin>100</xmin><ymin>100</ymin><xmax>100</xmax><ymax>140</ymax></bndbox></object>
</annotation>
"""

IMGLAB = """<?xml version='1.0' encoding='ISO-8859-1'?>
<dataset><name>t</name><images>
  <image file='x.jpg' width='50' height='40'>
    <box top='5' left='7' width='10' height='12'/>
    <box top='1' left='2' width='3' height='4' ignore='1'/>
  </image>
  <image file='y.jpg'/>
</images></dataset>
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_voc_hand_made(tmp_path):
    ann = read_voc_xml(_write(tmp_path, "a.xml", VOC_ONE))
    assert (ann.filename, ann.folder, ann.width, ann.height) == ("a.jpg", "0--Parade", 640, 480)
    assert ann.image_relpath == "0--Parade/a.jpg"
    np.testing.assert_array_equal(ann.boxes, [[10, 20, 30.5, 60], [100, 100, 100, 140]])
    assert ann.names == ("face", "face")
    assert ann.difficult.tolist() == [False, True]


def test_voc_without_objects(tmp_path):
    text = "<annotation><filename>b.jpg</filename><size><width>5</width><height>6</height>"
    ann = read_voc_xml(_write(tmp_path, "b.xml", text + "</size></annotation>"))
    assert ann.boxes.shape == (0, 4) and ann.folder is None and ann.image_relpath == "b.jpg"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda s: s[: len(s) // 2], "not well-formed XML"),
        (lambda s: s.replace("<xmax>30.5</xmax>", "<xmax>3O</xmax>"), "<object> #1 <xmax>"),
        (lambda s: s.replace("<ymin>100</ymin>", ""), "<object> #2 <ymin> is missing"),
        (lambda s: s.replace("<width>640</width>", "<width>-3</width>"), "<size><width>"),
        (lambda s: s.replace("<filename>a.jpg</filename>", ""), "<filename> is missing"),
        (lambda s: s.replace("annotation>", "dataset>"), "expected <annotation>"),
        (lambda s: s.replace("<size>", "<sz>").replace("</size>", "</sz>"), "<size> is missing"),
    ],
)
def test_voc_broken_copies_name_file_and_problem(tmp_path, edit, problem):
    path = _write(tmp_path, "broken.xml", edit(VOC_ONE))
    with pytest.raises(FormatError) as info:
        read_voc_xml(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_voc_parse_error_gives_line(tmp_path):
    path = _write(tmp_path, "bad.xml", VOC_ONE.replace("</object>\n<object>", "</obj>\n<object>"))
    with pytest.raises(FormatError) as info:
        read_voc_xml(path)
    assert info.value.line == 4


def test_voc_missing_file_and_empty_dir(tmp_path):
    with pytest.raises(FormatError, match="file not found"):
        read_voc_xml(tmp_path / "nope.xml")
    with pytest.raises(FormatError, match=r"no \.xml"):
        read_voc_dir(tmp_path)


def test_imglab_hand_made(tmp_path):
    images = read_imglab_xml(_write(tmp_path, "d.xml", IMGLAB))
    assert [i.file for i in images] == ["x.jpg", "y.jpg"]
    np.testing.assert_array_equal(images[0].boxes, [[7, 5, 17, 17], [2, 1, 5, 5]])
    assert images[0].ignore.tolist() == [False, True]
    assert (images[0].width, images[0].height) == (50, 40)
    assert images[1].boxes.shape == (0, 4) and images[1].width is None


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda s: s.replace("width='10'", "width='-10'"), "negative width"),
        (lambda s: s.replace("top='5' ", ""), "box #1 top is missing"),
        (lambda s: s.replace("left='2'", "left='two'"), "box #2 left is not a number"),
        (lambda s: s.replace("file='y.jpg'", "name='y.jpg'"), "<image> #2 has no file"),
        (lambda s: s.replace("<images>", "<imgs>").replace("</images>", "</imgs>"), "<images>"),
        (lambda s: s.replace("</dataset>", ""), "not well-formed XML"),
    ],
)
def test_imglab_broken_copies(tmp_path, edit, problem):
    path = _write(tmp_path, "broken.xml", edit(IMGLAB))
    with pytest.raises(FormatError) as info:
        read_imglab_xml(path)
    assert str(path) in str(info.value) and problem in str(info.value)


# --------------------------------------------------------------------------- real data


def test_dlib_faces_real(shared_data):
    faces = shared_data / "dlib_faces" / "examples" / "faces"
    train = read_imglab_xml(faces / "training.xml")
    test = read_imglab_xml(faces / "testing.xml")
    assert len(train) + len(test) == 9 and count_boxes(train) + count_boxes(test) == 43
    first = train[0]
    # <image file='2007_007763.jpg' width='500' height='375'><box top='90' left='194' ...37x37
    assert (first.file, first.width, first.height) == ("2007_007763.jpg", 500, 375)
    np.testing.assert_array_equal(first.boxes[0], [194, 90, 231, 127])
    for image in train + test:
        assert (faces / image.file).is_file()
        inside = (image.boxes[:, :2] >= 0) & (image.boxes[:, 2:] <= [image.width, image.height])
        assert inside.all()
    # The landmark version labels the same faces (its <part>s inside <box> are skipped);
    # dlib re-drew some boxes by a few pixels.
    marked = read_imglab_xml(faces / "training_with_face_landmarks.xml")
    for a, b in zip(train, marked, strict=True):
        assert a.file == b.file
        np.testing.assert_allclose(a.boxes, b.boxes, atol=8)


def _official_val_boxes(path: Path) -> dict[str, np.ndarray]:
    """Independent reading of wider_face_val_bbx_gt.txt: name, count, ``x y w h ...`` lines."""
    lines = path.read_text().split("\n")
    out, i = {}, 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        count = int(lines[i + 1])
        rows = [[float(v) for v in line.split()[:4]] for line in lines[i + 2 : i + 2 + count]]
        i += 2 + max(count, 1)
        boxes = np.array(rows, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        out[name] = boxes
    return out


def test_wider_val_voc_matches_official_text(shared_data):
    wider = shared_data / "widerface"
    anns = read_voc_dir(wider / "voc_xml" / "WIDER_val_annotations")
    assert len(anns) == 3226 and count_boxes(anns) == 39708
    official = _official_val_boxes(wider / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    assert set(official) == {a.image_relpath for a in anns}
    differing = []
    for ann in anns:
        ref = official[ann.image_relpath]
        assert ann.boxes.shape == ref.shape, ann.path
        rows = np.flatnonzero((ann.boxes != ref).any(axis=1))
        differing += [(ann, int(r), ref[r]) for r in rows]
        assert ann.width > 0 and ann.height > 0
    # One face differs: ``1026 474 0 23`` in the text file (x past the 1024 px border,
    # width 0); the XML clipped its xmax to the image width. Kept as written.
    assert len(differing) == 1
    ann, row, ref = differing[0]
    assert ann.image_relpath == "39--Ice_Skating/39_Ice_Skating_iceskiing_39_583.jpg"
    np.testing.assert_array_equal(ref, [1026, 474, 1026, 497])
    np.testing.assert_array_equal(ann.boxes[row], [1026, 474, ann.width, 497])


def test_wider_train_voc_counts(shared_data):
    seen = []
    anns = read_voc_dir(
        shared_data / "widerface" / "voc_xml" / "WIDER_train_annotations",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert len(anns) == 12880 and count_boxes(anns) == 159424
    assert seen[-1] == (12880, 12880)
    sizes = np.array([(a.width, a.height) for a in anns])
    assert (sizes[:, 0] == 1024).mean() > 0.99  # WIDER images are 1024 px wide
