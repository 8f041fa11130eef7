"""Anchor statistics (detector.anchor_stats, `facebench stats anchors`).

Hand-computed single-face cases (IoUs worked out in the comments from the anchor grid),
exactness of the near-face pre-filter against the full matcher, determinism across workers,
every data layout, the CLI's outputs, and the paper's Figure 2 shapes on real WIDER train
annotations.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.app import main
from detector.anchor_stats import (
    PAPER_DESIGNS,
    AnnotatedImage,
    TrainingSet,
    count_anchor_stats,
    ellipse_boxes,
    face_buckets,
    label_anchors,
    open_training_set,
)
from detector.anchors import anchors_for
from detector.augment import TrainAugment
from detector.designs import get_design
from detector.matching import match_anchors
from facebench.errors import FacebenchError


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Small tensors: threads only add hand-off cost (and spin on a busy CI machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# No scale jitter, no crop (max side above any test image), no flip: boxes pass unchanged.
IDENTITY = TrainAugment(max_side=100_000, scale_choices=(1.0,), flip=False)


def _one_image_set(box, height=64, width=64, ignore=False) -> TrainingSet:
    boxes = np.array([box], dtype=np.float32)
    image = AnnotatedImage("one.jpg", height, width, boxes, np.array([ignore]))
    return TrainingSet("test", Path("."), "train", [image])


def _counts(stats, name):
    return {k: stats.designs[name][k].tolist() for k in (
        "anchors", "positives", "negatives", "ignored", "sampled_positives",
        "sampled_negatives", "faces", "faces_unmatched",
    )}


# --------------------------------------------------------------------------- hand-computed


def test_single_face_exact_counts_per_design():
    # A 64x64 image (already a multiple of 32, so no padding) with one 32x32 face centred at
    # (32, 32). Anchors are squares centred at ((c + .5) * stride, (r + .5) * stride).
    # For two squares of side 32 whose centres differ by (dx, dy):
    # IoU = (32-dx)(32-dy) / (2048 - (32-dx)(32-dy)).
    # Anchors of side 16 or 64 reach at most 256/1024 = 1024/4096 = 0.25 (< 0.4): negative.
    designs = [get_design(n, group_size=8) for n in PAPER_DESIGNS]
    stats = count_anchor_stats(
        _one_image_set([16, 16, 48, 48]), designs, augment=IDENTITY, workers=0
    )
    # rpn, stride 16: centres 8, 24, 40, 56; the best scale-32 anchor is off by (8, 8):
    # 24*24 / (2048 - 576) = 0.391 < 0.4, so every anchor is negative and pass 2 finds no
    # anchor with IoU >= 0.4: the face is unmatched. 16 anchors per scale.
    rpn = _counts(stats, "rpn")
    assert rpn["anchors"] == [16, 16, 16, 16]
    assert rpn["positives"] == [0, 0, 0, 0]
    assert rpn["negatives"] == [16, 16, 16, 16]
    assert rpn["ignored"] == [0, 0, 0, 0]
    assert rpn["faces"] == [0, 1, 0, 0]  # sqrt(32 * 32) = 32 -> the 32 bucket
    assert rpn["faces_unmatched"] == [0, 1, 0, 0]
    assert stats.designs["rpn"].recall_ceiling == 0.0
    # Random 1:3 of 8 * 4 = 32 samples: no positive to draw, 32 of the 64 negatives.
    assert rpn["sampled_positives"] == [0, 0, 0, 0]
    assert sum(rpn["sampled_negatives"]) == 32

    # fpn: strides 4/8/16/32 -> 16x16, 8x8, 4x4, 2x2 anchors. Scale 32 at stride 8: centres
    # 28 and 36 are off by 4: 28*28 / (2048 - 784) = 0.620 >= 0.6 -> 4 positives; off by
    # (4, 12): 28*20 / (2048 - 560) = 0.376 -> negative. No ignored anchor.
    for name in ("fpn", "fpn-finest-stride"):
        c = _counts(stats, name)
        assert c["anchors"] == [256, 64, 16, 4]
        assert c["positives"] == [0, 4, 0, 0]
        assert c["negatives"] == [256, 60, 16, 4]
        assert c["ignored"] == [0, 0, 0, 0]
        assert c["faces_unmatched"] == [0, 0, 0, 0]
        # 32 samples: positives min(4, max(8, 32 - 336)) = 4, negatives 28.
        assert c["sampled_positives"] == [0, 4, 0, 0]
        assert sum(c["sampled_negatives"]) == 28

    # fpn-finest: stride 4 for every scale, 256 anchors each. Scale-32 centres 30, 34 are off
    # by 2 and 6, 10, 14 beyond. Positives: (2, 2) 900/1148 = .784 (4 anchors) and (2, 6)
    # 780/1268 = .615 (8). Ignored: (6, 6) 676/1372 = .493 (4) and (2, 10) 660/1388 = .476
    # (8). Negative: (6, 10) 572/1476 = .388 and everything further.
    for name in ("fpn-finest", "fpn-finest-sampling"):
        c = _counts(stats, name)
        assert c["anchors"] == [256, 256, 256, 256]
        assert c["positives"] == [0, 12, 0, 0]
        assert c["ignored"] == [0, 12, 0, 0]
        assert c["negatives"] == [256, 232, 256, 256]
        assert c["faces"] == [0, 1, 0, 0]
        assert c["faces_unmatched"] == [0, 0, 0, 0]
    finest = _counts(stats, "fpn-finest")
    # Random: positives min(12, max(8, 32 - 1000)) = 8, negatives 24.
    assert finest["sampled_positives"] == [0, 8, 0, 0]
    assert sum(finest["sampled_negatives"]) == 24
    # Group sampling, N = 8 per scale: scale 32 takes min(12, max(2, 8 - 232)) = 2 positives
    # and 6 negatives; the other scales 8 negatives each.
    grouped = _counts(stats, "fpn-finest-sampling")
    assert grouped["sampled_positives"] == [0, 2, 0, 0]
    assert grouped["sampled_negatives"] == [8, 6, 8, 8]


def test_single_face_second_pass():
    # rpn, a 44x44 face centred on the grid point (24, 24): the scale-32 anchor there has
    # IoU 1024/1936 = .529 and the scale-64 one 1936/4096 = .473, both in [.4, .6): pass 1
    # gives no positive, pass 2 takes the best (scale 32). Their neighbours: scale 32 at
    # (40, 24) 704/2256 = .312; scale 64 at (40, 24) 1672/4360 = .383 -> negative.
    stats = count_anchor_stats(
        _one_image_set([2, 2, 46, 46]), ["rpn"], augment=IDENTITY, workers=0
    )
    c = _counts(stats, "rpn")
    assert c["positives"] == [0, 1, 0, 0]
    assert c["ignored"] == [0, 0, 1, 0]
    assert c["negatives"] == [16, 15, 15, 16]
    assert c["faces"] == [0, 1, 0, 0]  # sqrt(44 * 44) = 44 < sqrt(32 * 64) = 45.25
    assert c["faces_unmatched"] == [0, 0, 0, 0]


def test_ignored_face_is_not_counted_and_shadows_anchors():
    stats = count_anchor_stats(
        _one_image_set([16, 16, 48, 48], ignore=True), ["fpn-finest"], augment=IDENTITY
    )
    c = _counts(stats, "fpn-finest")
    # The 24 anchors with IoU >= .4 (12 + 12 above) are ignored, none positive.
    assert c["positives"] == [0, 0, 0, 0]
    assert c["ignored"] == [0, 24, 0, 0]
    assert c["faces"] == [0, 0, 0, 0]
    assert stats.designs["fpn-finest"].recall_ceiling is None


def test_face_buckets_and_ellipse_boxes():
    scales = (16, 32, 64, 128)
    sides = np.array([4, 16, 22.6, 22.7, 45, 46, 90, 91, 500], dtype=np.float64)
    boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], axis=1)
    # Edges sqrt(16*32) = 22.63, sqrt(32*64) = 45.25, sqrt(64*128) = 90.51.
    assert face_buckets(boxes, scales).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    # Axis-aligned ellipse a=20 (along x), b=10: box 40x20; rotated by pi/2: 20x40; the
    # part outside the 100x100 image is clipped.
    e = np.array([[20, 10, 0, 50, 50, 0], [20, 10, math.pi / 2, 50, 50, 0]])[:, :5]
    assert np.allclose(ellipse_boxes(e, 100, 100), [[30, 40, 70, 60], [40, 30, 60, 70]])
    assert np.allclose(ellipse_boxes(np.array([[20, 10, 0, 5, 50]]), 100, 100), [[0, 40, 25, 60]])


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("name", ["rpn", "fpn", "fpn-finest"])
def test_near_face_prefilter_equals_full_matching(name):
    design = get_design(name)
    rng = np.random.default_rng(7)
    for trial in range(8):
        height, width = int(rng.integers(40, 240)), int(rng.integers(40, 240))
        n = int(rng.integers(0, 40))
        xy = rng.uniform(-20, [width, height], size=(n, 2))
        wh = np.exp(rng.uniform(np.log(2), np.log(200), size=(n, 2)))
        faces = torch.tensor(np.concatenate([xy, xy + wh], axis=1), dtype=torch.float32)
        ignore = torch.from_numpy(rng.random(n) < 0.2)
        got = label_anchors(design, height, width, faces, ignore)
        anchors, scale_ids = anchors_for(design, height, width)
        labels, matched = match_anchors(
            anchors, faces, design.pos_iou, design.neg_iou, ignore
        )
        assert torch.equal(got.labels, labels), (name, trial)
        assert torch.equal(got.matched, matched), (name, trial)
        assert torch.equal(got.scale_ids, scale_ids)


def _random_set(num_images: int, seed: int) -> TrainingSet:
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        h, w = int(rng.integers(100, 300)), int(rng.integers(100, 300))
        n = int(rng.integers(0, 15))
        xy = rng.uniform(0, [w * 0.8, h * 0.8], size=(n, 2))
        wh = np.exp(rng.uniform(np.log(4), np.log(150), size=(n, 2)))
        boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], axis=1).astype(np.float32)
        images.append(AnnotatedImage(f"{i}.jpg", h, w, boxes, rng.random(n) < 0.1))
    return TrainingSet("random", Path("."), "train", images)


def test_counts_do_not_depend_on_workers_or_chunks_and_seed_matters():
    data = _random_set(6, seed=3)
    designs = ["rpn", "fpn-finest-sampling"]
    a = count_anchor_stats(data, designs, epochs=2, seed=5, workers=0, chunk=16)
    b = count_anchor_stats(data, designs, epochs=2, seed=5, workers=2, chunk=3)
    c = count_anchor_stats(data, designs, epochs=2, seed=6, workers=0)
    for name in designs:
        assert np.array_equal(a.designs[name].counts, b.designs[name].counts)
    assert not np.array_equal(a.designs["rpn"].counts, c.designs["rpn"].counts)
    # Two epochs count every image twice.
    one = count_anchor_stats(data, designs, epochs=1, seed=5)
    assert a.designs["rpn"]["anchors"].sum() > one.designs["rpn"]["anchors"].sum()


def test_augmentation_crop_bounds_the_anchor_grid():
    data = _random_set(6, seed=4)
    stats = count_anchor_stats(data, ["fpn-finest"], augment=TrainAugment(max_side=64))
    # Every augmented image is at most 64 x 64: at most (64 / 4)^2 anchors per scale.
    assert (stats.designs["fpn-finest"]["anchors"] <= 6 * 16 * 16).all()
    full = count_anchor_stats(data, ["fpn-finest"], augment=IDENTITY)
    padded = sum(math.ceil(im.height / 32) * math.ceil(im.width / 32) * 64 for im in data.images)
    assert full.designs["fpn-finest"]["anchors"].tolist() == [padded] * 4


def test_ohem_and_unknown_designs_are_rejected():
    data = _random_set(1, seed=0)
    with pytest.raises(FacebenchError, match="OHEM"):
        count_anchor_stats(data, ["fpn-finest-ohem"])
    with pytest.raises(FacebenchError, match="unknown design"):
        count_anchor_stats(data, ["fpn-coarsest"])
    # Focal loss trains on every labelled anchor.
    stats = count_anchor_stats(data, ["fpn-finest-focal"])
    s = stats.designs["fpn-finest-focal"]
    assert np.array_equal(s["sampled_negatives"], s["negatives"])
    assert np.array_equal(s["sampled_positives"], s["positives"])


# --------------------------------------------------------------------------- data layouts


def _write_wider(root, with_sizes_csv=True):
    split = root / "wider_face_split"
    split.mkdir(parents=True)
    (split / "wider_face_train_bbx_gt.txt").write_text(
        "0--Parade/a.jpg\n1\n16 16 32 32 0 0 0 0 0 0 \n"
        "0--Parade/b.jpg\n2\n0 0 0 0 0 0 0 0 0 0 \n10 10 40 40 0 0 0 1 0 0 \n"
        "1--Handshaking/c.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
    )
    if with_sizes_csv:
        (root / "image_sizes.csv").write_text(
            "name,width,height\n0--Parade/a.jpg,64,64\nb,100,80\n1--Handshaking/c,50,60\n"
        )


def test_wider_split_with_csv_sizes(tmp_path):
    _write_wider(tmp_path)
    data = open_training_set(tmp_path)
    assert data.kind == "wider (sizes from CSV)"
    assert [(im.name, im.height, im.width) for im in data.images] == [
        ("0--Parade/a.jpg", 64, 64), ("0--Parade/b.jpg", 80, 100),
        ("1--Handshaking/c.jpg", 60, 50),
    ]
    assert data.images[0].boxes.tolist() == [[16, 16, 48, 48]]
    # The zero-area box is dropped, the invalid face becomes an ignore region.
    assert data.images[1].boxes.tolist() == [[10, 10, 50, 50]]
    assert data.images[1].ignore.tolist() == [True]
    assert len(data.images[2].boxes) == 0


def test_missing_sizes_and_unknown_layout_are_clear_errors(tmp_path):
    _write_wider(tmp_path / "w", with_sizes_csv=False)
    with pytest.raises(FacebenchError, match="no image sizes"):
        open_training_set(tmp_path / "w")
    (tmp_path / "w" / "image_sizes.csv").write_text("name,width,height\na,64,64\n")
    with pytest.raises(FacebenchError, match=r"no size for image '0--Parade/b\.jpg'"):
        open_training_set(tmp_path / "w")
    with pytest.raises(FacebenchError, match="not a WIDER FACE layout"):
        open_training_set(tmp_path)
    with pytest.raises(FacebenchError, match="splits here: train"):
        open_training_set(tmp_path / "w", split="val")


@pytest.fixture(scope="module")
def wider_train(shared_data):
    return open_training_set(shared_data / "widerface")


def test_real_wider_train_split_with_voc_sizes(wider_train):
    assert wider_train.kind == "wider (sizes from VOC XML)"
    assert len(wider_train.images) == 12_880
    # 159,424 official rows = 159,420 faces + 4 placeholder rows of face-less images; of the
    # faces, 159,393 have positive width and height (counted with awk on the split file),
    # the others are dropped as the training data drops them.
    assert wider_train.num_faces == 159_393
    sizes = {im.name: (im.width, im.height) for im in wider_train.images}
    # From voc_xml/WIDER_train_annotations/0_Parade_Parade_0_1014.xml.
    assert sizes["0--Parade/0_Parade_Parade_0_1014.jpg"] == (1024, 732)


def test_real_fddb_layout(shared_data):
    data = open_training_set(shared_data / "fddb")
    assert data.kind == "fddb (sizes from CSV)"
    assert len(data.images) == 2845
    # Every one of FDDB's 5,171 ellipses keeps a box of positive area after clipping, even
    # the degenerate "1 1 0 0 0" one (a 1 x 1 box at the corner).
    assert data.num_faces == 5171
    for im in data.images[:50]:
        assert (im.boxes[:, 2] <= im.width).all() and (im.boxes[:, 3] <= im.height).all()


def test_synthetic_layout_and_cli_outputs(tmp_path):
    from facebench.synth import generate

    generate(tmp_path / "synth", num_images=12, seed=1, max_side=128, workers=0)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "stats", "anchors", str(tmp_path / "synth"), "--designs", "rpn,fpn-finest-sampling",
        "--workers", "0", "--epochs", "2", "--group-size", "16", "--json", str(out / "s.json"),
        "--csv", str(out / "s.csv"), "--plot", str(out / "s.png"),
    ])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "s.json").read_text())
    assert report["source"]["kind"].startswith("synthetic")
    assert report["epochs"] == 2
    for name in ("rpn", "fpn-finest-sampling"):
        d = report["designs"][name]
        assert d["scales"] == [16, 32, 64, 128]
        for key in ("anchors", "positives", "negatives", "sampled_positives",
                    "sampled_negatives", "faces", "faces_unmatched"):
            assert len(d[key]) == 4 and all(isinstance(v, int) for v in d[key])
        shares = d["normalised"]["positives"] + d["normalised"]["negatives"]
        assert sum(shares) == pytest.approx(1.0)
        if sum(d["sampled_positives"]):
            assert sum(d["distribution"]["positives"]) == pytest.approx(1.0)
        assert sum(d["distribution"]["negatives"]) == pytest.approx(1.0)
        assert d["group_size"] == 16
    # 2 training images x 2 epochs, at most N = 16 samples per scale each.
    assert report["images"] == 2
    grouped = report["designs"]["fpn-finest-sampling"]
    totals = np.add(grouped["sampled_positives"], grouped["sampled_negatives"])
    assert totals.max() <= 2 * 2 * 16 and totals.min() > 0
    rows = (out / "s.csv").read_text().splitlines()
    assert rows[0].startswith("design,scale,stride,anchors,positives,negatives")
    assert len(rows) == 1 + 2 * 4
    assert (out / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["stats", "anchors", str(tmp_path)])
    assert result.exit_code == 2 and "not a WIDER FACE layout" in result.output
    _write_wider(tmp_path / "w")
    result = runner.invoke(main, ["stats", "anchors", str(tmp_path / "w"), "--designs", "nope"])
    assert result.exit_code == 2 and "unknown design 'nope'" in result.output
    result = runner.invoke(main, ["stats", "anchors", str(tmp_path / "w"), "--plot", "x.jpg"])
    assert result.exit_code == 2 and "PNG" in result.output


# --------------------------------------------------------------------------- paper shapes


def test_paper_figure2_shapes_on_real_wider_subset(wider_train):
    # Every 129th image: 100 images from all 61 events (the first ones are all parades).
    subset = dataclasses.replace(wider_train, images=wider_train.images[::129])
    assert len(subset.images) == 100
    stats = count_anchor_stats(subset, PAPER_DESIGNS, seed=0, workers=2)
    s = stats.designs

    def share_of_large_positives(name):
        pos = s[name]["sampled_positives"]
        return pos[2:].sum() / pos.sum()

    def samples(name):
        return s[name]["sampled_positives"] + s[name]["sampled_negatives"]

    # Same anchors and thresholds -> same matching; same sampler too -> same samples.
    assert np.array_equal(s["fpn"].counts, s["fpn-finest-stride"].counts)
    for key in ("anchors", "positives", "negatives", "ignored"):
        assert np.array_equal(s["fpn-finest"][key], s["fpn-finest-sampling"][key])

    # (a), (d): rpn and fpn-finest give more positives to large scales than (b), (c) do.
    for many in ("rpn", "fpn-finest"):
        for few in ("fpn", "fpn-finest-stride"):
            assert share_of_large_positives(many) > 1.5 * share_of_large_positives(few)
    assert s["fpn-finest"]["positives"][3] > s["fpn-finest"]["positives"][0]
    # rpn: a large face gets far more positives than a small one.
    per_face = s["rpn"]["positives"] / np.maximum(s["rpn"]["faces"], 1)
    assert per_face[3] > 5 * per_face[0]

    # (b), (c): far more samples at small scales, falling with every scale.
    for name in ("fpn", "fpn-finest-stride"):
        n = samples(name)
        assert (np.diff(n) < 0).all() and n[0] > 10 * n[3]

    # (e): group sampling, equal totals per scale (N = 2048 per scale per image).
    n = samples("fpn-finest-sampling")
    assert (n == n[0]).all() and n[0] == 100 * 2048
    # fpn-finest's random draw, by contrast, follows the anchors' labels, not the scales.
    assert not (samples("fpn-finest") == samples("fpn-finest")[0]).all()
