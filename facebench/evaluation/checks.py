"""Protocol checks: does a prediction set look like the protocol a published AP assumes?

Published WIDER FACE / FDDB numbers come from detectors run at (several) full-resolution
test scales that keep low-confidence detections. Predictions that break this still evaluate,
but to a lower AP that users then fail to match with a paper. Each check looks at the
predictions (and, where known, the image sizes, the ground truth and the ``protocol.json``
that ``facebench detect`` writes) and returns one :class:`Check`:

* ``thresholded``: the smallest score is above :data:`MIN_SCORE` (0.05), the detector's
  recorded score threshold is above it, or there are fewer than :data:`BOXES_PER_FACE`
  (1.5) boxes per annotated face (a low threshold gives many more boxes than faces).
* ``equal_scores``: every score is the same (the curve collapses to one point; WIDER's
  normalisation turns every score into NaN and nothing passes a threshold).
* ``low_resolution``: no box is smaller than :data:`SMALL_FACE_PX` (10 px high) although the
  ground truth has such faces (or, without ground truth, at all), or the recorded / given test
  scales all lie below 1 (images shrunk before detection).
* ``outside_image``: boxes whose centre lies outside their image (by more than
  :data:`OUTSIDE_MARGIN_PX`, 2 px: a coordinate-system
  error: boxes for a resized image, ``x2 y2`` written as ``w h``...). Needs image sizes;
  ``skipped`` without them. Boxes reaching past the border with their centre inside are
  counted (``partly_outside``) but are legitimate (faces cut by the border).

Everything is vectorised over the flat (M, 5) ``x y w h score`` rows; no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_SCORE = 0.05
BOXES_PER_FACE = 1.5
SMALL_FACE_PX = 10.0
OUTSIDE_MARGIN_PX = 2.0
OK, WARN, SKIPPED = "ok", "warn", "skipped"


@dataclass
class Check:
    """One check's outcome: ``status`` is ``ok``, ``warn`` or ``skipped``; ``values`` holds
    the measured quantities (plain JSON values)."""

    name: str
    status: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, **self.values}


@dataclass
class ProtocolHints:
    """What is known about how the predictions were made.

    ``score_thresh``: the detector's score threshold; ``test_scales``: pyramid factors (1 =
    the image as stored); ``source``: where the hints came from (``protocol.json`` path,
    ``flags``), recorded in the report.
    """

    score_thresh: float | None = None
    test_scales: tuple[float, ...] | None = None
    source: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any] | None, source: str | None = None):
        """Hints from a ``protocol.json`` document of ``facebench detect`` (None: unknown)."""
        if not record:
            return cls(source=source)
        det = record.get("detector_protocol") or {}
        opts = record.get("options") or {}
        # Our checkpoints record ``score_thresh``, the peer adapters ``score_threshold``.
        thresh = det.get("score_thresh", det.get("score_threshold", opts.get("score_thresh")))
        scales = det.get("scales")
        return cls(
            score_thresh=float(thresh) if isinstance(thresh, int | float) else None,
            test_scales=tuple(float(s) for s in scales) if isinstance(scales, list) else None,
            source=source,
        )

    def override(self, score_thresh: float | None, test_scales: Sequence[float] | None):
        """These hints with the flags given on the command line taking precedence."""
        given = score_thresh is not None or test_scales is not None
        return ProtocolHints(
            score_thresh=self.score_thresh if score_thresh is None else float(score_thresh),
            test_scales=self.test_scales if test_scales is None else tuple(test_scales),
            source=("flags" if self.source is None else f"{self.source} + flags")
            if given
            else self.source,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "score_thresh": self.score_thresh,
            "test_scales": list(self.test_scales) if self.test_scales else None,
            "source": self.source,
        }


def protocol_checks(
    rows: np.ndarray,
    offsets: np.ndarray,
    *,
    image_sizes: np.ndarray | None = None,
    gt_heights: np.ndarray | None = None,
    hints: ProtocolHints | None = None,
    image_names: Sequence[str] | None = None,
) -> list[Check]:
    """Run every check on one prediction set.

    ``rows``: (M, >=5) ``x y w h score`` of all images; ``offsets``: (N + 1,) image ``i`` owns
    ``rows[offsets[i]:offsets[i+1]]``. ``image_sizes``: optional (N, 2) width, height (NaN
    where unknown). ``gt_heights``: optional heights of the annotated faces (all images).
    ``image_names``: optional (N,) names used in messages.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, rows.shape[1] if rows.ndim == 2 else 5)
    offsets = np.asarray(offsets, dtype=np.int64)
    hints = hints or ProtocolHints()
    return [
        _thresholded(rows, offsets, gt_heights, hints),
        _equal_scores(rows),
        _low_resolution(rows, gt_heights, hints),
        _outside_image(rows, offsets, image_sizes, image_names),
    ]


