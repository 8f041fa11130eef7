"""``facebench eval fddb`` end to end on the real folds with synthetic detections."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from fddb_synthetic import synthetic_detections

from cli.app import main
from facebench.formats.fddb import read_folds, write_detections
from facebench.formats.imagesize import read_sizes_csv, write_sizes_csv


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fddb")
    folds = shared_data / "fddb" / "FDDB-folds"
    sizes_csv = shared_data / "fddb" / "image_sizes.csv"
    images = read_folds(folds)
    sizes = read_sizes_csv(sizes_csv)
    rects = synthetic_detections(images, sizes, per_image=2.5, kind="rect", seed=5)
    ells = synthetic_detections(images, sizes, per_image=2.5, kind="ellipse", seed=6)
    # Image "missing" from the detection file: its block is simply absent.
    missing = images[3].name
    write_detections(
        root / "rects.txt",
        [(im.name, rects[im.name]) for im in images if im.name != missing],
        "rect",
    )
    write_detections(root / "ells.txt", [(im.name, ells[im.name]) for im in images], "ellipse")
    # The same rectangles as a folder of per-fold files.
    (root / "per_fold").mkdir()
    for k in range(1, 11):
        write_detections(
            root / "per_fold" / f"fold-{k:02d}-out.txt",
            [(im.name, rects[im.name]) for im in images if im.fold == k and im.name != missing],
            "rect",
        )
    return {"root": root, "folds": folds, "sizes": sizes_csv, "missing": missing}


def _run(args):
    result = CliRunner().invoke(main, ["eval", "fddb", *map(str, args)])
    return result


def test_two_methods_json_files_plot(setup):
    root = setup["root"]
    args = [
        f"boxes={root / 'rects.txt'}", root / "ells.txt", "--folds", setup["folds"],
        "--image-sizes", setup["sizes"], "--out", root / "roc", "--json", root / "r.json",
        "--plot", root / "roc.png", "--at", "100,200", "--at", "1000",
    ]  # fmt: skip
    result = _run(args)
    assert result.exit_code == 0, result.output
    data = json.loads((root / "r.json").read_text())
    assert set(data["methods"]) == {"boxes", "ells"}
    boxes = data["methods"]["boxes"]
    assert set(boxes["discrete"]) == {"100", "200", "1000"} == set(boxes["continuous"])
    assert boxes["n_faces"] == 5171 and boxes["n_images"] == 2845
    assert boxes["images_without_block"] == 1
    assert (
        0.5 < boxes["discrete"]["1000"] <= 1
        and boxes["continuous"]["1000"] < boxes["discrete"]["1000"]
    )
    rows = boxes["rows"]
    assert rows[-1]["threshold"] == pytest.approx(1.7976931348623157e308)
    thresholds = [r["threshold"] for r in rows]
    assert thresholds == sorted(thresholds)
    # The official files agree with the JSON rows.
    disc = np.loadtxt(root / "roc" / "boxesDiscROC.txt")
    cont = np.loadtxt(root / "roc" / "boxesContROC.txt")
    assert len(disc) == len(rows) == len(cont)
    np.testing.assert_allclose(disc[:, 0], [r["tpr_discrete"] for r in rows], atol=1e-5)
    np.testing.assert_allclose(cont[:, 1], [r["fp"] for r in rows])
    assert (root / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "boxes" in result.output and "disc@200" in result.output


def test_folder_of_fold_files_equals_single_file(setup):
    root = setup["root"]
    common = ["--folds", setup["folds"], "--image-sizes", setup["sizes"]]
    a = _run([root / "rects.txt", *common, "--json", root / "a.json"])
    b = _run([f"rects={root / 'per_fold'}", *common, "--json", root / "b.json"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ja = json.loads((root / "a.json").read_text())["methods"]["rects"]
    jb = json.loads((root / "b.json").read_text())["methods"]["rects"]
    assert ja == jb


def test_one_fold_ignores_other_folds_blocks(setup):
    root = setup["root"]
    result = _run(
        [root / "ells.txt", "--folds", setup["folds"], "--image-sizes", setup["sizes"],
         "--fold", "3", "--json", "-", "--interpolate"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    m = data["methods"]["ells"]
    assert m["n_images"] == 274 and m["n_faces"] == 517
    assert m["ignored_blocks"] == 2845 - 274
    assert data["protocol"]["folds"] == [3] and m["rule"] == "interpolated"


def test_s3fd_conversion_runs_and_differs(setup):
    root = setup["root"]
    common = [root / "rects.txt", "--folds", setup["folds"], "--image-sizes", setup["sizes"]]
    plain = _run([*common, "--fold", "1", "--json", root / "p.json"])
    conv = _run([*common, "--fold", "1", "--rect-to-ellipse", "s3fd", "--json", root / "c.json"])
    assert plain.exit_code == 0 and conv.exit_code == 0, plain.output + conv.output
    p = json.loads((root / "p.json").read_text())["methods"]["rects"]
    c = json.loads((root / "c.json").read_text())["methods"]["rects"]
    assert c["detections"] == "ellipse" and p["detections"] == "rect"
    assert len(c["rows"]) == len(p["rows"])  # same scores, same thresholds
    assert c["continuous"] != p["continuous"]
    bad = _run([root / "ells.txt", *common[1:], "--rect-to-ellipse", "s3fd"])
    assert bad.exit_code == 2 and "needs rectangle detections" in bad.output


def test_images_folder_gives_sizes(setup, tmp_path):
    from PIL import Image

    images = read_folds(setup["folds"], [1])[:3]
    folds = tmp_path / "folds"
    folds.mkdir()
    (folds / "FDDB-fold-01.txt").write_text("".join(f"{im.name}\n" for im in images))
    src = (setup["folds"] / "FDDB-fold-01-ellipseList.txt").read_text().split("\n")
    # First three blocks of the real ellipse list.
    keep, i = [], 0
    for _ in range(3):
        n = int(src[i + 1])
        keep += src[i : i + 2 + n]
        i += 2 + n
    (folds / "FDDB-fold-01-ellipseList.txt").write_text("\n".join(keep) + "\n")
    sizes = read_sizes_csv(setup["sizes"])
    for im in images:
        path = tmp_path / "imgs" / f"{im.name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", sizes[im.name]).save(path)
    write_sizes_csv(tmp_path / "s.csv", {im.name: sizes[im.name] for im in images})
    dets = tmp_path / "d.txt"
    write_detections(
        dets,
        [(im.name, np.c_[im.ellipses, [[0.9]] * len(im.ellipses)]) for im in images],
        "ellipse",
    )
    a = _run([dets, "--folds", folds, "--images", tmp_path / "imgs", "--json", tmp_path / "a.json"])
    b = _run(
        [dets, "--folds", folds, "--image-sizes", tmp_path / "s.csv", "--json", tmp_path / "b.json"]
    )
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ja = json.loads((tmp_path / "a.json").read_text())["methods"]["d"]
    assert ja == json.loads((tmp_path / "b.json").read_text())["methods"]["d"]
    assert ja["discrete"]["200"] == 1.0  # the annotations themselves, all found
    shutil.rmtree(tmp_path / "imgs" / images[1].name.split("/")[0])
    gone = _run([dets, "--folds", folds, "--images", tmp_path / "imgs"])
    assert gone.exit_code == 2 and "image not found" in gone.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2002/08/11/big/img_591.jpg\n1\n1 2 3 4 0.5\n", "no extension"),
        ("nope/img_1\n1\n1 2 3 4 0.5\n", "not in the FDDB folds"),
        ("2002/08/11/big/img_591\n2\n1 2 3 4 0.5\n", "truncated"),
        ("2002/08/11/big/img_591\n1\n1 2 3 nan 0.5\n", "non-finite"),
    ],
)
def test_bad_detections_exit_2_with_file_and_line(setup, tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    result = _run([path, "--folds", setup["folds"], "--image-sizes", setup["sizes"]])
    assert result.exit_code == 2
    assert message in result.output
    assert f"{path}:" in result.output
    assert "Traceback" not in result.output


def test_missing_size_and_option_errors(setup, tmp_path):
    sizes = read_sizes_csv(setup["sizes"])
    sizes.pop("2002/08/11/big/img_591")
    write_sizes_csv(tmp_path / "s.csv", sizes)
    dets = setup["root"] / "rects.txt"
    result = _run([dets, "--folds", setup["folds"], "--image-sizes", tmp_path / "s.csv"])
    assert result.exit_code == 2 and "no size for image '2002/08/11/big/img_591'" in result.output
    neither = _run([dets, "--folds", setup["folds"]])
    assert neither.exit_code == 2 and "--images" in neither.output
    twice = _run(
        [dets, f"rects={dets}", "--folds", setup["folds"], "--image-sizes", setup["sizes"]]
    )
    assert twice.exit_code == 2 and "given twice" in twice.output
