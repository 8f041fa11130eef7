"""Classification and box-regression losses (paper section 5, Tables 3 and 4).

All functions return per-row losses (no reduction) so callers choose the normaliser: the
detector averages classification over the sampled anchors and regression over the positive
(anchor, face) pairs, ``L_reg = 1/N_reg * sum (1 - IoU)^2`` (eq. 2).

Regression losses on boxes take *decoded* predicted boxes and the matched faces, both (N, 4)
x1,y1,x2,y2, and compute in float32:

* ``iou_squared``: ``(1 - IoU)^2``, the paper's IoU least-square loss; its gradient vanishes at
  IoU = 1, so training settles instead of oscillating;
* ``neg_log_iou``: ``-ln(IoU)`` (UnitBox), whose gradient is non-zero even at IoU = 1;
* ``smooth_l1``: smooth-L1 on the (dx, dy, dw, dh) deltas (Faster R-CNN), summed over the 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detector.boxes import BoxCoder, elementwise_iou

_IOU_FLOOR = 1e-6


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (N, 2) background/face, labels (N,) in {0, 1} -> (N,) cross-entropy."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Softmax focal loss ``-a_t (1 - p_t)^gamma ln p_t`` per row (Lin et al.).

    logits (N, 2), labels (N,) in {0, 1}; ``a_t`` is ``alpha`` for faces and ``1 - alpha``
    for background. Normalise the sum by the number of positives (RetinaNet).
    """
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    weight = torch.where(labels == 1, alpha, 1.0 - alpha)
    return -weight * (1.0 - log_p.exp()).pow(gamma) * log_p


def iou_squared_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - IoU)^2 per row (paper eq. 2); zero value and zero gradient at IoU = 1."""
    return (1.0 - elementwise_iou(pred.float(), target.float())).pow(2)


def neg_log_iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-ln(IoU) per row, IoU floored at 1e-6 so disjoint boxes give a finite loss."""
    return -torch.log(elementwise_iou(pred.float(), target.float()).clamp(min=_IOU_FLOOR))


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0 / 9) -> torch.Tensor:
    """Smooth-L1 of (N, 4) deltas summed over the 4 coordinates -> (N,)."""
    return F.smooth_l1_loss(pred.float(), target.float(), beta=beta, reduction="none").sum(1)


class RegressionLoss:
    """A regression loss by name, applied to predicted deltas of positive anchors.

    ``__call__(deltas (N, 4), reference (N, 4), target (N, 4)) -> (N,)``: ``reference`` are the
    anchors (or RoIs) the deltas are relative to, ``target`` the matched faces.
    """

    KINDS = ("iou_squared", "neg_log_iou", "smooth_l1")

    def __init__(self, kind: str, coder: BoxCoder | None = None) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"regression loss must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.coder = coder or BoxCoder()

    def __call__(
        self, deltas: torch.Tensor, reference: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        if self.kind == "smooth_l1":
            return smooth_l1_loss(deltas, self.coder.encode(reference, target))
        boxes = self.coder.decode(deltas, reference)
        if self.kind == "iou_squared":
            return iou_squared_loss(boxes, target)
        return neg_log_iou_loss(boxes, target)