def _thresholded(rows, offsets, gt_heights, hints: ProtocolHints) -> Check:
    n_images = max(1, len(offsets) - 1)
    scores = rows[:, 4]
    values: dict[str, Any] = {
        "min_score": float(scores.min()) if scores.size else None,
        "boxes_per_image": round(len(rows) / n_images, 3),
        "faces_per_image": None if gt_heights is None else round(len(gt_heights) / n_images, 3),
        "score_thresh": hints.score_thresh,
    }
    reasons = []
    if scores.size and scores.min() > MIN_SCORE:
        reasons.append(f"the smallest score is {scores.min():.3g} (> {MIN_SCORE})")
    if hints.score_thresh is not None and hints.score_thresh > MIN_SCORE:
        reasons.append(f"the detector ran with score threshold {hints.score_thresh:g}")
    if gt_heights is not None and len(gt_heights) and len(rows) < BOXES_PER_FACE * len(gt_heights):
        reasons.append(
            f"{len(rows)} boxes for {len(gt_heights)} faces (< {BOXES_PER_FACE} per face)"
        )
    if reasons:
        return Check(
            "thresholded",
            WARN,
            "predictions look pre-thresholded (" + "; ".join(reasons) + "), which lowers AP; "
            f"keep detections down to a score of about {MIN_SCORE:g}",
            values,
        )
    return Check("thresholded", OK, "low-confidence detections kept", values)


def _equal_scores(rows) -> Check:
    distinct = int(np.unique(rows[:, 4]).size)
    values = {"distinct_scores": distinct}
    if len(rows) > 1 and distinct == 1:
        return Check(
            "equal_scores",
            WARN,
            f"all {len(rows)} scores equal {rows[0, 4]:g}: the curve has one point and WIDER's "
            "score normalisation makes every score NaN (AP 0); write real confidences",
            values,
        )
    return Check("equal_scores", OK, f"{distinct} distinct scores", values)


def _low_resolution(rows, gt_heights, hints: ProtocolHints) -> Check:
    heights = rows[:, 3]
    small = int((heights < SMALL_FACE_PX).sum())
    gt_small = None if gt_heights is None else int((gt_heights < SMALL_FACE_PX).sum())
    values: dict[str, Any] = {
        "boxes_under_10px": small,
        "faces_under_10px": gt_small,
        "smallest_box_height": float(heights.min()) if heights.size else None,
        "test_scales": list(hints.test_scales) if hints.test_scales else None,
    }
    reasons = []
    if len(rows) and small == 0 and (gt_small is None or gt_small > 0):
        what = f" although {gt_small} annotated faces are" if gt_small else ""
        reasons.append(
            f"no box is under {SMALL_FACE_PX:g} px high{what} (smallest "
            f"{heights.min():.1f} px): the images look tested once at low resolution"
        )
    if hints.test_scales and max(hints.test_scales) < 1:
        reasons.append(f"every test scale is below 1 ({', '.join(map(str, hints.test_scales))})")
    if reasons:
        return Check(
            "low_resolution",
            WARN,
            "; ".join(reasons) + "; small faces are missed (published results use "
            "full-resolution, usually multi-scale testing)",
            values,
        )
    return Check("low_resolution", OK, f"{small} boxes under {SMALL_FACE_PX:g} px", values)


def _outside_image(rows, offsets, image_sizes, image_names) -> Check:
    if image_sizes is None:
        return Check(
            "outside_image", SKIPPED, "image sizes unknown (give the images or a size CSV)", {}
        )
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    per_box = np.repeat(sizes, np.diff(offsets), axis=0)
    known = np.isfinite(per_box).all(axis=1)
    x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    cx, cy = x + w / 2, y + h / 2
    width, height = per_box[:, 0], per_box[:, 1]
    d = OUTSIDE_MARGIN_PX  # rounding and jitter of boxes at the border are no error
    centre_out = known & ((cx < -d) | (cy < -d) | (cx > width + d) | (cy > height + d))
    partly = known & ((x < -1) | (y < -1) | (x + w > width + 1) | (y + h > height + 1))
    values = {
        "boxes_checked": int(known.sum()),
        "centre_outside": int(centre_out.sum()),
        "partly_outside": int(partly.sum()),
    }
    if centre_out.any():
        first = int(np.flatnonzero(centre_out)[0])
        image = int(np.searchsorted(offsets, first, side="right") - 1)
        where = image_names[image] if image_names is not None else f"#{image}"
        return Check(
            "outside_image",
            WARN,
            f"{int(centre_out.sum())} of {int(known.sum())} boxes have their centre outside "
            f"the image (first: {where}, box {np.round(rows[first, :4], 1).tolist()} in "
            f"a {int(width[first])}x{int(height[first])} image): wrong coordinates or image size",
            values,
        )
    return Check("outside_image", OK, "every box centre lies inside its image", values)
