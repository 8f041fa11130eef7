"""Backbones producing the C2..C5 feature maps (strides 4, 8, 16, 32).

* ``resnet50`` (the paper) and ``resnet18``: torchvision ResNets, randomly initialised or
  loaded from a local state-dict file (``backbone_weights``; e.g. torchvision's ImageNet
  checkpoint, read with ``torch.load(weights_only=True)``; the ``fc.*`` classifier keys are
  optional). With weights, batch norm is frozen (``FrozenBatchNorm2d``, the usual choice at
  one image per GPU, as the paper trains) and the stem and ``layer1`` are frozen; with random
  init, batch norm trains.
* ``tiny``: five plain 3x3 stride-2 convolutions (C2..C5 with 16..32 channels) for tests and
  quick CPU runs.

A backbone returns a dict ``{"C2": ..., ...}`` up to its ``last_level`` (the RPN design
needs C4 only, so C5 is not computed for it) and exposes ``out_channels``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facebench.errors import FacebenchError, FormatError

BACKBONES = ("resnet50", "resnet18", "tiny")
_LEVELS = ("C2", "C3", "C4", "C5")


class _StagedBackbone(nn.Module):
    """A stem followed by ``self.stages``; forward returns {"C2": ..., up to the last stage}."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for level, stage in zip(_LEVELS, self.stages, strict=False):
            x = stage(x)
            out[level] = x
        return out


class ResNetBackbone(_StagedBackbone):
    """torchvision ResNet trunk returning C2..``last_level``."""

    def __init__(
        self, depth: str, weights: str | Path | None = None, last_level: str = "C5"
    ) -> None:
        super().__init__()
        import torchvision
        from torchvision.ops.misc import FrozenBatchNorm2d

        builder = {"resnet50": torchvision.models.resnet50, "resnet18": torchvision.models.resnet18}
        norm = FrozenBatchNorm2d if weights is not None else nn.BatchNorm2d
        net = builder[depth](weights=None, norm_layer=norm)
        if weights is not None:
            _load_weights(net, Path(weights), depth)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.num_stages = _LEVELS.index(last_level) + 1
        self.stages = self.stages[: self.num_stages]
        width = 4 if depth == "resnet50" else 1
        self.out_channels = {lv: 64 * 2**i * width for i, lv in enumerate(_LEVELS)}
        if weights is not None:
            for module in (self.stem, self.stages[0]):
                module.requires_grad_(False)


class TinyBackbone(_StagedBackbone):
    """Five 3x3 stride-2 conv + ReLU layers: C2 (16 ch, stride 4) .. C5 (32 ch, stride 32)."""

    def __init__(self, last_level: str = "C5") -> None:
        super().__init__()
        widths = (16, 24, 32, 32)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(inplace=True))
        layers, cin = [], 8
        for width in widths[: _LEVELS.index(last_level) + 1]:
            layers.append(nn.Sequential(nn.Conv2d(cin, width, 3, 2, 1), nn.ReLU(inplace=True)))
            cin = width
        self.stages = nn.ModuleList(layers)
        self.out_channels = dict(zip(_LEVELS, widths, strict=True))


def build_backbone(
    name: str, weights: str | Path | None = None, last_level: str = "C5"
) -> nn.Module:
    """A backbone by name (``resnet50``, ``resnet18``, ``tiny``) returning C2..last_level."""
    if name not in BACKBONES:
        raise FacebenchError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")
    if name == "tiny":
        if weights is not None:
            raise FacebenchError("the tiny backbone has no pretrained weights file")
        return TinyBackbone(last_level)
    return ResNetBackbone(name, weights, last_level)


def _load_weights(net: nn.Module, path: Path, depth: str) -> None:
    """Load a state dict into ``net``; FacebenchError naming the file if absent or unfit."""
    if not path.is_file():
        raise FacebenchError(f"{path}: backbone weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors vary by torch version
        raise FormatError(path, f"not a torch state-dict file ({exc.__class__.__name__})") from None
    if isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise FormatError(path, "expected a state dict (name -> tensor)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in set(state) - set(expected) if "num_batches_tracked" not in k)
    wrong = sorted(
        k for k in set(expected) & set(state)
        if not torch.is_tensor(state[k]) or state[k].shape != expected[k].shape
    )
    missing = [k for k in missing if "num_batches_tracked" not in k]
    if missing or unexpected or wrong:
        parts = []
        problems = (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        for label, keys in problems:
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise FormatError(path, f"does not fit a {depth} backbone: {'; '.join(parts)}")
    net.load_state_dict(state, strict=False)
