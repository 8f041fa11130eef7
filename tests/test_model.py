"""The detector end to end on the tiny backbone: every design trains and detects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detector.anchors import anchors_for, padded_size
from detector.backbones import build_backbone
from detector.designs import DESIGNS
from detector.matching import match_anchors
from detector.model import build_detector
from facebench.errors import FacebenchError, FormatError

IMAGES = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
TARGETS = [
    {"boxes": torch.tensor([[8.0, 8, 28, 30], [40, 10, 90, 60], [60, 40, 70, 50]]),
     "ignore": torch.tensor([False, False, True])},
    {"boxes": torch.zeros((0, 4))},
]


@pytest.mark.parametrize("name", list(DESIGNS))
def test_every_design_trains_and_detects(name):
    torch.manual_seed(0)
    model = build_detector(name, backbone="tiny", group_size=64)
    losses = model(IMAGES, TARGETS)
    expected = {"loss_cls", "loss_reg"} | (
        {"loss_roi_cls", "loss_roi_reg"} if DESIGNS[name].second_stage else set()
    )
    assert set(losses) == expected
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    stats = model.last_stats
    assert len(stats["sampled_positives"]) == len(stats["sampled_negatives"]) == 4
    assert all(isinstance(v, int) for v in stats["positives"])

    model.eval()
    model.max_detections = 7
    dets = model(IMAGES)
    assert len(dets) == 2
    for det in dets:
        boxes, scores, sids = det["boxes"], det["scores"], det["scale_ids"]
        assert boxes.dtype == torch.float32 and sids.dtype == torch.int64
        assert boxes.shape == (len(scores), 4) and len(sids) == len(scores) <= 7
        assert bool((scores > model.score_thresh).all())
        assert bool((scores[:-1] >= scores[1:]).all())
        assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 96).all())
        assert bool((boxes[:, 3] <= 64).all() and (sids >= 0).all() and (sids < 4).all())


class _CoordinateTrunk(nn.Module):
    """Replaces the head trunk: channel 0/1 = x/y of each cell centre in input pixels."""

    def __init__(self, padded_width: int, channels: int) -> None:
        super().__init__()
        self.padded_width = padded_width
        self.channels = channels

    def forward(self, x):
        b, _, h, w = x.shape
        stride = self.padded_width / w
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
        out = torch.zeros(b, self.channels, h, w)
        out[:, 0] = xs[None, :]
        out[:, 1] = ys[:, None]
        return out


@pytest.mark.parametrize("name", ["rpn", "fpn", "fpn-finest-stride", "fpn-finest-sampling"])
def test_head_output_order_matches_anchor_order(name):
    model = build_detector(name, backbone="tiny")
    channels = model.head.classifiers[0].in_channels
    model.head.trunk = _CoordinateTrunk(padded_size(80, 100)[1], channels)
    for reg in model.head.regressors:
        reg.weight.data.zero_()
        reg.bias.data.zero_()
        reg.weight.data[0, 0] = 1.0
        reg.weight.data[1, 1] = 1.0
    images = torch.rand(1, 3, 80, 100)
    _, deltas = model.head(model._features(images))
    anchors, _ = anchors_for(name, 80, 100)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert deltas.shape[1] == len(anchors)
    assert torch.equal(deltas[0, :, :2], centres)


def test_stats_follow_matching_and_group_quota():
    model = build_detector("fpn-finest-sampling", backbone="tiny", group_size=32)
    model(IMAGES[:1], TARGETS[:1])
    anchors, scale_ids = anchors_for("fpn-finest-sampling", 64, 96)
    labels, _ = match_anchors(anchors, TARGETS[0]["boxes"], gt_ignore=TARGETS[0]["ignore"])
    stats = model.last_stats
    for s in range(4):
        pos = int(((labels == 1) & (scale_ids == s)).sum())
        neg = int(((labels == 0) & (scale_ids == s)).sum())
        assert stats["positives"][s] == pos and stats["negatives"][s] == neg
        assert stats["sampled_positives"][s] == min(pos, 8)
        assert stats["sampled_positives"][s] + stats["sampled_negatives"][s] == min(32, pos + neg)
    assert stats["faces"] == 2 and stats["faces_matched"] == 2


def test_overfits_one_image():
    torch.manual_seed(0)
    model = build_detector("fpn-finest-sampling", backbone="tiny", group_size=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    image, target = IMAGES[:1], [{"boxes": TARGETS[0]["boxes"][:2]}]
    first = None
    for _ in range(40):
        loss = sum(model(image, target).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


def test_bad_inputs_are_clear():
    model = build_detector("fpn", backbone="tiny")
    with pytest.raises(FacebenchError, match="float"):
        model((IMAGES * 255).to(torch.uint8), TARGETS)
    with pytest.raises(FacebenchError, match="needs targets"):
        model(IMAGES)
    with pytest.raises(FacebenchError, match="valid backbones"):
        build_detector("fpn", backbone="resnet34")
    with pytest.raises(FacebenchError, match="valid designs"):
        build_detector("fpn-fines", backbone="tiny")


def test_backbone_weights_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FacebenchError, match="not found"):
        build_backbone("resnet18", missing)
    import torchvision  # a torchvision-style checkpoint, fc.* included

    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    loaded = build_backbone("resnet18", tmp_path / "r18.pth")
    assert torch.equal(loaded.stem[0].weight, net.conv1.weight)
    assert not loaded.stem[0].weight.requires_grad  # stem frozen with pretrained weights
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(FormatError, match="does not fit a resnet18"):
        build_backbone("resnet18", tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(FormatError, match=r"junk\.pth: not a torch state-dict"):
        build_backbone("resnet18", tmp_path / "junk.pth")


def test_resnet18_forward_backward_small():
    model = build_detector("fpn-finest-sampling", backbone="resnet18", group_size=32)
    losses = model(IMAGES[:1], TARGETS[:1])
    sum(losses.values()).backward()
    assert model.backbone.stages[0][0].conv1.weight.grad is not None
