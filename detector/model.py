"""The Group Sampling face detector: backbone -> (FPN) -> dense head [-> Grouped Fast R-CNN].

``build_detector("fpn-finest-sampling", backbone="resnet50")`` builds the paper's detector;
any design of :mod:`detector.designs` works, with overrides as keyword arguments.

Training: ``model(images, targets) -> {"loss_cls", "loss_reg"[, "loss_roi_cls",
"loss_roi_reg"]}`` (sum them). Per image the design's :class:`detector.targets.Assigner`
matches the anchors to the faces (two-pass) and chooses the training samples; the
classification loss is averaged over the sampled anchors of the batch (focal loss: by the
design's ``focal_normaliser``: the batch's summed loss over the batch's positive count,
RetinaNet's rule, or each image's over its own), the regression loss over the sampled positive
anchors. A training step split into micro-batches passes
``cls_normaliser`` (the whole batch's positive count, :meth:`count_positives`, times the
micro-batch's share of the batch) so that the batch rule holds across micro-batches.
``model.last_stats`` then holds plain numbers for logging, summed over the batch: per anchor
scale (lists, scale order) ``positives``, ``negatives``, ``ignored`` after matching and
``sampled_positives``, ``sampled_negatives``; totals ``faces`` (non-ignored),
``faces_matched`` (faces with at least one positive anchor), ``sampled``,
``sampled_total_positives``; with the second stage also ``roi_sampled``,
``roi_sampled_positives``.

Inference: ``model(images) -> [{"boxes", "scores", "scale_ids"}]`` per image. For each anchor
scale (sub-detector) the anchors with face probability above ``score_thresh`` are kept, at most
``pre_nms_top_n`` per scale; their boxes are decoded and clipped to the input, then non-maximum
suppression (``torchvision.ops.batched_nms``, float32) at ``nms_iou`` runs over all scales
together, or per scale if ``nms_per_scale`` is set (use that to evaluate the @16..@128
sub-detectors on their own); at most ``max_detections`` boxes are returned, highest score first.
The default ``nms_iou`` 0.3 is the usual face-detection value (S3FD, SSH); 0.3..0.5 are sensible.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.ops import batched_nms

from detector.anchors import anchors_for
from detector.backbones import build_backbone
from detector.boxes import BoxCoder
from detector.designs import SIZE_DIVISIBILITY, Design, get_design
from detector.fast_rcnn import GroupedFastRCNN
from detector.fpn import TopDownFPN
from detector.heads import DenseHead
from detector.losses import RegressionLoss, focal_loss, softmax_cross_entropy
from detector.targets import Assigner, Targets
from facebench.errors import FacebenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GroupSamplingDetector(nn.Module):
    """Single-shot face detector of a given :class:`Design` (see the module docstring)."""

    def __init__(
        self,
        design: Design,
        backbone: str = "resnet50",
        backbone_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.design = design
        self.backbone_name = backbone
        last_level = "C5" if design.uses_fpn else max(design.feature_levels)
        self.backbone = build_backbone(backbone, backbone_weights, last_level)
        channels = 32 if backbone == "tiny" else 256
        if design.uses_fpn:
            self.fpn: TopDownFPN | None = TopDownFPN(self.backbone.out_channels, channels)
            head_in = channels
        else:
            self.fpn = None
            head_in = self.backbone.out_channels[design.levels[0]]
        prior = 0.01 if design.classification_loss == "focal" else None
        self.head = DenseHead(design, head_in, channels, face_prior=prior)
        self.second_stage = GroupedFastRCNN(design, channels) if design.second_stage else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.coder = BoxCoder()
        self.regression_loss = RegressionLoss(design.regression_loss, self.coder)
        self.assigner = Assigner.for_design(design)
        self.score_thresh = 0.01
        self.nms_iou = 0.3
        self.pre_nms_top_n = 5000
        self.max_detections = 1000
        self.nms_per_scale = False
        self.proposal_nms_iou = 0.7
        self.last_stats: dict = {}
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- shared -------------------------------------------------------------------------

    def _check_images(self, images: torch.Tensor) -> None:
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise FacebenchError(f"images must be a float (B, 3, H, W) tensor, got {shape}")
        if not images.is_floating_point():
            raise FacebenchError("images must be float RGB in [0, 1], got an integer tensor")

    def _features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (images - self.mean) / self.std
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % SIZE_DIVISIBILITY, -w % SIZE_DIVISIBILITY
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h))
        features = self.backbone(x)
        return self.fpn(features) if self.fpn is not None else features

    def anchors(self, height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached ``anchors_for(self.design, height, width)`` on ``device``."""
        key = (height, width, str(device))
        if key not in self._anchor_cache:
            self._anchor_cache = {key: anchors_for(self.design, height, width, device)}
        return self._anchor_cache[key]

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None,
                cls_normaliser: float | None = None):
        """Training: losses dict (needs targets). Eval: list of per-image detections.

        ``cls_normaliser``: divisor of the focal loss sum under the ``batch`` rule (None: this
        call's positive count, floor 1); ignored by the other losses and rules."""
        self._check_images(images)
        features = self._features(images)
        logits, deltas = self.head(features)
        anchors, scale_ids = self.anchors(images.shape[-2], images.shape[-1], images.device)
        if self.training:
            if targets is None:
                raise FacebenchError("training mode needs targets (list of dicts with 'boxes')")
            targets = self._check_targets(targets, len(images), images.device)
            losses = self._dense_losses(
                logits, deltas, anchors, scale_ids, targets, cls_normaliser
            )
            if self.second_stage is not None:
                with torch.no_grad():
                    dets = self._detect(
                        logits.detach(), deltas.detach(), anchors, scale_ids, images.shape[-2:],
                        self.proposal_nms_iou, self.design.second_stage_proposals, False,
                    )
                proposals = [d["boxes"] for d in dets]
                losses.update(
                    self.second_stage.losses(features["P2"], proposals, targets, self.last_stats)
                )
            return losses
        return self._inference(features, logits, deltas, anchors, scale_ids, images.shape[-2:])

    # ---- training -----------------------------------------------------------------------

    @staticmethod
    def _check_targets(targets: list[dict], batch: int, device) -> list[dict]:
        if len(targets) != batch:
            raise FacebenchError(f"got {len(targets)} targets for {batch} images")
        checked = []
        for i, t in enumerate(targets):
            boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=device).reshape(-1, 4)
            ignore = t.get("ignore")
            if ignore is None:
                ignore = torch.zeros(len(boxes), dtype=torch.bool, device=device)
            ignore = torch.as_tensor(ignore, dtype=torch.bool, device=device).reshape(-1)
            if len(ignore) != len(boxes):
                raise FacebenchError(
                    f"target {i}: {len(ignore)} ignore flags for {len(boxes)} boxes"
                )
            checked.append({"boxes": boxes, "ignore": ignore})
        return checked

    def _anchor_loss(self, logits, deltas, anchors, gt):
        """OHEM's ranking for one image: ``(labels, matched) -> (A,)`` total (classification
        + regression) loss per anchor, without gradients."""

        def loss(labels: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                total = softmax_cross_entropy(logits, labels.clamp(min=0))
                pos = (labels == 1).nonzero().squeeze(1)
                total[pos] += self.regression_loss(deltas[pos], anchors[pos], gt[matched[pos]])
            return total

        return loss

    @torch.no_grad()
    def count_positives(self, height: int, width: int, targets: list[dict]) -> int:
        """Positive anchors (after matching) of ``targets`` on a padded ``height x width``
        input: the count the focal loss's batch rule divides by."""
        anchors, _ = self.anchors(height, width, self.mean.device)
        total = 0
        for t in self._check_targets(targets, len(targets), self.mean.device):
            labels, _ = self.assigner.match(anchors, t["boxes"], t["ignore"])
            total += int((labels == 1).sum())
        return total

    def _dense_losses(self, logits, deltas, anchors, scale_ids, targets, cls_normaliser=None):
        d = self.design
        per_image = d.classification_loss == "focal" and d.focal_normaliser == "image"
        cls_sum = logits.new_zeros((), dtype=torch.float32)
        reg_sum = logits.new_zeros((), dtype=torch.float32)
        num_sampled = num_pos = 0
        counts = torch.zeros(len(Targets.COUNT_KEYS), d.num_scales, dtype=torch.int64)
        faces = faces_hit = 0
        for b, target in enumerate(targets):
            gt = target["boxes"]
            t = self.assigner.assign(
                anchors, scale_ids, gt, target["ignore"],
                anchor_loss=self._anchor_loss(logits[b], deltas[b], anchors, gt),
            )  # fmt: skip
            idx = t.mask.nonzero().squeeze(1)
            lab = t.labels[idx]
            if d.classification_loss == "focal":
                image_sum = focal_loss(logits[b, idx], lab, d.focal_alpha, d.focal_gamma).sum()
                if per_image:
                    image_sum = image_sum / max(int((lab == 1).sum()), 1)
                cls_sum = cls_sum + image_sum
            else:
                cls_sum = cls_sum + softmax_cross_entropy(logits[b, idx], lab).sum()
            pos = idx[lab == 1]
            if pos.numel():
                reg_sum = reg_sum + self.regression_loss(
                    deltas[b, pos], anchors[pos], gt[t.matched[pos]]
                ).sum()
            num_sampled += idx.numel()
            num_pos += pos.numel()
            faces += int((~target["ignore"]).sum())
            faces_hit += int(torch.unique(t.matched[t.labels == 1]).numel())
            counts += t.per_scale_counts(scale_ids, d.num_scales)
        self.last_stats = {key: counts[i].tolist() for i, key in enumerate(Targets.COUNT_KEYS)}
        self.last_stats.update(
            faces=faces, faces_matched=faces_hit, sampled=num_sampled,
            sampled_total_positives=num_pos,
        )
        if per_image:
            normaliser = len(targets)
        elif d.classification_loss == "focal":
            normaliser = max(num_pos, 1) if cls_normaliser is None else cls_normaliser
        else:
            normaliser = max(num_sampled, 1)
        return {
            "loss_cls": cls_sum / normaliser,
            "loss_reg": reg_sum / max(num_pos, 1),
        }

    # ---- inference ----------------------------------------------------------------------

    def _detect(self, logits, deltas, anchors, scale_ids, size, nms_iou, max_det, per_scale):
        """Per image: threshold, top-n per scale, decode, clip, NMS (:func:`dense_detections`)."""
        return dense_detections(
            logits, deltas, anchors, scale_ids, size, self.coder,
            num_scales=self.design.num_scales, score_thresh=self.score_thresh,
            pre_nms_top_n=self.pre_nms_top_n, nms_iou=nms_iou, max_det=max_det,
            per_scale=per_scale,
        )  # fmt: skip

    def dense_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network alone: (B, A, 2) logits and (B, A, 4) deltas for float RGB images in
        [0, 1] (what ``facebench export onnx`` exports)."""
        return self.head(self._features(images))

    def postprocess(self, logits: torch.Tensor, deltas: torch.Tensor, size) -> list[dict]:
        """Detections from :meth:`dense_outputs` of a ``size`` = (H, W) input, exactly as
        ``forward`` in eval mode for designs without a second stage."""
        if self.second_stage is not None:
            raise FacebenchError("postprocess applies to single-stage designs only")
        anchors, scale_ids = self.anchors(int(size[0]), int(size[1]), logits.device)
        return self._detect(
            logits, deltas, anchors, scale_ids, size, self.nms_iou, self.max_detections,
            self.nms_per_scale,
        )  # fmt: skip

    @torch.no_grad()
    def _inference(self, features, logits, deltas, anchors, scale_ids, size):
        dets = self._detect(
            logits, deltas, anchors, scale_ids, size, self.nms_iou, self.max_detections,
            self.nms_per_scale,
        )
        if self.second_stage is None:
            return dets
        proposals = self._detect(
            logits, deltas, anchors, scale_ids, size, self.proposal_nms_iou,
            max(self.design.second_stage_proposals, self.max_detections), False,
        )
        refined = self.second_stage.refine(features["P2"], [p["boxes"] for p in proposals])
        h, w = int(size[0]), int(size[1])
        out = []
        for prop, (boxes, scores) in zip(proposals, refined, strict=True):
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            sids = prop["scale_ids"]
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (
                scores > self.score_thresh
            )
            boxes, scores, sids = boxes[ok], scores[ok], sids[ok]
            groups = sids if self.nms_per_scale else torch.zeros_like(sids)
            kept = batched_nms(boxes, scores, groups, self.nms_iou)[: self.max_detections]
            out.append({"boxes": boxes[kept], "scores": scores[kept], "scale_ids": sids[kept]})
        return out


def dense_detections(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    scale_ids: torch.Tensor,
    size,
    coder: BoxCoder,
    *,
    num_scales: int,
    score_thresh: float,
    pre_nms_top_n: int,
    nms_iou: float,
    max_det: int,
    per_scale: bool,
) -> list[dict]:
    """Dense head outputs -> per-image ``{"boxes", "scores", "scale_ids"}`` (module docstring).

    ``logits`` (B, A, 2), ``deltas`` (B, A, 4) for anchors (A, 4) / scale_ids (A,) of an input
    of ``size`` = (H, W). Shared by the PyTorch model and the ONNX runtime path
    (:mod:`detector.onnx_export`), so both post-process identically.
    """
    h, w = int(size[0]), int(size[1])
    scores_all = logits.float().softmax(dim=2)[..., 1]
    # Anchor blocks are contiguous per scale (scale-major order).
    bounds = torch.cumsum(torch.bincount(scale_ids, minlength=num_scales), 0)
    starts = [0, *bounds[:-1].tolist()]
    out = []
    for b in range(logits.shape[0]):
        keep = []
        for start, stop in zip(starts, bounds.tolist(), strict=True):
            block = scores_all[b, start:stop]
            k = min(pre_nms_top_n, block.numel())
            top_scores, top_idx = block.topk(k)
            keep.append(top_idx[top_scores > score_thresh] + start)
        idx = torch.cat(keep)
        boxes = coder.decode(deltas[b, idx], anchors[idx])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        scores = scores_all[b, idx]
        sids = scale_ids[idx]
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, sids = boxes[ok], scores[ok], sids[ok]
        groups = sids if per_scale else torch.zeros_like(sids)
        kept = batched_nms(boxes, scores, groups, nms_iou)[:max_det]
        out.append({"boxes": boxes[kept], "scores": scores[kept], "scale_ids": sids[kept]})
    return out


def build_detector(
    design: str | Design = "fpn-finest-sampling",
    backbone: str = "resnet50",
    backbone_weights: str | Path | None = None,
    **design_overrides,
) -> GroupSamplingDetector:
    """A :class:`GroupSamplingDetector` for a named design (overrides via ``get_design``).

    backbone: ``resnet50`` (paper), ``resnet18`` or ``tiny``; backbone_weights: a local
    torchvision-style state-dict file for the ResNet (random init when None).
    """
    return GroupSamplingDetector(get_design(design, **design_overrides), backbone, backbone_weights)
