"""Training data: WIDER layout records (invalid faces ignored), per-sample determinism."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector.augment import TrainAugment
from detector.data import (
    FaceDataset,
    pad_batch,
    resolve_wider_root,
    sample_seed,
    training_set,
    wider_records,
)
from facebench.errors import FacebenchError


def _make_wider(root: Path) -> None:
    images = root / "WIDER_train" / "images" / "0--Parade"
    images.mkdir(parents=True)
    for stem, (h, w) in {"a": (60, 80), "b": (50, 40)}.items():
        cv2.imwrite(str(images / f"{stem}.jpg"), np.full((h, w, 3), 128, np.uint8))
    split = root / "wider_face_split"
    split.mkdir()
    (split / "wider_face_train_bbx_gt.txt").write_text(
        "0--Parade/a.jpg\n3\n"
        "10 20 30 15 0 0 0 0 0 0 \n"
        "50 5 10 10 0 0 0 1 0 0 \n"  # invalid: ignore region
        "5 5 0 7 0 0 0 0 0 0 \n"  # zero width: dropped
        "0--Parade/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n"
    )


def test_wider_records_hand_made(tmp_path):
    _make_wider(tmp_path)
    records = wider_records(tmp_path, "train")
    assert [r.path.name for r in records] == ["a.jpg", "b.jpg"]
    np.testing.assert_allclose(records[0].boxes, [[10, 20, 40, 35], [50, 5, 60, 15]])
    assert records[0].ignore.tolist() == [False, True]
    assert records[1].boxes.shape == (0, 4)


def test_synthetic_root_is_resolved(tmp_path):
    _make_wider(tmp_path / "widerface")
    assert resolve_wider_root(tmp_path) == tmp_path / "widerface"
    assert len(training_set(tmp_path)) == 2


def test_real_wider_split_counts(shared_data):
    root = shared_data / "widerface_val_416"
    records = wider_records(root, "val")
    assert len(records) == 200
    # README: 4,372 boxes of which 4,333 valid -> 39 ignore regions; boxes without area
    # (w or h <= 0) are counted here straight from the text file.
    lines = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().split("\n")
    degenerate = sum(
        1 for ln in lines
        if len(ln.split()) == 10 and (float(ln.split()[2]) <= 0 or float(ln.split()[3]) <= 0)
    )
    assert sum(len(r.boxes) for r in records) == 4372 - degenerate
    assert sum(int(r.ignore.sum()) for r in records) == 39
    assert all((r.boxes[:, 2:] > r.boxes[:, :2]).all() for r in records)


def test_samples_are_a_function_of_seed_epoch_index(tmp_path):
    _make_wider(tmp_path)
    ds = training_set(tmp_path, augment=TrainAugment(max_side=64), seed=7)
    a = ds[0]
    b = ds[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
    assert a["image"].dtype == torch.uint8 and a["image"].shape[0] == 3
    assert max(a["image"].shape[1:]) <= 64
    _, h, w = a["image"].shape
    assert (a["boxes"][:, 2] <= w).all() and (a["boxes"][:, 3] <= h).all()
    assert a["seed"] == sample_seed(7, 0, 0)
    seeds = {sample_seed(7, e, i) for e in range(5) for i in range(5)}
    assert len(seeds) == 25


def test_missing_image_is_a_clear_error(tmp_path):
    _make_wider(tmp_path)
    (tmp_path / "WIDER_train" / "images" / "0--Parade" / "b.jpg").unlink()
    ds = training_set(tmp_path, augment=TrainAugment())
    with pytest.raises(FacebenchError, match=r"b\.jpg"):
        ds[1]
    with pytest.raises(FacebenchError, match="annotation file not found"):
        wider_records(tmp_path / "nowhere")


def test_unaugmented_dataset_returns_the_file_as_is(tmp_path):
    _make_wider(tmp_path)
    ds = FaceDataset(wider_records(tmp_path), augment=None)
    assert tuple(ds[0]["image"].shape) == (3, 60, 80)


def test_pad_batch():
    samples = [
        {"image": torch.ones((3, 4, 6), dtype=torch.uint8), "boxes": torch.zeros((1, 4)),
         "ignore": torch.zeros(1, dtype=torch.bool)},
        {"image": torch.full((3, 5, 2), 2, dtype=torch.uint8), "boxes": torch.zeros((0, 4)),
         "ignore": torch.zeros(0, dtype=torch.bool)},
    ]
    images, targets = pad_batch(samples)
    assert images.shape == (2, 3, 5, 6)
    assert images[0, :, 4].sum() == 0 and images[1, :, :, 2:].sum() == 0
    assert images[1, :, :5, :2].eq(2).all()
    assert [t["boxes"].shape[0] for t in targets] == [1, 0]
