"""Losses and the box coder: hand-computed values and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.boxes import BoxCoder, box_iou, elementwise_iou
from detector.losses import (
    RegressionLoss,
    focal_loss,
    iou_squared_loss,
    neg_log_iou_loss,
    smooth_l1_loss,
    softmax_cross_entropy,
)

# sides 4..150: size ratios stay below the decoder's clamp exp(ln(1000/16)) = 62.5
box = st.tuples(
    st.floats(-50, 200), st.floats(-50, 200), st.floats(4, 150), st.floats(4, 150)
).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


def test_hand_computed_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10]])  # IoU 50 / 150
    assert box_iou(a, b).item() == pytest.approx(1 / 3)
    assert iou_squared_loss(a, b).item() == pytest.approx((2 / 3) ** 2, rel=1e-5)
    assert neg_log_iou_loss(a, b).item() == pytest.approx(math.log(3), rel=1e-5)
    # smooth-L1 (beta 1/9): |0.5| -> 0.5 - 1/18, |0.05| -> 0.5 * 0.05^2 * 9
    d = smooth_l1_loss(torch.tensor([[0.5, 0.05, 0, 0]]), torch.zeros(1, 4))
    assert d.item() == pytest.approx(0.5 - 1 / 18 + 0.5 * 0.05**2 * 9, rel=1e-5)
    # softmax CE and focal at p = 0.5
    logits = torch.zeros(2, 2)
    labels = torch.tensor([1, 0])
    assert softmax_cross_entropy(logits, labels).tolist() == pytest.approx([math.log(2)] * 2)
    fl = focal_loss(logits, labels, alpha=0.25, gamma=2.0)
    assert fl.tolist() == pytest.approx([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)])
    # gamma 0 and alpha 0.5 is half the cross-entropy
    z = torch.randn(7, 2)
    y = torch.randint(0, 2, (7,))
    assert torch.allclose(focal_loss(z, y, 0.5, 0.0), 0.5 * softmax_cross_entropy(z, y))


@settings(max_examples=80, deadline=None)
@given(box, box)
def test_coder_round_trip_and_zero_at_perfect_boxes(anchor, face):
    anchors = torch.tensor([anchor])
    faces = torch.tensor([face])
    coder = BoxCoder()
    deltas = coder.encode(anchors, faces)
    assert torch.allclose(coder.decode(deltas, anchors), faces, atol=1e-3, rtol=1e-4)
    for kind in RegressionLoss.KINDS:
        assert RegressionLoss(kind)(deltas, anchors, faces).item() == pytest.approx(0, abs=1e-4)


@settings(max_examples=80, deadline=None)
@given(box, box, st.lists(st.floats(-20, 20), min_size=4, max_size=4))
def test_gradients_finite(anchor, face, raw):
    anchors = torch.tensor([anchor])
    faces = torch.tensor([face])
    for kind in RegressionLoss.KINDS:
        deltas = torch.tensor([raw], requires_grad=True)
        loss = RegressionLoss(kind)(deltas, anchors, faces)
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(deltas.grad).all()


def test_iou_squared_gradient_vanishes_at_iou_one_but_neg_log_iou_does_not():
    anchors = torch.tensor([[10.0, 20, 42, 52], [0, 0, 16, 16]])
    faces = torch.tensor([[12.0, 18, 40, 60], [1, 2, 15, 19]])
    coder = BoxCoder()
    perfect = coder.encode(anchors, faces)
    deltas = perfect.clone().requires_grad_(True)
    RegressionLoss("iou_squared", coder)(deltas, anchors, faces).sum().backward()
    assert torch.count_nonzero(deltas.grad) == 0
    # Near the optimum, d(1-IoU)^2 = 2 (1-IoU) IoU * d(-ln IoU): the paper's loss fades
    # as IoU -> 1 while -ln(IoU) keeps pushing (section 5).
    near = perfect + torch.tensor([[0.02, -0.01, 0.03, 0.0], [0.0, 0.02, -0.02, 0.01]])
    grads = {}
    for kind in ("iou_squared", "neg_log_iou"):
        d = near.clone().requires_grad_(True)
        RegressionLoss(kind, coder)(d, anchors, faces).sum().backward()
        grads[kind] = d.grad
    iou = elementwise_iou(coder.decode(near, anchors), faces)
    expected = (2 * (1 - iou) * iou)[:, None] * grads["neg_log_iou"]
    assert torch.allclose(grads["iou_squared"], expected, atol=1e-6)
    assert grads["neg_log_iou"].abs().max() > 0.1


def test_elementwise_iou_matches_pairwise_diagonal():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    a = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 50 + 1], 1)
    b = a + torch.randn(50, 4, generator=g) * 5
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    assert torch.allclose(elementwise_iou(a, b, eps=0), box_iou(a, b).diagonal(), atol=1e-6)


def test_decode_clamps_size_deltas():
    anchors = torch.tensor([[0.0, 0, 16, 16]])
    boxes = BoxCoder().decode(torch.tensor([[0.0, 0, 100, 100]]), anchors)
    assert torch.isfinite(boxes).all()
    assert (boxes[0, 2] - boxes[0, 0]).item() == pytest.approx(1000, rel=1e-4)


# ---- focal loss normalisation (issue 12) ------------------------------------------------


def _two_image_batch():
    """Six disjoint 16 px anchors; image A's face is anchor 0 (1 positive, 5 negatives),
    image B's faces are anchors 1..3 (3 positives, 3 negatives). Zero logits: p = 0.5."""
    anchors = torch.tensor([[32.0 * k, 0, 32.0 * k + 16, 16] for k in range(6)])
    scale_ids = torch.zeros(6, dtype=torch.int64)
    targets = [{"boxes": anchors[:1].clone()}, {"boxes": anchors[1:4].clone()}]
    return anchors, scale_ids, targets


