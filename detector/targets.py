"""Target assignment: matching plus the design's training-sample choice, one interface.

Every place that turns faces into training targets goes through here: the dense losses of
the model (:mod:`detector.model`), the anchor statistics (:mod:`detector.anchor_stats`) and
the second stage (:mod:`detector.fast_rcnn`). An :class:`Assigner` holds the matcher
thresholds and a :class:`Sampler`; :meth:`Assigner.assign` labels the anchors with the
two-pass matcher (:func:`detector.matching.match_anchors`) and lets the sampler choose the
anchors the loss sees, returning :class:`Targets` ``(labels, matched, mask)``.

Samplers are built from a design's data, not dispatched on strings in each user:
:data:`SAMPLER_BUILDERS` maps ``Design.sampler`` and :data:`SECOND_STAGE_SAMPLER_BUILDERS`
maps ``Design.second_stage_sampler`` to a function ``design -> Sampler``. The samplers:

* :class:`ScaleGroupSampler`: group sampling, N per anchor scale at 1:3 (the paper);
* :class:`RandomSampler`: random 1:3 over all scales (the baselines; N x scales per image);
* :class:`OHEMSampler`: the B labelled anchors of highest loss; needs the per-anchor loss of a
  model (``anchor_loss``), so statistics without a model cannot use it (``needs_loss``);
* :class:`AllLabelledSampler`: every labelled anchor (focal loss).

Random draws use ``generator`` (the global torch RNG when None), so the same generator state
gives the same sample wherever the assignment runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from detector.designs import Design
from detector.matching import match_anchors
from detector.sampling import ohem_select, sample_random, sample_scale_groups
from facebench.errors import FacebenchError

#: ``anchor_loss(labels, matched) -> (A,)`` per-anchor training loss (OHEM ranks by it).
AnchorLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Sampler(Protocol):
    """Chooses one image's training samples among its labelled anchors.

    ``labels`` (A,) int64 in {1, 0, -1} (ignored: -1, never chosen); ``scale_ids`` (A,) int64;
    ``matched`` (A,) face index of positives else -1. Returns a bool mask (A,).
    """

    #: True when the choice depends on a model's per-anchor loss (``anchor_loss`` needed).
    needs_loss: bool

    def __call__(
        self,
        labels: torch.Tensor,
        scale_ids: torch.Tensor,
        matched: torch.Tensor,
        generator: torch.Generator | None = None,
        anchor_loss: AnchorLoss | None = None,
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class ScaleGroupSampler:
    """Group sampling: ``num_per_scale`` anchors per scale, positives at ``positive_fraction``
    (:func:`detector.sampling.sample_scale_groups`)."""

    num_per_scale: int
    positive_fraction: float = 0.25
    needs_loss = False

    def __call__(self, labels, scale_ids, matched, generator=None, anchor_loss=None):
        return sample_scale_groups(
            labels, scale_ids, self.num_per_scale, self.positive_fraction, generator
        )


@dataclass(frozen=True)
class RandomSampler:
    """Random 1:3 sampling of ``num_samples`` anchors per image, scale ignored
    (:func:`detector.sampling.sample_random`)."""

    num_samples: int
    positive_fraction: float = 0.25
    needs_loss = False

    def __call__(self, labels, scale_ids, matched, generator=None, anchor_loss=None):
        return sample_random(labels, self.num_samples, self.positive_fraction, generator)


@dataclass(frozen=True)
class OHEMSampler:
    """Online hard example mining: the ``batch`` labelled anchors of highest
    ``anchor_loss(labels, matched)`` (:func:`detector.sampling.ohem_select`)."""

    batch: int
    needs_loss = True

    def __call__(self, labels, scale_ids, matched, generator=None, anchor_loss=None):
        if anchor_loss is None:
            raise ValueError("OHEM needs the per-anchor loss of a model (anchor_loss)")
        return ohem_select(anchor_loss(labels, matched), labels, self.batch)


@dataclass(frozen=True)
class AllLabelledSampler:
    """No sampling: every labelled (non-ignored) anchor, as focal loss trains."""

    needs_loss = False

    def __call__(self, labels, scale_ids, matched, generator=None, anchor_loss=None):
        return labels >= 0


#: ``Design.sampler`` -> the dense stage's sampler for that design.
SAMPLER_BUILDERS: dict[str, Callable[[Design], Sampler]] = {
    "group": lambda d: ScaleGroupSampler(d.group_size, d.positive_fraction),
    # The baselines draw as many samples per image as group sampling does in all.
    "random": lambda d: RandomSampler(d.group_size * d.num_scales, d.positive_fraction),
    "ohem": lambda d: OHEMSampler(d.ohem_batch),
    "none": lambda d: AllLabelledSampler(),
}

#: ``Design.second_stage_sampler`` -> the second stage's RoI sampler (1:3, the paper's).
SECOND_STAGE_SAMPLER_BUILDERS: dict[str, Callable[[Design], Sampler]] = {
    "group": lambda d: ScaleGroupSampler(d.second_stage_group_size),
    "random": lambda d: RandomSampler(d.second_stage_group_size * d.num_scales),
}


@dataclass(frozen=True)
class Targets:
    """One image's assignment: ``labels`` (A,) int64 in {1, 0, -1}; ``matched`` (A,) int64,
    the face index of positives else -1; ``mask`` (A,) bool, the anchors the loss sees."""

    labels: torch.Tensor
    matched: torch.Tensor
    mask: torch.Tensor

    #: Rows of :meth:`per_scale_counts`.
    COUNT_KEYS = ("positives", "negatives", "ignored", "sampled_positives", "sampled_negatives")

    def per_scale_counts(self, scale_ids: torch.Tensor, num_scales: int) -> torch.Tensor:
        """(len(COUNT_KEYS), num_scales) int64 on the CPU: anchors per scale that are positive,
        negative, ignored after matching, and sampled positive / negative."""
        pos, neg = self.labels == 1, self.labels == 0
        selectors = (pos, neg, self.labels == -1, self.mask & pos, self.mask & neg)
        return torch.stack(
            [torch.bincount(scale_ids[s], minlength=num_scales) for s in selectors]
        ).cpu()


@dataclass(frozen=True)
class Assigner:
    """Two-pass matching at ``pos_iou`` / ``neg_iou`` followed by ``sampler``."""

    pos_iou: float
    neg_iou: float
    sampler: Sampler

    @classmethod
    def for_design(cls, design: Design) -> Assigner:
        """The dense stage's assignment of ``design`` (its thresholds and sampler)."""
        return cls(design.pos_iou, design.neg_iou, SAMPLER_BUILDERS[design.sampler](design))

    @classmethod
    def for_second_stage(cls, design: Design) -> Assigner:
        """The second stage's RoI assignment: ``second_stage_iou`` for both thresholds."""
        sampler = SECOND_STAGE_SAMPLER_BUILDERS[design.second_stage_sampler](design)
        return cls(design.second_stage_iou, design.second_stage_iou, sampler)

    def match(
        self, anchors: torch.Tensor, boxes: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels, matched)`` of :func:`detector.matching.match_anchors` at this
        assigner's thresholds; anchors (A, 4), boxes (G, 4), ignore (G,) bool or None."""
        with torch.no_grad():
            return match_anchors(anchors, boxes, self.pos_iou, self.neg_iou, ignore)

    def sample(
        self,
        labels: torch.Tensor,
        scale_ids: torch.Tensor,
        matched: torch.Tensor,
        generator: torch.Generator | None = None,
        anchor_loss: AnchorLoss | None = None,
    ) -> Targets:
        """Targets from a matching already made (e.g. on a subset of anchors, scattered
        back): the sampler's choice among ``labels``."""
        mask = self.sampler(labels, scale_ids, matched, generator, anchor_loss)
        return Targets(labels, matched, mask)

    def assign(
        self,
        anchors: torch.Tensor,
        scale_ids: torch.Tensor,
        boxes: torch.Tensor,
        ignore: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        anchor_loss: AnchorLoss | None = None,
    ) -> Targets:
        """Match ``anchors`` (A, 4) with scale ids (A,) to ``boxes`` (G, 4) (``ignore`` (G,)
        bool: faces that neither train as faces nor as background), then sample."""
        labels, matched = self.match(anchors, boxes, ignore)
        return self.sample(labels, scale_ids, matched, generator, anchor_loss)


def assign(
    design: Design,
    anchors: torch.Tensor,
    scale_ids: torch.Tensor,
    boxes: torch.Tensor,
    ignore: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    anchor_loss: AnchorLoss | None = None,
) -> Targets:
    """``Assigner.for_design(design).assign(...)``: one image's dense-stage targets."""
    return Assigner.for_design(design).assign(
        anchors, scale_ids, boxes, ignore, generator, anchor_loss
    )


def check_countable(design: Design) -> None:
    """Raise FacebenchError for a design whose samples depend on a trained model (OHEM)."""
    if Assigner.for_design(design).sampler.needs_loss:
        raise FacebenchError(
            f"design {design.name!r} samples by {design.sampler.upper()} (a trained model's"
            " loss); anchor statistics need no model and cannot reproduce it"
        )
