"""Dense detection head: one sub-detector (classifier + regressor) per anchor scale.

For each distinct detection map (a feature level, sub-sampled by the scale's stride /
level stride for FPN-finest-stride) a shared 3x3 conv + ReLU trunk runs once; then each
anchor scale has its own 1x1 classifier (2 logits: background, face) and 1x1 regressor
(dx, dy, dw, dh). The paper's @16..@128 "sub-detectors" are exactly these per-scale
predictors.

Outputs are flattened in the anchor order of :mod:`detector.anchors` (scale-major, then
row-major over the grid): ``(B, A, 2)`` logits and ``(B, A, 4)`` deltas.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from detector.designs import Design


def flatten_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-scale maps (B, C, H_s, W_s) -> (B, sum H_s W_s, C), scale-major, row-major."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], 1)


class DenseHead(nn.Module):
    """Shared 3x3 trunk per detection map + per-scale 1x1 classifier and regressor."""

    def __init__(
        self, design: Design, in_channels: int, channels: int = 256, face_prior: float | None = None
    ) -> None:
        super().__init__()
        self.design = design
        self.trunk = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(True))
        self.classifiers = nn.ModuleList(nn.Conv2d(channels, 2, 1) for _ in design.scales)
        self.regressors = nn.ModuleList(nn.Conv2d(channels, 4, 1) for _ in design.scales)
        for conv in [self.trunk[0], *self.classifiers, *self.regressors]:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        if face_prior is not None:
            # Focal loss: start every anchor at P(face) = prior so background does not swamp
            # the first iterations (RetinaNet's initialisation).
            for conv in self.classifiers:
                conv.bias.data[1] = -math.log((1.0 - face_prior) / face_prior)
        # scale -> key of its detection map; each map's trunk runs once.
        self.map_keys = [
            (design.levels[s], design.subsample(s)) for s in range(design.num_scales)
        ]

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """features: level -> (B, C, H, W). Returns logits (B, A, 2), deltas (B, A, 4)."""
        trunks: dict[tuple[str, int], torch.Tensor] = {}
        for key in dict.fromkeys(self.map_keys):
            level, step = key
            x = features[level]
            if step > 1:
                x = x[:, :, ::step, ::step]
            trunks[key] = self.trunk(x)
        logits = [cls(trunks[k]) for cls, k in zip(self.classifiers, self.map_keys, strict=True)]
        deltas = [reg(trunks[k]) for reg, k in zip(self.regressors, self.map_keys, strict=True)]
        return flatten_maps(logits), flatten_maps(deltas)
