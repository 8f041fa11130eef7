"""Box geometry: IoU of continuous x1,y1,x2,y2 boxes and the anchor box coder.

Boxes are continuous coordinates (no ``+1`` in widths), as in the paper's matching (4.1).
"""

from __future__ import annotations

import math

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (...) area; degenerate boxes (x2 < x1 or y2 < y1) have area 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (
        boxes[..., 3] - boxes[..., 1]
    ).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU: a (N, 4), b (M, 4) -> (N, M). Pairs with zero union get IoU 0."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def elementwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of matching rows: a, b (N, 4) -> (N,), differentiable; ``eps`` keeps it finite."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(a) + box_area(b) - inter
    return inter / (union + eps)


class BoxCoder:
    """Encode boxes as (dx, dy, dw, dh) offsets from reference boxes, and back.

    ``dx = (gx - ax) / aw``, ``dw = ln(gw / aw)`` (centre/size parametrisation of Faster
    R-CNN, unit weights). Decoding clamps dw, dh at ``ln(1000 / 16)`` so a wild prediction
    cannot overflow ``exp``; it always computes in float32.
    """

    def __init__(self, clamp: float = math.log(1000.0 / 16)) -> None:
        self.clamp = clamp

    @staticmethod
    def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h

    def encode(self, reference: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """reference, boxes (N, 4) -> deltas (N, 4) with decode(encode(b)) == b."""
        ax, ay, aw, ah = self._centre_size(reference.float())
        gx, gy, gw, gh = self._centre_size(boxes.float())
        gw, gh = gw.clamp(min=1e-3), gh.clamp(min=1e-3)
        return torch.stack(
            ((gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)), dim=1
        )

    def decode(self, deltas: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """deltas (N, 4), reference (N, 4) -> boxes (N, 4) float32 x1,y1,x2,y2."""
        deltas = deltas.float()
        ax, ay, aw, ah = self._centre_size(reference.float())
        cx = ax + deltas[:, 0] * aw
        cy = ay + deltas[:, 1] * ah
        w = aw * torch.exp(deltas[:, 2].clamp(max=self.clamp))
        h = ah * torch.exp(deltas[:, 3].clamp(max=self.clamp))
        return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=1)
