"""Training augmentation from the paper (section 5): scale jitter, random crop, horizontal flip.

Each image is resized by ``0.25 * n`` with ``n`` drawn uniformly from 1..8, a patch is cropped
at a uniformly random position so that neither side exceeds ``max_side`` (1,200 px in the
paper), and the patch is mirrored with probability 1/2.

The transform is split in two so that box statistics can be computed without pixels:

* :meth:`TrainAugment.sample` draws the random parameters (:class:`AugmentParams`) for an
  image of a given size;
* :meth:`TrainAugment.apply_to_boxes` maps boxes (vectorised, no pixels needed);
* :meth:`TrainAugment.apply_to_image` produces the matching pixels.

Coordinates are continuous pixel coordinates (the image spans ``[0, W] x [0, H]``, pixel ``i``
covers ``[i, i + 1)``), so a box transforms exactly like the pixels it covers:
``x' = x * sx - crop_x`` and, when flipped, ``x' = crop_w - x'``.

Faces cut by the crop: a face keeps its label when at least ``min_visible`` of its area
(default one half) lies inside the crop; otherwise it becomes an ignore region (neither
positive nor negative for training). Faces entirely outside the crop are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PAPER_SCALES: tuple[float, ...] = tuple(0.25 * n for n in range(1, 9))


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation for an image of ``src_hw = (height, width)``.

    ``resized_hw`` is the image size after scale jitter (the per-axis factors are
    ``resized / src``, which differ from ``scale`` only by rounding); ``crop = (x0, y0, w, h)``
    is the kept window in resized pixels; ``flip`` mirrors the cropped patch left-right.
    """

    src_hw: tuple[int, int]
    scale: float
    resized_hw: tuple[int, int]
    crop: tuple[int, int, int, int]
    flip: bool

    @property
    def factors(self) -> tuple[float, float]:
        """Per-axis resize factors ``(sx, sy)`` from source to resized pixels."""
        return (
            self.resized_hw[1] / self.src_hw[1],
            self.resized_hw[0] / self.src_hw[0],
        )

    @property
    def out_hw(self) -> tuple[int, int]:
        """Size ``(height, width)`` of the augmented image."""
        return self.crop[3], self.crop[2]


