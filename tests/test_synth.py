"""The synthetic data generator: layout, determinism, annotation rules, rendering, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.app import main
from facebench.errors import FacebenchError
from facebench.formats.fddb import read_folds
from facebench.formats.imagesize import image_size, read_sizes_csv
from facebench.formats.wider import read_eval_gt, read_split_txt
from facebench.synth import generate
from facebench.synth.layout import EVENTS, sample_scene
from facebench.synth.render import Canvas, render_face, render_occluder, sample_look
from facebench.synth.scene import image_rng

N_IMAGES = 14
SEED = 3


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "data"
    manifest = generate(out, num_images=N_IMAGES, seed=SEED, workers=1)
    return out, manifest


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _split(root: Path, split: str):
    split_dir = root / "widerface" / "wider_face_split"
    return read_split_txt(split_dir / f"wider_face_{split}_bbx_gt.txt")


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_serial_or_parallel(synth, tmp_path):
    out, _ = synth
    again = tmp_path / "again"
    generate(again, num_images=N_IMAGES, seed=SEED, workers=2)
    first, second = _digests(out), _digests(again)
    assert first.keys() == second.keys()
    assert first == second


def test_other_seed_other_images(synth, tmp_path):
    out, _ = synth
    other = tmp_path / "other"
    generate(other, num_images=N_IMAGES, seed=SEED + 1, workers=1)
    a, b = _digests(out), _digests(other)
    assert a["synth.json"] != b["synth.json"]
    jpgs = {k for k in a if k.endswith(".jpg")} & {k for k in b if k.endswith(".jpg")}
    assert all(a[k] != b[k] for k in jpgs)


# --------------------------------------------------------------------------- layout


def test_layout_and_counts_read_back(synth):
    out, manifest = synth
    train, val = _split(out, "train"), _split(out, "val")
    assert len(train) + len(val) == N_IMAGES
    assert len(val) == manifest["counts"]["val"]["images"] == 10  # one per FDDB fold at least
    assert manifest["counts"]["train"]["faces"] == sum(len(im.boxes) for im in train)
    assert manifest["counts"]["val"]["faces"] == sum(len(im.boxes) for im in val)
    assert {im.name for im in train}.isdisjoint(im.name for im in val)
    for split, images in (("train", train), ("val", val)):
        for im in images:
            assert im.event in EVENTS
            assert (out / "widerface" / f"WIDER_{split}" / "images" / im.name).is_file()

    gt = read_eval_gt(out / "widerface" / "ground_truth")
    by_name = {im.name: im for im in val}
    assert sorted(f"{e}/{s}.jpg" for e, s in gt.image_keys()) == sorted(by_name)
    for (event, stem), boxes in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        np.testing.assert_array_equal(boxes, by_name[f"{event}/{stem}.jpg"].boxes)

    fddb = read_folds(out / "fddb" / "FDDB-folds")
    sizes = read_sizes_csv(out / "fddb" / "image_sizes.csv")
    assert sorted(f.name for f in fddb) == sorted(sizes)
    assert {f.fold for f in fddb} == set(range(1, 11))
    assert len(fddb) == len(val)
    for item in fddb:
        jpg = out / "fddb" / "originalPics" / f"{item.name}.jpg"
        assert image_size(jpg) == sizes[item.name]
        _, event, stem = item.name.split("/")
        wider_jpg = out / "widerface" / "WIDER_val" / "images" / event / f"{stem}.jpg"
        assert jpg.read_bytes() == wider_jpg.read_bytes()
        valid = by_name[f"{event}/{stem}.jpg"].attributes[:, 3] == 0
        assert len(item.ellipses) == int(valid.sum())
    assert json.loads((out / "synth.json").read_text()) == manifest


def test_boxes_inside_images_and_attributes_in_range(synth):
    out, _ = synth
    for split in ("train", "val"):
        for im in _split(out, split):
            w, h = image_size(out / "widerface" / f"WIDER_{split}" / "images" / im.name)
            b = im.boxes
            assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
            assert (b[:, 0] + b[:, 2] <= w).all() and (b[:, 1] + b[:, 3] <= h).all()
            assert (b[:, 2:] > 0).all()
            a = im.attributes
            assert (a[:, 1] == 0).all() and (a[:, 2] == 0).all()  # expression, illumination
            assert set(a[:, 0]) <= {0, 1, 2} and set(a[:, 4]) <= {0, 1, 2}
            # Invalid faces are the tiny or mostly hidden ones.
            small = np.minimum(b[:, 2], b[:, 3]) < 4
            assert ((a[:, 3] == 0) | small | (a[:, 4] == 2)).all()


def test_subsets_follow_the_rule_and_nest(synth):
    out, manifest = synth
    gt = read_eval_gt(out / "widerface" / "ground_truth")
    assert gt.attributes is not None
    totals = dict.fromkeys(("easy", "medium", "hard"), 0)
    for i, boxes in enumerate(gt.flat_boxes()):
        attrs = [a for ev in gt.attributes for a in ev][i]
        keep = {s: set(gt.flat_keep(s)[i].tolist()) for s in totals}
        assert keep["easy"] <= keep["medium"] <= keep["hard"]
        h = boxes[:, 3]
        blur, invalid, occ = attrs[:, 0], attrs[:, 3], attrs[:, 4]
        valid = invalid == 0
        expected = {
            "easy": valid & (h >= 50) & (blur == 0) & (occ == 0),
            "medium": valid & (h >= 30) & (occ < 2),
            "hard": valid & (h >= 10),
        }
        for s in totals:
            assert keep[s] == set((np.flatnonzero(expected[s]) + 1).tolist()), s
            assert not keep[s] & set((np.flatnonzero(~valid) + 1).tolist())
            totals[s] += len(keep[s])
    for s, n in totals.items():
        assert manifest["counts"]["val"][s] == n
    assert totals["hard"] > 0


def _ellipse_bbox(major, minor, angle, cx, cy) -> np.ndarray:
    # Sample the boundary (independent of the generator's closed form).
    t = np.linspace(0, 2 * np.pi, 2000)
    x = cx + major * np.cos(t) * np.cos(angle) - minor * np.sin(t) * np.sin(angle)
    y = cy + major * np.cos(t) * np.sin(angle) + minor * np.sin(t) * np.cos(angle)
    return np.array([x.min(), y.min(), x.max(), y.max()])


def test_fddb_ellipse_is_the_face_box(synth):
    out, _ = synth
    val = {im.name: im for im in _split(out, "val")}
    sizes = read_sizes_csv(out / "fddb" / "image_sizes.csv")
    checked = 0
    for item in read_folds(out / "fddb" / "FDDB-folds"):
        _, event, stem = item.name.split("/")
        wider = val[f"{event}/{stem}.jpg"]
        boxes = wider.boxes[wider.attributes[:, 3] == 0]
        w, h = sizes[item.name]
        assert len(boxes) == len(item.ellipses)
        for box, (major, minor, angle, cx, cy) in zip(boxes, item.ellipses, strict=True):
            assert major >= minor > 0
            assert -np.pi / 2 < angle <= np.pi / 2
            assert abs(abs(angle) - np.pi / 2) < 0.85  # major axis vertical-ish, like FDDB
            x1, y1, x2, y2 = _ellipse_bbox(major, minor, angle, cx, cy)
            expected = np.clip([x1, y1, x2, y2], 0, [w, h, w, h])
            got = [box[0], box[1], box[0] + box[2], box[1] + box[3]]
            np.testing.assert_allclose(got, expected, atol=0.51)
            checked += 1
    assert checked > 0


# --------------------------------------------------------------------------- distribution


def test_face_sizes_are_long_tailed():
    heights, counts = [], []
    for i in range(300):
        scene = sample_scene(image_rng(11, i), 512)
        heights.append(2 * scene.faces.b)
        counts.append(len(scene.faces))
    h = np.concatenate(heights)
    counts = np.array(counts)
    assert h.min() >= 6 and h.max() <= 0.85 * 512
    assert np.median(h) < 0.7 * h.mean()  # right-skewed
    assert (h < 20).mean() > 0.5  # most faces small
    assert (h >= 100).sum() > 20  # but a real tail of large ones
    assert (counts >= 50).sum() >= 5  # dense crowd images
    assert (counts == 0).sum() >= 3  # and some with no face at all


def test_manifest_histogram_matches_annotations(synth):
    out, manifest = synth
    heights = np.concatenate([im.boxes[:, 3] for s in ("train", "val") for im in _split(out, s)])
    hist = manifest["size_distribution"]["height_histogram"]
    assert sum(b["count"] for b in hist) == len(heights)
    for b in hist:
        hi = np.inf if b["to"] is None else b["to"]
        assert b["count"] == int(((heights >= b["from"]) & (heights < hi)).sum())
    assert manifest["size_distribution"]["measured_box_height"]["median"] == np.median(heights)


# --------------------------------------------------------------------------- rendering


def test_face_coverage_is_the_ellipse_area():
    rng = np.random.default_rng(0)
    for b in (3.0, 8.0, 40.0, 150.0):
        a = 0.8 * b
        sprite = render_face(200.0, 200.0, a, b, 0.3, 0.2, 0.0, sample_look(rng), (400, 400))
        assert sprite.face is not None
        assert sprite.face.sum() == pytest.approx(np.pi * a * b, rel=0.03)
        assert sprite.alpha.max() <= 1.0 + 1e-5


def test_visible_fraction_is_measured():
    """A bar over the left half of a face leaves half of it visible."""
    rng = np.random.default_rng(1)
    canvas = Canvas(np.full((200, 200, 3), 0.5, np.float32))
    face = render_face(100.0, 100.0, 30.0, 40.0, 0.0, 0.0, 0.0, sample_look(rng), (200, 200))
    canvas.composite(face, owner=1)
    assert canvas.visible_area(1) == pytest.approx(np.pi * 30 * 40, rel=0.02)
    # Bar covering x in [40, 100]: the head's left half.
    canvas.composite(render_occluder("bar", 70.0, 100.0, 30.0, 60.0, 0.0, rng, (200, 200)))
    assert canvas.visible_area(1) / (np.pi * 30 * 40) == pytest.approx(0.5, abs=0.02)


def test_face_has_dark_eyes_on_skin():
    look = sample_look(np.random.default_rng(2))
    canvas = Canvas(np.zeros((300, 300, 3), np.float32))
    canvas.composite(render_face(150.0, 150.0, 60.0, 75.0, 0.0, 0.0, 0.0, look, (300, 300)), 1)
    # Pupils sit 0.1 b above the centre at +-sin(0.45) * 0.96 a.
    pupil_y, pupil_dx = int(150 - 7.5), int(np.sin(0.45) * 0.96 * 60)
    cheek = canvas.rgb[165, 150 + pupil_dx].mean()
    for dx in (-pupil_dx, pupil_dx):
        assert canvas.rgb[pupil_y, 150 + dx].mean() < 0.5 * cheek


# --------------------------------------------------------------------------- CLI and errors


def test_cli_writes_data_set_and_json(tmp_path):
    out, json_path = tmp_path / "data", tmp_path / "manifest.json"
    result = CliRunner().invoke(
        main, ["data", "synth", str(out), "--images", "11", "--seed", "5", "--json", str(json_path)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(json_path.read_text()) == json.loads((out / "synth.json").read_text())
    # Running again replaces the earlier data set in place; no temporary folders remain.
    result = CliRunner().invoke(main, ["data", "synth", str(out), "--images", "12"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "synth.json").read_text())["parameters"]["num_images"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "manifest.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "5"], "--images"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--images", "11", "--val-fraction", "0.99"], "too few"),
        (["--max-side", "20"], "--max-side"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_cli_bad_arguments_are_clear(tmp_path, args, message):
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "x"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path), "--images", "11"])
    assert result.exit_code == 2
    assert "not empty" in result.output and str(tmp_path) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    with pytest.raises(FacebenchError, match="not empty"):
        generate(tmp_path, num_images=11)


def test_interrupted_run_leaves_nothing(tmp_path):
    def stop(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "data", num_images=11, progress=stop, workers=1)
    assert list(tmp_path.iterdir()) == []