@pytest.mark.parametrize("design, expected", [
    # By hand: with p = 0.5 a positive costs 0.25 * 0.5^2 * ln 2, a negative 0.75 * 0.5^2 * ln 2.
    # Batch rule (RetinaNet): (A: 1 pos + 5 neg, B: 3 pos + 3 neg) summed, over 4 positives.
    ("fpn-finest-focal", (4 * 0.0625 + 8 * 0.1875) * math.log(2) / 4),
    # Per-image rule: A's sum over its 1 positive, B's over its 3, averaged over 2 images.
    ("fpn-finest-focal-per-image",
     ((0.0625 + 5 * 0.1875) / 1 + (3 * 0.0625 + 3 * 0.1875) / 3) * math.log(2) / 2),
])
def test_focal_normalisation_by_hand_on_two_images(design, expected):
    from detector.model import build_detector

    model = build_detector(design, backbone="tiny")
    anchors, scale_ids, targets = _two_image_batch()
    targets = model._check_targets(targets, 2, torch.device("cpu"))
    logits = torch.zeros(2, 6, 2)
    deltas = torch.zeros(2, 6, 4)
    losses = model._dense_losses(logits, deltas, anchors, scale_ids, targets)
    assert model.last_stats["sampled_total_positives"] == 4
    assert float(losses["loss_cls"]) == pytest.approx(expected, rel=1e-5)


def test_training_step_uses_the_designs_focal_rule():
    """One optimisation step in micro-batches of one image (the training default): the
    logged classification loss follows the design's rule, computed from each image's focal
    sum and positive count (the batch's sum over the batch's positives, or the mean of the
    per-image ratios)."""
    from detector.model import build_detector
    from detector.train import DistContext, TrainConfig, _Stepper

    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 64, 64, generator=g) * 255).to(torch.uint8)
    samples = [
        {"image": image, "boxes": torch.tensor([[8.0, 8, 24, 24]]),
         "ignore": torch.zeros(1, dtype=torch.bool), "seed": 1},
        {"image": image.flip(2), "boxes": torch.tensor([[4.0, 4, 60, 60], [30, 30, 46, 46],
                                                        [8, 40, 24, 56]]),
         "ignore": torch.zeros(3, dtype=torch.bool), "seed": 2},
    ]
    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    logged = {}
    for design in ("fpn-finest-focal", "fpn-finest-focal-per-image"):
        torch.manual_seed(0)
        model = build_detector(design, backbone="tiny")
        with torch.no_grad():  # P(face) = 0.5 everywhere: negatives weigh, the rules differ
            for conv in model.head.classifiers:
                conv.weight.zero_()
                conv.bias.zero_()
        cfg = TrainConfig(data="-", out="-", design=design, batch_size=2, micro_batch=1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        values = _Stepper(model, model, optimizer, scaler, ctx, cfg, False)(samples)
        model.train()
        sums, positives = [], []
        with torch.no_grad():
            for s in samples:
                # One image alone: both rules give its focal sum over its positives.
                loss = float(model(s["image"][None].float() / 255,
                                   [{"boxes": s["boxes"], "ignore": s["ignore"]}])["loss_cls"])
                positives.append(model.last_stats["sampled_total_positives"])
                sums.append(loss * max(positives[-1], 1))
        assert positives[0] != positives[1]
        if design == "fpn-finest-focal":
            expected = sum(sums) / sum(positives)
        else:
            expected = sum(t / max(p, 1) for t, p in zip(sums, positives, strict=True)) / 2
        assert values["loss_cls"] == pytest.approx(expected, rel=1e-4)
        logged[design] = values["loss_cls"]
    # The two rules give different losses on this batch (1 vs 3+ positives per image).
    assert logged["fpn-finest-focal"] != pytest.approx(logged["fpn-finest-focal-per-image"],
                                                       rel=1e-3)