class TrainAugment:
    """The paper's training augmentation (see the module docstring).

    Args:
        max_side: no side of the output exceeds this many pixels (random crop).
        scale_choices: resize factors drawn uniformly (default ``0.25 * n, n = 1..8``).
        flip: mirror left-right with probability 1/2.
        min_visible: a face cut by the crop keeps its label when at least this fraction of its
            area is inside; otherwise it becomes an ignore region.
    """

    def __init__(
        self,
        max_side: int = 1200,
        scale_choices: Sequence[float] = PAPER_SCALES,
        flip: bool = True,
        min_visible: float = 0.5,
    ) -> None:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        if not scale_choices or min(scale_choices) <= 0:
            raise ValueError(f"scale_choices must be positive, got {list(scale_choices)}")
        if not 0.0 < min_visible <= 1.0:
            raise ValueError(f"min_visible must be in (0, 1], got {min_visible}")
        self.max_side = int(max_side)
        self.scale_choices = tuple(float(s) for s in scale_choices)
        self.flip = bool(flip)
        self.min_visible = float(min_visible)

    def config(self) -> dict:
        """Plain-type description (for checkpoints and run records)."""
        return {
            "max_side": self.max_side,
            "scale_choices": list(self.scale_choices),
            "flip": self.flip,
            "min_visible": self.min_visible,
        }

    # -- parameters -------------------------------------------------------------------------

    def sample(self, height: int, width: int, rng: np.random.Generator) -> AugmentParams:
        """Draw scale, crop window and flip for an image of ``height x width`` pixels."""
        scale = self.scale_choices[int(rng.integers(len(self.scale_choices)))]
        rh = max(1, round(height * scale))
        rw = max(1, round(width * scale))
        cw = min(rw, self.max_side)
        ch = min(rh, self.max_side)
        x0 = int(rng.integers(rw - cw + 1))
        y0 = int(rng.integers(rh - ch + 1))
        flip = bool(self.flip and rng.random() < 0.5)
        return AugmentParams((int(height), int(width)), scale, (rh, rw), (x0, y0, cw, ch), flip)

    # -- boxes ------------------------------------------------------------------------------

    def apply_to_boxes(
        self, params: AugmentParams, boxes_xyxy: np.ndarray, ignore: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Map ``(N, 4)`` x1y1x2y2 source boxes and ``(N,)`` ignore flags through ``params``.

        Returns ``(boxes (M, 4) float32, ignore (M,) bool)`` with ``M <= N``: boxes are clipped
        to the crop, faces with less than ``min_visible`` of their area inside become ignore
        regions, and faces with no area inside are dropped. Order is preserved.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        ignore = np.asarray(ignore, dtype=bool).reshape(-1)
        if boxes.shape[0] != ignore.shape[0]:
            raise ValueError(f"{boxes.shape[0]} boxes but {ignore.shape[0]} ignore flags")
        sx, sy = params.factors
        x0, y0, cw, ch = params.crop
        moved = boxes * np.array([sx, sy, sx, sy]) - np.array([x0, y0, x0, y0])
        clipped = np.clip(moved, 0.0, np.array([cw, ch, cw, ch], dtype=np.float64))
        full_area = _area(moved)
        kept_area = _area(clipped)
        inside = kept_area > 0
        visible = np.where(full_area > 0, kept_area / np.maximum(full_area, 1e-12), 0.0)
        new_ignore = ignore | (visible < self.min_visible)
        out = clipped[inside]
        new_ignore = new_ignore[inside]
        if params.flip:
            out = flip_boxes(out, cw)
        return out.astype(np.float32).reshape(-1, 4), new_ignore

    # -- pixels -----------------------------------------------------------------------------

    def apply_to_image(self, params: AugmentParams, image: np.ndarray) -> np.ndarray:
        """The augmented ``(h, w, C)`` uint8 patch for an ``(H, W, C)`` image.

        ``image`` may be the source at a reduced resolution (e.g. a JPEG decoded at 1/2 or
        1/4 size): the factors are taken from its actual shape, so the result still lines up
        with :meth:`apply_to_boxes` up to the decoder's rounding.
        """
        rh, rw = params.resized_hw
        x0, y0, cw, ch = params.crop
        h, w = image.shape[:2]
        sx, sy = rw / w, rh / h
        if sx <= 1.0 and sy <= 1.0:
            # Shrinking: area interpolation over the whole image (the output is small anyway).
            resized = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA)
            out = resized[y0 : y0 + ch, x0 : x0 + cw]
        else:
            # Enlarging: compute only the cropped window. Pixel centres sit at i + 0.5, so the
            # continuous map x' = x * s - x0 becomes i' = i * s + (s - 1) / 2 - x0 on indices.
            matrix = np.array(
                [[sx, 0.0, (sx - 1.0) / 2.0 - x0], [0.0, sy, (sy - 1.0) / 2.0 - y0]],
                dtype=np.float64,
            )
            out = cv2.warpAffine(
                image,
                matrix,
                (cw, ch),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        if params.flip:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def __call__(
        self,
        image: np.ndarray,
        boxes_xyxy: np.ndarray,
        ignore: np.ndarray,
        rng: np.random.Generator,
        src_hw: tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, AugmentParams]:
        """Sample and apply in one go; ``src_hw`` is the size the boxes refer to (default:
        the image's own size). Returns ``(image, boxes, ignore, params)``."""
        height, width = src_hw if src_hw is not None else image.shape[:2]
        params = self.sample(height, width, rng)
        boxes, ignore = self.apply_to_boxes(params, boxes_xyxy, ignore)
        return self.apply_to_image(params, image), boxes, ignore, params


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def flip_boxes(boxes_xyxy: np.ndarray, width: float) -> np.ndarray:
    """Mirror ``(N, 4)`` x1y1x2y2 boxes left-right in an image ``width`` pixels wide."""
    b = np.asarray(boxes_xyxy)
    return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1).astype(b.dtype)
