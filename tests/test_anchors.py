"""Anchors: hand-checked counts, centres, scale ids and the design registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from detector.anchors import anchors_for, padded_size, scale_counts
from detector.designs import DESIGNS, Design, get_design
from facebench.errors import FacebenchError


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("rpn", [1600] * 4),
        ("fpn", [25600, 6400, 1600, 400]),
        ("fpn-finest-stride", [25600, 6400, 1600, 400]),
        ("fpn-finest", [25600] * 4),
        ("fpn-finest-sampling", [25600] * 4),
    ],
)
def test_counts_for_640(name, counts):
    boxes, ids = anchors_for(name, 640, 640)
    assert boxes.shape == (sum(counts), 4)
    assert boxes.dtype == torch.float32 and ids.dtype == torch.int64
    assert torch.bincount(ids).tolist() == counts
    # scale-major: ids never decrease
    assert bool((ids[1:] >= ids[:-1]).all())


def test_first_anchors_are_cell_centred_squares():
    boxes, ids = anchors_for("fpn", 64, 96)
    # scale 16 stride 4: first cell centre (2, 2), second (6, 2) (row-major: x moves first)
    assert boxes[0].tolist() == [-6.0, -6.0, 10.0, 10.0]
    assert boxes[1].tolist() == [-2.0, -6.0, 14.0, 10.0]
    # row 1 of the 24-column grid starts at index 24, centre (2, 6)
    assert boxes[24].tolist() == [-6.0, -2.0, 10.0, 14.0]
    # scale 128 stride 32 block is last: 2 x 3 cells, centres (16, 16) ... (80, 48)
    last = boxes[ids == 3]
    assert last.shape == (6, 4)
    assert last[0].tolist() == [-48.0, -48.0, 80.0, 80.0]
    assert last[-1].tolist() == [16.0, -16.0, 144.0, 112.0]


def test_side_equals_scale_and_padding():
    design = get_design("fpn-finest")
    boxes, ids = anchors_for(design, 100, 70)
    assert padded_size(100, 70) == (128, 96)
    sides = boxes[:, 2] - boxes[:, 0]
    assert torch.equal(sides, torch.tensor(design.scales, dtype=torch.float32)[ids])
    assert scale_counts(design, 100, 70) == [32 * 24] * 4


def test_registry_contract():
    for name, design in DESIGNS.items():
        assert design.name == name
        assert list(design.scales) == sorted(design.scales)
        assert len(design.strides) == len(design.levels) == len(design.scales)
    assert get_design("fpn-finest-sampling").sampler == "group"
    assert get_design("fpn").feature_levels == ("P2", "P3", "P4", "P5")
    assert get_design("rpn").feature_levels == ("C4",)
    assert get_design("fpn-finest-stride").subsample(3) == 8
    changed = get_design("fpn-finest-sampling", regression_loss="smooth_l1", group_size=256)
    assert changed.regression_loss == "smooth_l1" and changed.group_size == 256
    assert DESIGNS["fpn-finest-sampling"].regression_loss == "iou_squared"
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.group_size = 3  # type: ignore[misc]


def test_bad_names_and_overrides_are_clear():
    with pytest.raises(FacebenchError, match="valid designs: rpn, fpn"):
        get_design("fpn-finest-samplin")
    with pytest.raises(FacebenchError, match="unknown design field"):
        get_design("fpn", group_sise=3)
    with pytest.raises(FacebenchError, match="regression_loss must be one of"):
        get_design("fpn", regression_loss="l2")
    with pytest.raises(FacebenchError, match="multiple of 8"):
        Design("x", "bad stride", levels=("P3",) * 4, strides=(4, 8, 8, 8))
