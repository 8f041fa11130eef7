"""The paper's own numbers (Ming et al., CVPR 2019, Tables 1, 3 and 4) and its claims (1)-(5).

AP values in percent on the WIDER FACE validation set, ResNet-50, 100 epochs on 8 GPUs.
``@16``..``@128`` are the AP on All using only the outputs of that anchor scale's
sub-detector (multi-scale test). Table 3 and 4 report no Easy/Medium/Hard.

Note: Table 1's FPN-finest-sampling row equals Table 3's Smooth-L1 row (82.8 All), so the
paper's Table 1 designs were apparently trained with smooth-L1 regression, while the
(1 - IoU)^2 loss (Table 3, 83.7 All) is the paper's final choice and this project's default.
"""

from __future__ import annotations

from dataclasses import dataclass

METRICS: tuple[str, ...] = ("easy", "medium", "hard", "all", "@16", "@32", "@64", "@128")
SUB_DETECTORS: tuple[str, ...] = ("@16", "@32", "@64", "@128")


def _row(*values: float | None) -> dict[str, float | None]:
    return dict(zip(METRICS, values, strict=True))


#: design -> (source table, metric -> AP %). Table 1 first, then Tables 3 and 4.
PAPER_AP: dict[str, tuple[str, dict[str, float | None]]] = {
    "rpn": ("Table 1", _row(92.5, 91.0, 83.0, 74.0, 48.6, 65.1, 43.8, 21.5)),
    "fpn-finest": ("Table 1", _row(94.1, 93.0, 86.6, 80.2, 65.6, 66.8, 43.9, 22.4)),
    "fpn": ("Table 1", _row(90.9, 91.3, 87.6, 82.1, 72.3, 67.3, 43.2, 21.2)),
    "fpn-finest-stride": ("Table 1", _row(90.4, 91.0, 87.1, 81.6, 72.2, 66.6, 43.3, 21.8)),
    "fpn-finest-sampling": ("Table 1", _row(94.7, 93.8, 88.7, 82.8, 74.1, 72.9, 47.8, 24.5)),
    "fpn-finest-sampling-smooth-l1": (
        "Table 3", _row(None, None, None, 82.8, 74.1, 72.9, 47.8, 24.5)),
    "fpn-finest-sampling-neg-log-iou": (
        "Table 3", _row(None, None, None, 83.5, 74.6, 73.1, 48.0, 25.1)),
    "fpn-finest-ohem": ("Table 4", _row(None, None, None, 81.5, 76.0, 68.9, 43.9, 22.0)),
    "fpn-finest-focal": ("Table 4", _row(None, None, None, 81.2, 75.8, 68.5, 44.2, 21.5)),
}
#: Table 3's (1 - IoU)^2 row: the paper design with its own regression loss (claim 4).
PAPER_IOU_SQUARED: dict[str, float | None] = _row(None, None, None, 83.7, 75.0, 73.2, 48.2, 24.9)


@dataclass(frozen=True)
class Comparison:
    """``better`` on ``metric`` compared with ``worse`` (or, for a "same" claim, the pair
    whose values should agree)."""

    better: str
    worse: str
    metric: str

    def paper_difference(self) -> float | None:
        """The paper's AP difference better - worse (percent points), where it has both."""
        a = _paper_value(self.better, self.metric, self.worse)
        b = _paper_value(self.worse, self.metric, self.better)
        return None if a is None or b is None else round(a - b, 2)


def _paper_value(design: str, metric: str, other: str) -> float | None:
    # Claim 4 compares within Table 3: the paper design's value there is the (1-IoU)^2 row.
    if design == "fpn-finest-sampling" and other == "fpn-finest-sampling-smooth-l1":
        return PAPER_IOU_SQUARED[metric]
    entry = PAPER_AP.get(design)
    return None if entry is None else entry[1][metric]


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims. ``kind`` ``same``: every comparison shows no difference;
    ``better``: in every comparison ``better`` beats ``worse``."""

    id: int
    text: str
    kind: str
    comparisons: tuple[Comparison, ...]
    source: str

    @property
    def designs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for c in self.comparisons for d in (c.better, c.worse)))


def _cmp(better: str, worse: str, *metrics: str) -> tuple[Comparison, ...]:
    return tuple(Comparison(better, worse, m) for m in metrics)


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "FPN and FPN-finest-stride perform about the same (multi-layer features are not "
             "what matters)", "same",
          _cmp("fpn", "fpn-finest-stride", "easy", "medium", "hard", "all"), "Table 1"),
    Claim(2, "FPN-finest (all anchors at stride 4, imbalanced samples) loses on small faces "
             "(@16) and gains on large ones (Easy) against FPN-finest-stride", "better",
          _cmp("fpn-finest-stride", "fpn-finest", "@16") + _cmp("fpn-finest",
                                                                "fpn-finest-stride", "easy"),
          "Table 1"),
    Claim(3, "group sampling (FPN-finest-sampling) beats FPN-finest on every sub-detector "
             "@16..@128 and on All", "better",
          _cmp("fpn-finest-sampling", "fpn-finest", *SUB_DETECTORS, "all"), "Table 1"),
    Claim(4, "the (1 - IoU)^2 regression loss beats smooth-L1 (on All)", "better",
          _cmp("fpn-finest-sampling", "fpn-finest-sampling-smooth-l1", "all"), "Table 3"),
    Claim(5, "group sampling beats OHEM and focal loss on All", "better",
          _cmp("fpn-finest-sampling", "fpn-finest-ohem", "all")
          + _cmp("fpn-finest-sampling", "fpn-finest-focal", "all"), "Table 4"),
)
