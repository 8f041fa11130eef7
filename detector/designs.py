"""The paper's detector designs as frozen data, selectable by name.

A :class:`Design` fixes everything that distinguishes the detectors of *Group Sampling for
Scale Invariant Face Detection* (Ming et al., CVPR 2019, sections 3, 6.2 and 6.3): which
feature map each anchor scale is tiled on and with which stride, the matcher thresholds, the
training-sample selection (group sampling, random 1:3, OHEM or none for focal loss), the losses
and whether the Grouped Fast R-CNN second stage runs.

Designs in :data:`DESIGNS` (all use square anchors of scales 16, 32, 64, 128):

==============================  =========  ======================  =========================
name                            features   stride per scale (px)   training samples
==============================  =========  ======================  =========================
``rpn``                         C4         16, 16, 16, 16          random 1:3
``fpn``                         P2..P5     4, 8, 16, 32            random 1:3
``fpn-finest-stride``           P2         4, 8, 16, 32            random 1:3 (P2 sub-sampled)
``fpn-finest``                  P2         4, 4, 4, 4              random 1:3
``fpn-finest-sampling``         P2         4, 4, 4, 4              group sampling (the paper)
``fpn-finest-ohem``             P2         4, 4, 4, 4              OHEM, top B=1024 by loss
``fpn-finest-focal``            P2         4, 4, 4, 4              none; focal loss a=.25 g=2
``fpn-finest-focal-per-image``  as fpn-finest-focal, loss normalised per image (old rule)
``fpn-finest-sampling-smooth-l1``  as fpn-finest-sampling, smooth-L1 regression (Table 3)
``fpn-finest-sampling-neg-log-iou``  as fpn-finest-sampling, -ln(IoU) regression (Table 3)
``fpn-finest-sampling-frcnn-plain``  + Fast R-CNN, random 1:3 RoIs, smooth-L1 (Table 5)
``fpn-finest-sampling-frcnn-iou``    + Fast R-CNN, random 1:3 RoIs, (1-IoU)^2 (Table 5)
``fpn-finest-sampling-frcnn``   + Grouped Fast R-CNN: group-sampled RoIs, (1-IoU)^2 (Table 5)
==============================  =========  ======================  =========================

Feature-map ablations of Table 2, each without and with group sampling (``-sampling``):
``fpn-sampling`` (P2..P5), ``p3``/``p3-sampling`` (P3, stride 8), ``p4``/``p4-sampling``
(P4, stride 16), ``c3``/``c3-sampling`` (C3, stride 8), ``rpn-sampling`` (C4, stride 16);
the P2 rows are ``fpn-finest`` and ``fpn-finest-sampling``, the C4 row without sampling is
``rpn``.

Sample budget. Group sampling draws ``group_size`` (N) anchors per scale per image. The
random 1:3 baselines draw ``group_size * len(scales)`` anchors per image over all scales,
so every design sees the same number of training samples per image (the paper varies N
for the baselines too, Fig. 4). The default N is 2048: the paper finds accuracy saturates
once N exceeds 2048 (section 6.2).

Any field can be overridden with :func:`get_design` keyword arguments, which go through
``dataclasses.replace`` and are validated again, e.g.
``get_design("fpn-finest-sampling", regression_loss="smooth_l1")``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from facebench.errors import FacebenchError

#: Stride in input pixels of each feature map the backbone and FPN produce.
LEVEL_STRIDES: dict[str, int] = {
    "C2": 4, "C3": 8, "C4": 16, "C5": 32,
    "P2": 4, "P3": 8, "P4": 16, "P5": 32,
}
#: The model pads inputs to a multiple of this, so every stride divides the padded size.
SIZE_DIVISIBILITY = 32

SAMPLERS = ("group", "random", "ohem", "none")
CLASSIFICATION_LOSSES = ("softmax", "focal")
#: How the focal loss sum is normalised: ``batch`` divides the batch's summed loss by the
#: batch's positive count (RetinaNet's rule, floor 1); ``image`` divides each image's sum by
#: that image's positive count (floor 1) and averages over images (this project's first rule,
#: which lets an image with one positive weigh as much as one with a hundred).
FOCAL_NORMALISERS = ("batch", "image")
REGRESSION_LOSSES = ("iou_squared", "neg_log_iou", "smooth_l1")
DEFAULT_GROUP_SIZE = 2048


@dataclass(frozen=True)
class Design:
    """One detector design: anchors, matching, sampling, losses and second stage.

    Per-scale tuples (``scales``, ``strides``, ``levels``) have one entry per anchor scale,
    scales ascending; a scale's id is its index here and is what ``anchors_for`` returns
    as ``scale_ids``. A stride larger than its level's stride means the level is
    sub-sampled by ``stride // level stride`` for that scale (FPN-finest-stride).
    """

    name: str
    description: str
    scales: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (4, 4, 4, 4)
    levels: tuple[str, ...] = ("P2", "P2", "P2", "P2")
    pos_iou: float = 0.6
    neg_iou: float = 0.4
    sampler: str = "group"
    group_size: int = DEFAULT_GROUP_SIZE
    positive_fraction: float = 0.25
    ohem_batch: int = 1024
    classification_loss: str = "softmax"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_normaliser: str = "batch"
    regression_loss: str = "iou_squared"
    second_stage: bool = False
    second_stage_sampler: str = "group"
    second_stage_regression_loss: str = "iou_squared"
    second_stage_group_size: int = 64
    second_stage_proposals: int = 512
    second_stage_iou: float = 0.5

    def __post_init__(self) -> None:
        self._validate()

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    @property
    def feature_levels(self) -> tuple[str, ...]:
        """Distinct feature maps the design detects on, in first-use order."""
        return tuple(dict.fromkeys(self.levels))

    @property
    def uses_fpn(self) -> bool:
        return any(level.startswith("P") for level in self.levels)

    def subsample(self, scale_id: int) -> int:
        """How much the scale's level is sub-sampled: anchor stride / level stride."""
        return self.strides[scale_id] // LEVEL_STRIDES[self.levels[scale_id]]

    def _validate(self) -> None:
        def bad(problem: str) -> FacebenchError:
            return FacebenchError(f"design {self.name!r}: {problem}")

        n = len(self.scales)
        if n == 0 or len(self.strides) != n or len(self.levels) != n:
            raise bad("scales, strides and levels need one entry per scale")
        if list(self.scales) != sorted(set(self.scales)) or self.scales[0] <= 0:
            raise bad(f"scales must be positive and strictly ascending, got {self.scales}")
        for level, stride in zip(self.levels, self.strides, strict=True):
            if level not in LEVEL_STRIDES:
                raise bad(f"unknown feature level {level!r}; use one of {sorted(LEVEL_STRIDES)}")
            if stride % LEVEL_STRIDES[level] or SIZE_DIVISIBILITY % stride:
                raise bad(
                    f"stride {stride} on {level} must be a multiple of {LEVEL_STRIDES[level]}"
                    f" and divide {SIZE_DIVISIBILITY}"
                )
        if any(lv.startswith("P") for lv in self.levels) and any(
            lv.startswith("C") for lv in self.levels
        ):
            raise bad("mixing C and P feature levels is not supported")
        if not 0.0 < self.neg_iou <= self.pos_iou <= 1.0:
            raise bad("need 0 < neg_iou <= pos_iou <= 1")
        for field, value, allowed in (
            ("sampler", self.sampler, SAMPLERS),
            ("classification_loss", self.classification_loss, CLASSIFICATION_LOSSES),
            ("regression_loss", self.regression_loss, REGRESSION_LOSSES),
            ("focal_normaliser", self.focal_normaliser, FOCAL_NORMALISERS),
            ("second_stage_sampler", self.second_stage_sampler, ("group", "random")),
            (
                "second_stage_regression_loss",
                self.second_stage_regression_loss,
                REGRESSION_LOSSES,
            ),
        ):
            if value not in allowed:
                raise bad(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
        if (self.sampler == "none") != (self.classification_loss == "focal"):
            raise bad("focal loss runs on all anchors: use sampler 'none' with it, and only then")
        if self.group_size <= 0 or self.ohem_batch <= 0 or self.second_stage_group_size <= 0:
            raise bad("group_size, ohem_batch and second_stage_group_size must be positive")
        if not 0.0 < self.positive_fraction <= 1.0:
            raise bad("positive_fraction must be in (0, 1]")
        if self.second_stage and self.levels[0] != "P2":
            raise bad("the Grouped Fast R-CNN stage pools RoIs from P2; use a P2 design")


_FINEST = dict(strides=(4, 4, 4, 4), levels=("P2",) * 4)

_ALL = [
    Design(
        "rpn", "RPN: all anchors on C4 at stride 16, random 1:3 sampling",
        strides=(16,) * 4, levels=("C4",) * 4, sampler="random",
    ),
    Design(
        "fpn", "FPN: scale 16/32/64/128 on P2/P3/P4/P5, random 1:3 sampling",
        strides=(4, 8, 16, 32), levels=("P2", "P3", "P4", "P5"), sampler="random",
    ),
    Design(
        "fpn-finest-stride", "All anchors on P2, strides 4/8/16/32 by sub-sampling, random 1:3",
        strides=(4, 8, 16, 32), levels=("P2",) * 4, sampler="random",
    ),
    Design("fpn-finest", "All anchors on P2 at stride 4, random 1:3", sampler="random", **_FINEST),
    Design(
        "fpn-finest-sampling", "The paper: all anchors on P2 at stride 4, group sampling",
        sampler="group", **_FINEST,
    ),
    Design(
        "fpn-finest-ohem", "FPN-finest with OHEM: top B=1024 anchors by loss (Table 4)",
        sampler="ohem", **_FINEST,
    ),
    Design(
        "fpn-finest-focal", "FPN-finest with focal loss (alpha 0.25, gamma 2), no sampling",
        sampler="none", classification_loss="focal", **_FINEST,
    ),
    Design(
        "fpn-finest-focal-per-image",
        "FPN-finest with focal loss normalised per image by its positives (floor 1)",
        sampler="none", classification_loss="focal", focal_normaliser="image", **_FINEST,
    ),
    Design(
        "fpn-finest-sampling-smooth-l1", "FPN-finest-sampling with smooth-L1 regression",
        regression_loss="smooth_l1", **_FINEST,
    ),
    Design(
        "fpn-finest-sampling-neg-log-iou", "FPN-finest-sampling with -ln(IoU) regression",
        regression_loss="neg_log_iou", **_FINEST,
    ),
    Design(
        "fpn-finest-sampling-frcnn-plain",
        "FPN-finest-sampling + Fast R-CNN (random 1:3 RoIs, smooth-L1)",
        second_stage=True, second_stage_sampler="random",
        second_stage_regression_loss="smooth_l1", **_FINEST,
    ),
    Design(
        "fpn-finest-sampling-frcnn-iou",
        "FPN-finest-sampling + Fast R-CNN (random 1:3 RoIs, (1-IoU)^2)",
        second_stage=True, second_stage_sampler="random", **_FINEST,
    ),
    Design(
        "fpn-finest-sampling-frcnn",
        "FPN-finest-sampling + Grouped Fast R-CNN (group-sampled RoIs, (1-IoU)^2)",
        second_stage=True, second_stage_sampler="group", **_FINEST,
    ),
]


def _feature_ablations() -> list[Design]:
    # Table 2: a single feature map, all four scales at that map's stride.
    out = [
        Design(
            "fpn-sampling", "FPN (P2..P5) with group sampling (Table 2)",
            strides=(4, 8, 16, 32), levels=("P2", "P3", "P4", "P5"), sampler="group",
        ),
        Design(
            "rpn-sampling", "RPN (C4, stride 16) with group sampling (Table 2)",
            strides=(16,) * 4, levels=("C4",) * 4, sampler="group",
        ),
    ]
    for level in ("P3", "P4", "C3"):
        stride = LEVEL_STRIDES[level]
        for sampler, suffix, what in (("random", "", "random 1:3"), ("group", "-sampling", "GS")):
            out.append(Design(
                level.lower() + suffix,
                f"All anchors on {level} at stride {stride}, {what} (Table 2)",
                strides=(stride,) * 4, levels=(level,) * 4, sampler=sampler,
            ))
    return out


_ALL += _feature_ablations()

#: Every named design, by name.
DESIGNS: dict[str, Design] = {d.name: d for d in _ALL}


def get_design(name: str | Design, **overrides) -> Design:
    """The design called ``name`` (or a Design itself), with ``overrides`` replaced.

    Raises FacebenchError naming the valid designs for an unknown name, or the field for
    an unknown or invalid override.
    """
    if isinstance(name, Design):
        design = name
    else:
        try:
            design = DESIGNS[name]
        except KeyError:
            raise FacebenchError(
                f"unknown design {name!r}; valid designs: {', '.join(DESIGNS)}"
            ) from None
    if not overrides:
        return design
    known = {f.name for f in dataclasses.fields(Design)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise FacebenchError(
            f"unknown design field(s) {', '.join(unknown)}; "
            f"valid fields: {', '.join(sorted(known))}"
        )
    for key in ("scales", "strides", "levels"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    return dataclasses.replace(design, **overrides)
