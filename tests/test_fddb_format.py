"""FDDB readers/writers and image sizes: real folds, round trips and broken copies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from facebench.errors import FormatError
from facebench.formats import fddb
from facebench.formats.imagesize import (
    image_size,
    image_sizes_from_folder,
    read_sizes_csv,
    write_sizes_csv,
)

FOLD_COUNTS = {1: (290, 515), 2: (285, 519), 3: (274, 517), 4: (302, 517), 5: (298, 514)}
FOLD_COUNTS |= {6: (302, 518), 7: (279, 518), 8: (276, 518), 9: (259, 514), 10: (280, 521)}


@pytest.fixture(scope="module")
def folds_dir(shared_data: Path) -> Path:
    return shared_data / "fddb" / "FDDB-folds"


# ------------------------------------------------------------------- real data


def test_real_folds_counts(folds_dir: Path):
    images = fddb.read_folds(folds_dir)
    assert len(images) == 2845
    assert sum(len(im.ellipses) for im in images) == 5171
    for fold, (n_images, n_faces) in FOLD_COUNTS.items():
        mine = [im for im in images if im.fold == fold]
        assert (len(mine), sum(len(im.ellipses) for im in mine)) == (n_images, n_faces)
    assert max(len(im.ellipses) for im in images) == 27
    assert min(len(im.ellipses) for im in images) >= 1


def test_real_ellipse_values(folds_dir: Path):
    items = fddb.read_ellipse_list(folds_dir / "FDDB-fold-01-ellipseList.txt")
    name, ell = items[0]
    assert name == "2002/08/11/big/img_591"
    np.testing.assert_array_equal(ell, [[123.5833, 85.5495, 1.265839, 269.6934, 161.7812]])
    assert ell.dtype == np.float64
    everything = np.concatenate([e for im in fddb.read_folds(folds_dir) for e in [im.ellipses]])
    assert np.abs(everything[:, 2]).max() <= math.pi / 2 + 1e-6
    assert (everything[:, 0] < everything[:, 1]).sum() == 1  # the README's one oddity
    degenerate = [im for im in fddb.read_folds(folds_dir) if im.name == "2002/07/24/big/img_67"]
    assert any((e == [1, 1, 0, 0, 0]).all() for e in degenerate[0].ellipses)


def test_real_fold_list_matches_ellipse_list(folds_dir: Path):
    names = fddb.read_fold_list(folds_dir / "FDDB-fold-05.txt")
    annotated = fddb.read_ellipse_list(folds_dir / "FDDB-fold-05-ellipseList.txt")
    assert names == [n for n, _ in annotated]
    assert len(names) == 298


def test_real_sizes_csv(shared_data: Path, folds_dir: Path):
    sizes = read_sizes_csv(shared_data / "fddb" / "image_sizes.csv")
    assert len(sizes) == 2845
    assert sizes["2002/08/11/big/img_591"] == (450, 431)
    widths = [w for w, _ in sizes.values()]
    heights = [h for _, h in sizes.values()]
    assert (min(widths), max(widths), min(heights), max(heights)) == (222, 450, 171, 450)
    assert {im.name for im in fddb.read_folds(folds_dir)} == set(sizes)


def test_real_files_with_crlf_and_trailing_spaces(folds_dir: Path, tmp_path: Path):
    src = (folds_dir / "FDDB-fold-03-ellipseList.txt").read_text()
    dos = tmp_path / "dos.txt"
    dos.write_bytes(src.replace("\n", "   \r\n").encode())
    assert _same(fddb.read_ellipse_list(dos), fddb.read_ellipse_list(folds_dir / dos_name(3)))


def dos_name(k: int) -> str:
    return f"FDDB-fold-{k:02d}-ellipseList.txt"


def _same(a, b) -> bool:
    return [n for n, _ in a] == [n for n, _ in b] and all(
        np.array_equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True)
    )


# ------------------------------------------------------------------- round trips


def test_ellipse_list_round_trip(folds_dir: Path, tmp_path: Path):
    items = fddb.read_ellipse_list(folds_dir / dos_name(7))
    out = tmp_path / "e.txt"
    fddb.write_ellipse_list(out, items)
    assert _same(fddb.read_ellipse_list(out), items)
    assert out.read_text().splitlines()[2].endswith("  1")


def test_detections_round_trip_both_formats(tmp_path: Path):
    rng = np.random.default_rng(0)
    rects = [
        ("a/b", rng.uniform(1, 100, (3, 5))),
        ("c", np.zeros((0, 5))),
        ("d", rng.random((1, 5))),
    ]
    ells = [(n, np.c_[r, rng.random(len(r))]) for n, r in rects]
    for fmt, items in (("rect", rects), ("ellipse", ells)):
        out = tmp_path / f"{fmt}.txt"
        fddb.write_detections(out, items, fmt)
        for mode in ("auto", fmt):
            back = fddb.read_detections(out, format=mode)
            assert _same(back, items)
            assert fddb.detection_format_of(back) == fmt
    with pytest.raises(FormatError, match="expected 6 numbers"):
        fddb.read_detections(tmp_path / "rect.txt", format="ellipse")


def test_fold_list_round_trip(tmp_path: Path):
    fddb.write_fold_list(tmp_path / "f.txt", ["x/1", "x/2"])
    assert fddb.read_fold_list(tmp_path / "f.txt") == ["x/1", "x/2"]


def test_sizes_csv_round_trip_and_header_orders(tmp_path: Path):
    write_sizes_csv(tmp_path / "s.csv", {"a/b": (10, 20), "c": (3, 4)})
    assert read_sizes_csv(tmp_path / "s.csv") == {"a/b": (10, 20), "c": (3, 4)}
    (tmp_path / "t.csv").write_text("height,name,width\r\n20 ,a,10\r\n\r\n")
    assert read_sizes_csv(tmp_path / "t.csv") == {"a": (10, 20)}


def test_image_size_reads_header_only(tmp_path: Path):
    from PIL import Image

    Image.new("RGB", (37, 21)).save(tmp_path / "img.jpg")
    (tmp_path / "sub").mkdir()
    Image.new("L", (5, 9)).save(tmp_path / "sub" / "x.jpg")
    assert image_size(tmp_path / "img.jpg") == (37, 21)
    assert image_sizes_from_folder(tmp_path, ["img", "sub/x"]) == {"img": (37, 21), "sub/x": (5, 9)}
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(FormatError, match="not a readable image"):
        image_size(tmp_path / "bad.jpg")
    with pytest.raises(Exception, match="image not found"):
        image_sizes_from_folder(tmp_path, ["missing"])


# ------------------------------------------------------------------- S3FD regressor


def test_s3fd_coefficients_match_shared_json(shared_data: Path):
    from facebench.formats.s3fd_fit import S3FD_FIT

    ref = json.loads((shared_data / "fddb" / "s3fd_rect_to_ellipse.json").read_text())
    for key in ("meanX", "stdX", "meanY", "stdY", "w"):
        np.testing.assert_array_equal(np.asarray(S3FD_FIT[key]), np.asarray(ref[key]))


def test_s3fd_regressor_formula_by_hand():
    from facebench.formats.s3fd_fit import S3FD_FIT as F

    rect = np.array([[156.13947113207567, 78.39775792452856, 84.9307705660378, 116.11285056603776]])
    # At the mean rectangle the standardised input is 0: the output is meanY, angle turned.
    out = fddb.rect_to_ellipse_s3fd(rect)
    expected = list(F["meanY"])
    expected[2] = expected[2] + math.pi / 2  # meanY angle is negative: + pi/2
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-12)
    # One standard deviation along `left` adds the first row of w (scaled by stdY).
    rect2 = rect + np.array([[F["stdX"][0], 0, 0, 0]])
    y = np.asarray(F["w"][0]) * np.asarray(F["stdY"]) + np.asarray(F["meanY"])
    y[2] = y[2] - math.pi / 2 if y[2] >= 0 else y[2] + math.pi / 2
    np.testing.assert_allclose(fddb.rect_to_ellipse_s3fd(rect2)[0], y, atol=1e-12)


def test_s3fd_regressor_is_plausible_on_a_face_box():
    # A 100x120 box at (50, 40): ellipse centre near the box centre, vertical major axis.
    ell = fddb.rect_to_ellipse_s3fd(np.array([[50.0, 40.0, 100.0, 120.0, 0.9]]))[0]
    assert abs(ell[3] - 100) < 10 and abs(ell[4] - 100) < 15
    assert 50 < ell[0] < 90 and 40 < ell[1] < 70
    assert abs(abs(ell[2]) - math.pi / 2) < 0.3


# ------------------------------------------------------------------- broken copies


def _broken(folds_dir: Path, tmp_path: Path, edit) -> Path:
    lines = (folds_dir / dos_name(1)).read_text().split("\n")
    edit(lines)
    out = tmp_path / "broken.txt"
    out.write_text("\n".join(lines))
    return out


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (lambda L: L.__setitem__(1, "2"), 4, "more than follow"),  # count too big
        (lambda L: L.__setitem__(4, "0"), 6, "expected an image name"),  # count too small
        (lambda L: L.__setitem__(1, "x"), 2, "whole number"),
        (lambda L: L.__setitem__(1, "-1"), 2, "negative"),
        (lambda L: L.__setitem__(2, "1 2 3 4 nan 1"), 3, "non-finite"),
        (lambda L: L.__setitem__(2, "1 2 3 4 inf 1"), 3, "non-finite"),
        (lambda L: L.__setitem__(2, "1 2 abc 4 5 1"), 3, "non-numeric field 'abc'"),
        (lambda L: L.__setitem__(2, "1 2 3 4"), 3, "expected 6 or 5 numbers"),
        (lambda L: L.__setitem__(5, "-3 4 1 5 5 1"), 6, "negative ellipse radius"),
        (lambda L: L.__setitem__(6, "0 4 1 5 5 1"), 7, "zero ellipse radius"),
        (lambda L: L.__setitem__(3, "2002/08/11/big/img_591"), 4, "already has a block"),
    ],
)
def test_broken_ellipse_lists(folds_dir, tmp_path, edit, line, message):
    path = _broken(folds_dir, tmp_path, edit)
    with pytest.raises(FormatError, match=message) as info:
        fddb.read_ellipse_list(path)
    assert info.value.line == line
    assert info.value.path == str(path)
    assert f"{path}:{line}:" in str(info.value)


def test_truncated_ellipse_list(folds_dir, tmp_path):
    path = _broken(folds_dir, tmp_path, lambda L: L.__delitem__(slice(-3, None)))
    with pytest.raises(FormatError, match="truncated"):
        fddb.read_ellipse_list(path)
    path.write_text("img\n")
    with pytest.raises(FormatError, match="missing count line") as info:
        fddb.read_ellipse_list(path)
    assert info.value.line == 1


def test_broken_detections(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("a\n2\n1 2 3 4 0.5\n1 2 3 4 0.5 7\n")
    with pytest.raises(FormatError, match="earlier detection lines") as info:
        fddb.read_detections(path)
    assert info.value.line == 4
    path.write_text("a\n1\n1 2 -3 4 0.5\n")
    with pytest.raises(FormatError, match="negative rectangle size") as info:
        fddb.read_detections(path)
    assert info.value.line == 3
    path.write_text("a\n\n1\n\n1 2 0 4 0.5\n")  # blank lines are skipped; zero width allowed
    assert fddb.read_detections(path)[0][1].shape == (1, 5)


def test_broken_fold_list_and_mismatch(folds_dir, tmp_path):
    (tmp_path / "FDDB-fold-01.txt").write_text("a\na\n")
    with pytest.raises(FormatError, match="already listed on line 1") as info:
        fddb.read_fold_list(tmp_path / "FDDB-fold-01.txt")
    assert info.value.line == 2
    (tmp_path / "FDDB-fold-01.txt").write_text("")
    with pytest.raises(FormatError, match="empty"):
        fddb.read_fold_list(tmp_path / "FDDB-fold-01.txt")
    names = fddb.read_fold_list(folds_dir / "FDDB-fold-01.txt")
    fddb.write_fold_list(tmp_path / "FDDB-fold-01.txt", names[:5] + names[6:])
    (tmp_path / dos_name(1)).write_bytes((folds_dir / dos_name(1)).read_bytes())
    with pytest.raises(FormatError, match="image #6"):
        fddb.read_folds(tmp_path, folds=[1])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("image,width,height\na,0,5\n", 2, "positive"),
        ("image,width,height\na,-4,5\n", 2, "positive"),
        ("image,width,height\na,x,5\n", 2, "not a number"),
        ("image,width,height\na,nan,5\n", 2, "not finite"),
        ("image,width,height\na,4.5,5\n", 2, "whole number"),
        ("image,width,height\na,4\n", 2, "expected 3"),
        ("image,width,height\na,4,5\na,4,5\n", 3, "already on line 2"),
        ("a,4,5\n", 1, "header"),
    ],
)
def test_broken_sizes_csv(tmp_path, text, line, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        read_sizes_csv(path)
    assert info.value.line == line


def test_broken_real_sizes_csv(shared_data, tmp_path):
    lines = (shared_data / "fddb" / "image_sizes.csv").read_text().splitlines()
    lines[100] = lines[100].rsplit(",", 1)[0] + ",0"
    (tmp_path / "s.csv").write_text("\n".join(lines))
    with pytest.raises(FormatError, match="height must be positive") as info:
        read_sizes_csv(tmp_path / "s.csv")
    assert info.value.line == 101
