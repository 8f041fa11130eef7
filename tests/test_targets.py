"""detector.targets: every design's assignment is built from its data and equals matching
followed by the draw the design names."""

from __future__ import annotations

import pytest
import torch

from detector.anchors import anchors_for
from detector.designs import DESIGNS, SAMPLERS, get_design
from detector.matching import match_anchors
from detector.sampling import ohem_select, sample_random, sample_scale_groups
from detector.targets import (
    SAMPLER_BUILDERS,
    SECOND_STAGE_SAMPLER_BUILDERS,
    AllLabelledSampler,
    Assigner,
    OHEMSampler,
    RandomSampler,
    ScaleGroupSampler,
    assign,
    check_countable,
)
from facebench.errors import FacebenchError

FACES = torch.tensor([[10.0, 12.0, 40.0, 44.0], [60.0, 8.0, 124.0, 70.0], [5.0, 80.0, 21.0, 96.0]])
IGNORE = torch.tensor([False, False, True])


def test_every_sampler_name_has_a_builder():
    assert set(SAMPLER_BUILDERS) == set(SAMPLERS)
    second = {d.second_stage_sampler for d in DESIGNS.values()}
    assert second <= set(SECOND_STAGE_SAMPLER_BUILDERS)


@pytest.mark.parametrize(
    "name, kind, args",
    [
        ("fpn-finest-sampling", ScaleGroupSampler, (2048, 0.25)),
        ("fpn-finest", RandomSampler, (2048 * 4, 0.25)),
        ("fpn-finest-ohem", OHEMSampler, (1024,)),
        ("fpn-finest-focal", AllLabelledSampler, ()),
    ],
)
def test_samplers_follow_the_design(name, kind, args):
    sampler = Assigner.for_design(get_design(name)).sampler
    assert sampler == kind(*args)
    small = Assigner.for_design(get_design(name, group_size=8, positive_fraction=0.5)).sampler
    if kind is ScaleGroupSampler:
        assert small == ScaleGroupSampler(8, 0.5)
    if kind is RandomSampler:
        assert small == RandomSampler(32, 0.5)


@pytest.mark.parametrize("name", ["fpn-finest-sampling", "fpn-finest", "fpn-finest-focal", "fpn"])
def test_assign_is_matching_then_the_designs_draw(name):
    design = get_design(name, group_size=16)
    anchors, scale_ids = anchors_for(design, 128, 128)
    got = assign(design, anchors, scale_ids, FACES, IGNORE, torch.Generator().manual_seed(3))
    labels, matched = match_anchors(anchors, FACES, 0.6, 0.4, IGNORE)
    gen = torch.Generator().manual_seed(3)
    expected = {
        "group": lambda: sample_scale_groups(labels, scale_ids, 16, 0.25, gen),
        "random": lambda: sample_random(labels, 64, 0.25, gen),
        "none": lambda: labels >= 0,
    }[design.sampler]()
    assert torch.equal(got.labels, labels) and torch.equal(got.matched, matched)
    assert torch.equal(got.mask, expected)
    assert int(got.mask.sum()) > 0 and not bool((got.mask & (labels == -1)).any())


def test_ohem_ranks_by_the_given_loss():
    design = get_design("fpn-finest-ohem", ohem_batch=5)
    anchors, scale_ids = anchors_for(design, 64, 64)
    loss = torch.linspace(0, 1, len(anchors))
    seen = []

    def anchor_loss(labels, matched):
        seen.append((labels, matched))
        return loss

    got = assign(design, anchors, scale_ids, FACES[:1], None, anchor_loss=anchor_loss)
    labels, matched = match_anchors(anchors, FACES[:1])
    assert torch.equal(seen[0][0], labels) and torch.equal(seen[0][1], matched)
    assert torch.equal(got.mask, ohem_select(loss, labels, 5))
    assert int(got.mask.sum()) == 5
    with pytest.raises(ValueError, match="anchor_loss"):
        assign(design, anchors, scale_ids, FACES[:1])
    with pytest.raises(FacebenchError, match="OHEM"):
        check_countable(design)
    check_countable(get_design("fpn-finest-sampling"))  # no error


def test_second_stage_assignment():
    design = get_design("fpn-finest-sampling-frcnn")
    assigner = Assigner.for_second_stage(design)
    assert (assigner.pos_iou, assigner.neg_iou) == (0.5, 0.5)
    assert assigner.sampler == ScaleGroupSampler(64, 0.25)
    plain = Assigner.for_second_stage(get_design("fpn-finest-sampling-frcnn-plain"))
    assert plain.sampler == RandomSampler(256, 0.25)


def test_per_scale_counts():
    labels = torch.tensor([1, 0, -1, 0, 1, 0])
    scale_ids = torch.tensor([0, 0, 0, 1, 1, 1])
    mask = torch.tensor([True, False, False, True, False, True])
    t = Assigner.for_design(get_design("fpn-finest-sampling")).sample(
        labels, scale_ids, torch.full_like(labels, -1)
    )
    assert t.labels is labels
    counts = type(t)(labels, t.matched, mask).per_scale_counts(scale_ids, 2)
    # rows: positives, negatives, ignored, sampled positives, sampled negatives
    assert counts.tolist() == [[1, 1], [1, 2], [1, 0], [1, 0], [0, 2]]
