"""Run a trained checkpoint on images: single-scale or the paper's multi-scale test.

:class:`CheckpointDetector` resizes every image to each pyramid scale (each side capped at
``max_side``, 3,000 px in the paper, and the area capped at ``max_pixels`` so CPUs and small
GPUs do not run out of memory), runs the detector, maps the boxes back to original pixels and
merges all levels with greedy NMS in float32 (:func:`chunked_nms`, exact and bounded in memory
for any number of boxes). At least 1,000 detections per image are kept by default (WIDER's
evaluation needs the low-score tail; no 100-box cap).

Each detection carries the anchor-scale index of the sub-detector that produced it
(0..3 for the paper's @16, @32, @64, @128 outputs).

``pre_nms_top_n`` (default: the model's, 5,000) caps the candidates per anchor scale and
level before NMS; lower it to trade a little of the low-score tail for speed on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou

from detector.checkpoint import load_checkpoint, nonfinite_tensors, resolve_checkpoint
from detector.devices import resolve_device
from facebench.errors import FacebenchError

DEFAULT_NMS_IOU = 0.3
PHASES = ("preprocess", "forward", "postprocess")
NMS_CHUNK = 8192  # candidates per NMS call: bounds the CUDA kernel's N x N/64 mask


def chunked_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    idxs: torch.Tensor,
    iou_threshold: float,
    max_keep: int,
    chunk: int = NMS_CHUNK,
) -> torch.Tensor:
    """Greedy NMS (per ``idxs`` group) over any number of boxes, first ``max_keep`` kept.

    Exactly ``torchvision.ops.batched_nms(...)[:max_keep]``, but it visits the boxes in score
    order ``chunk`` at a time: a chunk first loses the boxes that overlap an already-kept box
    of its group, then runs batched NMS on the rest. Memory stays ``O(chunk * max_keep)``.
    Returns indices into ``boxes``, by decreasing score. Computed in float32.
    """
    boxes = boxes.float()
    scores = scores.float()
    order = torch.argsort(scores, descending=True, stable=True)
    kept = torch.empty(0, dtype=torch.long, device=boxes.device)
    for start in range(0, order.numel(), chunk):
        cand = order[start : start + chunk]
        if kept.numel():
            iou = box_iou(boxes[cand], boxes[kept])
            same = idxs[cand][:, None] == idxs[kept][None, :]
            cand = cand[~((iou > iou_threshold) & same).any(dim=1)]
        if cand.numel():
            keep = batched_nms(boxes[cand], scores[cand], idxs[cand], iou_threshold)
            kept = torch.cat([kept, cand[keep]])
        if kept.numel() >= max_keep:
            return kept[:max_keep]
    return kept


def level_factor(
    height: int, width: int, scale: float, max_side: int, max_pixels: int | None
) -> float:
    """Resize factor for one pyramid level: ``scale``, reduced so that no side exceeds
    ``max_side`` and the area stays within ``max_pixels``."""
    factor = min(float(scale), max_side / max(height, width))
    if max_pixels is not None and height * width * factor * factor > max_pixels:
        factor = math.sqrt(max_pixels / (height * width))
    return factor


class CheckpointDetector:
    """A detector restored from a ``facebench train`` checkpoint (file or run folder).

    ``detect_batch(images)`` takes HxWx3 uint8 RGB arrays and returns, per image, a float32
    ``(K, 6)`` array ``x1, y1, x2, y2, score, scale_id`` in original image pixels, sorted by
    score, ``K <= max_detections``. ``scales`` are the pyramid's resize factors (``(1.0,)``
    is the single-scale test). ``nms_per_scale`` keeps the sub-detectors apart in the merge
    (NMS only among boxes of one anchor scale), for evaluating each @scale output alone.
    """

    def __init__(
        self,
        checkpoint: str,
        device: str = "cpu",
        scales: Sequence[float] = (1.0,),
        max_side: int = 3000,
        max_pixels: int | None = None,
        nms_iou: float = DEFAULT_NMS_IOU,
        score_thresh: float = 0.01,
        max_detections: int = 1000,
        batch_size: int = 1,
        nms_per_scale: bool = False,
        pre_nms_top_n: int | None = None,
    ) -> None:
        from detector.model import build_detector

        self.device = resolve_device(device)
        self.checkpoint = str(resolve_checkpoint(checkpoint))
        state = load_checkpoint(self.checkpoint)
        self.nonfinite = nonfinite_tensors(state["model"])  # names of NaN/inf weight tensors
        self.design = str(state["design"])
        self.backbone = str(state["backbone"])
        self.iteration = int(state["iteration"])
        model = build_detector(
            design=self.design, backbone=self.backbone, backbone_weights=None,
            **dict(state.get("overrides") or {}),
        )
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise FacebenchError(
                f"{self.checkpoint}: weights do not fit the model: {first}"
            ) from None
        self._configure(
            model.to(self.device).eval(), scales, max_side, max_pixels, nms_iou, score_thresh,
            max_detections, batch_size, nms_per_scale, pre_nms_top_n,
        )  # fmt: skip
        self.name = f"{self.design}/{self.backbone}@{Path(self.checkpoint).name}"

    def _configure(
        self, model, scales, max_side, max_pixels, nms_iou, score_thresh, max_detections,
        batch_size, nms_per_scale, pre_nms_top_n,
    ) -> None:  # fmt: skip
        """Check the test options and set them on this detector and its ``model`` (a
        :class:`GroupSamplingDetector`, or anything with ``dense_outputs``/``postprocess``,
        ``mean`` and the same settings, such as the ONNX runtime model)."""
        if not scales or min(scales) <= 0:
            raise FacebenchError(f"scales must be positive, got {list(scales)}")
        if max_side < 32:
            raise FacebenchError(f"max_side must be at least 32 px, got {max_side}")
        if max_pixels is not None and max_pixels < 32 * 32:
            raise FacebenchError(f"max_pixels must be at least 1024, got {max_pixels}")
        if not 0.0 < nms_iou <= 1.0:
            raise FacebenchError(f"nms_iou must be in (0, 1], got {nms_iou}")
        if max_detections < 1 or batch_size < 1:
            raise FacebenchError("max_detections and batch_size must be >= 1")
        self.model = model
        self.scales = tuple(float(s) for s in scales)
        self.max_side = int(max_side)
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.nms_iou = float(nms_iou)
        self.score_thresh = float(score_thresh)
        self.max_detections = int(max_detections)
        self.batch_size = int(batch_size)
        self.nms_per_scale = bool(nms_per_scale)
        # Each level keeps its own tail; the merge then keeps max_detections overall.
        self.model.score_thresh = self.score_thresh
        self.model.nms_iou = self.nms_iou
        self.model.max_detections = self.max_detections
        self.model.nms_per_scale = self.nms_per_scale
        if pre_nms_top_n is not None:
            if pre_nms_top_n < 1:
                raise FacebenchError(f"pre_nms_top_n must be >= 1, got {pre_nms_top_n}")
            self.model.pre_nms_top_n = int(pre_nms_top_n)
        # Wall / process-CPU seconds per phase over all detect_batch calls (facebench bench).
        self.phase_seconds = dict.fromkeys(PHASES, 0.0)
        self.phase_cpu_seconds = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def _phase(self, name: str):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.phase_seconds[name] += time.perf_counter() - start
            self.phase_cpu_seconds[name] += time.process_time() - cpu

    def protocol(self) -> dict:
        """Everything that defines this test, as plain values."""
        return {
            "detector": "facebench-checkpoint",
            "name": self.name,
            "checkpoint": str(Path(self.checkpoint).resolve()),
            "iteration": self.iteration,
            "design": self.design,
            "backbone": self.backbone,
            "scales": list(self.scales),
            "max_side": self.max_side,
            "max_pixels": self.max_pixels,
            "score_thresh": self.score_thresh,
            "nms_iou": self.nms_iou,
            "nms": "greedy, float32, merged over pyramid levels"
            + (" within each anchor scale" if self.nms_per_scale else " across anchor scales"),
            "nms_per_scale": self.nms_per_scale,
            "max_detections": self.max_detections,
            "pre_nms_top_n": getattr(self.model, "pre_nms_top_n", None),
            "batch_size": self.batch_size,
            "device": str(self.device),
            "box_format": "x1,y1,x2,y2 in original image pixels (continuous coordinates)",
        }

    @torch.inference_mode()
    def detect_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Detections for each image: float32 ``(K, 6)`` x1, y1, x2, y2, score, scale_id."""
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise FacebenchError(
                    f"image {i}: expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}"
                )
        levels: list[list[torch.Tensor]] = [[] for _ in images]
        for scale in self.scales:
            for start in range(0, len(images), self.batch_size):
                part = images[start : start + self.batch_size]
                for k, dets in enumerate(self._run_level(part, scale)):
                    levels[start + k].append(dets)
        with self._phase("postprocess"):
            return [self._merge(parts) for parts in levels]

    def _run_level(self, images: list[np.ndarray], scale: float) -> list[torch.Tensor]:
        """One pyramid level for a batch: ``(K, 6)`` float32 tensors in original pixels."""
        with self._phase("preprocess"):
            batch, factors, sizes = self._prepare(images, scale)
        outputs = self._infer(batch)
        with self._phase("postprocess"):
            return self._restore(outputs, factors, sizes)

    def _prepare(self, images: list[np.ndarray], scale: float):
        """Resize each image for the level and batch them: (batch, factors, resized sizes)."""
        resized, factors = [], []
        for image in images:
            h, w = image.shape[:2]
            f = level_factor(h, w, scale, self.max_side, self.max_pixels)
            nh, nw = max(1, round(h * f)), max(1, round(w * f))
            interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
            out = image if (nh, nw) == (h, w) else cv2.resize(image, (nw, nh), interpolation=interp)
            resized.append(out)
            factors.append((nw / w, nh / h))
        height = max(r.shape[0] for r in resized)
        width = max(r.shape[1] for r in resized)
        # Pad mixed sizes with the normalisation mean: the model's own padding value.
        fill = getattr(self.model, "mean", torch.zeros(1, 3, 1, 1)).reshape(3, 1, 1).cpu()
        batch = fill.expand(len(resized), 3, height, width).clone()
        for i, r in enumerate(resized):
            patch = torch.from_numpy(r).permute(2, 0, 1).float().div_(255.0)
            batch[i, :, : r.shape[0], : r.shape[1]] = patch
        return batch.to(self.device), factors, [r.shape[:2] for r in resized]

    def _infer(self, batch: torch.Tensor) -> list[dict]:
        """The model on a batch: network (``forward`` phase), then its post-processing."""
        if getattr(self.model, "second_stage", None) is not None:
            with self._phase("forward"):  # the second stage needs the features: one call
                return self.model(batch)
        with self._phase("forward"):
            logits, deltas = self.model.dense_outputs(batch)
        with self._phase("postprocess"):
            return self.model.postprocess(logits, deltas, batch.shape[-2:])

    @staticmethod
    def _restore(outputs: list[dict], factors, sizes) -> list[torch.Tensor]:
        """Per image ``(K, 6)``: boxes clipped to the resized image, mapped to original pixels."""
        results = []
        for (fx, fy), (rh, rw), out in zip(factors, sizes, outputs, strict=True):
            boxes = out["boxes"].float()
            # Boxes may reach into the zero padding of a mixed-size batch: clip to the image.
            boxes = torch.stack(
                [
                    boxes[:, 0].clamp(0, rw) / fx,
                    boxes[:, 1].clamp(0, rh) / fy,
                    boxes[:, 2].clamp(0, rw) / fx,
                    boxes[:, 3].clamp(0, rh) / fy,
                ],
                dim=1,
            )
            results.append(
                torch.cat(
                    [boxes, out["scores"].float()[:, None], out["scale_ids"].float()[:, None]],
                    dim=1,
                )
            )
        return results

    def _merge(self, parts: list[torch.Tensor]) -> np.ndarray:
        dets = torch.cat(parts) if parts else torch.zeros((0, 6))
        valid = (dets[:, 2] > dets[:, 0]) & (dets[:, 3] > dets[:, 1])
        dets = dets[valid & (dets[:, 4] >= self.score_thresh)]
        groups = dets[:, 5].long() if self.nms_per_scale else torch.zeros_like(dets[:, 5]).long()
        keep = chunked_nms(dets[:, :4], dets[:, 4], groups, self.nms_iou, self.max_detections)
        dets = dets[keep]
        return dets.cpu().numpy().astype(np.float32, copy=False)
