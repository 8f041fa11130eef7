"""Feature pyramid top-down path of the paper's Fig. 3.

``P5 = lateral(C5)``; ``P(i) = lateral(C(i)) + up2(P(i+1))`` for i = 4, 3, 2, where
``lateral`` is a 1x1 convolution to ``channels`` (256 in the paper) and ``up2`` bilinear
x2 upsampling to the lateral map's size; Pi has the spatial size of Ci. Following the
figure, there is no extra 3x3 smoothing convolution (the detection head starts with one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = ("C2", "C3", "C4", "C5")


class TopDownFPN(nn.Module):
    """C2..C5 dict -> P2..P5 dict, each with ``channels`` channels."""

    def __init__(self, in_channels: dict[str, int], channels: int = 256) -> None:
        super().__init__()
        self.lateral = nn.ModuleDict(
            {lv: nn.Conv2d(in_channels[lv], channels, 1) for lv in _LEVELS}
        )
        self.out_channels = channels
        for conv in self.lateral.values():
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        top = self.lateral["C5"](features["C5"])
        out["P5"] = top
        for level in ("C4", "C3", "C2"):
            lateral = self.lateral[level](features[level])
            up = F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            top = lateral + up
            out["P" + level[1]] = top
        return out
