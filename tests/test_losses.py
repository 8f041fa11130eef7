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
