"""Grouped Fast R-CNN second stage (paper 4.2 and 6.3, Table 5).

The top first-stage proposals of each image are pooled from P2 with RoIAlign (7x7, spatial
scale 1/4) and scored and refined by a small head (two 256-d fully connected layers, then a
2-way classifier and a 4-d box regressor relative to the RoI).

Training RoIs (the proposals plus the image's non-ignored faces) get their targets from
:meth:`detector.targets.Assigner.for_second_stage`: two-pass matching at ``second_stage_iou``
(0.5) for both thresholds, RoIs grouped by the anchor scale nearest to the RoI's scale
``sqrt(w h)`` (in log space) and sampled with group sampling, ``second_stage_group_size`` per
scale at 1:3 ("Grouped Fast R-CNN"), or with random 1:3 sampling of the same total for the
plain Fast R-CNN ablation.
Losses: softmax cross-entropy over sampled RoIs, the design's second-stage regression loss
over sampled positives.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

from detector.boxes import BoxCoder, box_area
from detector.designs import Design
from detector.losses import RegressionLoss, softmax_cross_entropy
from detector.targets import Assigner


def nearest_scale_ids(boxes: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """(N, 4) boxes -> (N,) int64 index of the anchor scale nearest to sqrt(w h) in log2."""
    size = box_area(boxes).clamp(min=1e-6).sqrt().log2()
    ref = torch.tensor(scales, dtype=torch.float32, device=boxes.device).log2()
    return (size[:, None] - ref[None, :]).abs().argmin(dim=1)


class GroupedFastRCNN(nn.Module):
    """RoIAlign on P2 + two-FC head; ``losses`` for training, ``refine`` for inference."""

    def __init__(self, design: Design, in_channels: int, hidden: int = 256, pool: int = 7) -> None:
        super().__init__()
        self.design = design
        self.pool = pool
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * pool * pool, hidden), nn.ReLU(True),
            nn.Linear(hidden, hidden), nn.ReLU(True),
        )
        self.classifier = nn.Linear(hidden, 2)
        self.regressor = nn.Linear(hidden, 4)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.normal_(self.regressor.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)
        nn.init.zeros_(self.regressor.bias)
        self.coder = BoxCoder()
        self.regression_loss = RegressionLoss(design.second_stage_regression_loss, self.coder)
        self.assigner = Assigner.for_second_stage(design)

    def _predict(self, p2: torch.Tensor, rois: list[torch.Tensor]):
        pooled = roi_align(
            p2, [r.to(p2.dtype) for r in rois], self.pool, spatial_scale=0.25,
            sampling_ratio=2, aligned=True,
        )
        hidden = self.fc(pooled)
        return self.classifier(hidden), self.regressor(hidden)

    def losses(
        self,
        p2: torch.Tensor,
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
        stats: dict,
    ) -> dict[str, torch.Tensor]:
        """Second-stage losses for a batch; proposals are detached (K_b, 4) boxes per image."""
        rois, labels, matched_boxes = [], [], []
        for props, target in zip(proposals, targets, strict=True):
            boxes, ignore = target["boxes"], target["ignore"]
            candidates = torch.cat([props, boxes[~ignore]])
            scale_ids = nearest_scale_ids(candidates, self.design.scales)
            t = self.assigner.assign(candidates, scale_ids, boxes, ignore)
            rois.append(candidates[t.mask])
            labels.append(t.labels[t.mask])
            target_boxes = boxes[t.matched.clamp(min=0)] if len(boxes) else candidates
            matched_boxes.append(target_boxes[t.mask])
        stats["roi_sampled"] = sum(int(x.numel()) for x in labels)
        stats["roi_sampled_positives"] = sum(int((x == 1).sum()) for x in labels)
        logits, deltas = self._predict(p2, rois)
        all_labels = torch.cat(labels)
        all_rois, all_targets = torch.cat(rois), torch.cat(matched_boxes)
        pos = all_labels == 1
        cls = softmax_cross_entropy(logits, all_labels).sum() / max(all_labels.numel(), 1)
        reg = self.regression_loss(deltas[pos], all_rois[pos], all_targets[pos]).sum()
        return {"loss_roi_cls": cls, "loss_roi_reg": reg / max(int(pos.sum()), 1)}

    @torch.no_grad()
    def refine(
        self, p2: torch.Tensor, proposals: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image (refined boxes (K, 4) float32, face scores (K,)) for its proposals."""
        logits, deltas = self._predict(p2, proposals)
        boxes = self.coder.decode(deltas, torch.cat(proposals))
        scores = logits.float().softmax(dim=1)[:, 1]
        sizes = [len(p) for p in proposals]
        return list(zip(boxes.split(sizes), scores.split(sizes), strict=True))
