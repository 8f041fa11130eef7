"""Protocol checks and operating points for ``facebench eval fddb`` (as for WIDER, see
:mod:`.checks` and :mod:`.operating_points`).

Operating points use the discrete ROC: its rows (one per distinct score) are read from the
highest threshold down, with ``proposals = FP + TP``, recall = TPR and false positives per
image = FP / images; thresholds are the detector's own scores. Elliptical regions enter the
checks as their axis-aligned bounding boxes; the annotated faces' heights are those of the
annotation ellipses' bounding boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebench.evaluation.checks import Check, ProtocolHints, protocol_checks
from facebench.evaluation.fddb import FddbResult
from facebench.evaluation.operating_points import operating_points
from facebench.evaluation.wider_extras import read_protocol_hints
from facebench.formats.fddb import FddbImage


@dataclass
class FddbAnalysis:
    """Checks and discrete-ROC operating points of one method."""

    hints: ProtocolHints
    checks: list[Check]
    operating_points: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        return [c.message for c in self.checks if c.status == "warn"]

    def as_json(self) -> dict[str, Any]:
        return {
            "protocol_hints": self.hints.as_json(),
            "checks": [c.as_json() for c in self.checks],
            "operating_points": {"discrete": self.operating_points},
            "warnings": self.warnings,
        }


def ellipse_boxes(ellipses: np.ndarray) -> np.ndarray:
    """(N, >=5) ``ra rb theta cx cy`` -> (N, 4) ``x y w h`` of the bounding boxes."""
    e = np.asarray(ellipses, dtype=np.float64).reshape(-1, ellipses.shape[-1])
    ra, rb, theta, cx, cy = e[:, 0], e[:, 1], e[:, 2], e[:, 3], e[:, 4]
    half_w = np.hypot(ra * np.cos(theta), rb * np.sin(theta))
    half_h = np.hypot(ra * np.sin(theta), rb * np.cos(theta))
    return np.column_stack([cx - half_w, cy - half_h, 2 * half_w, 2 * half_h])


def fddb_protocol_hints(dets_path: str | Path) -> ProtocolHints:
    """Hints from the ``protocol.json`` beside a detection file (or in a detection folder)."""
    return read_protocol_hints(dets_path)


def analyse_fddb(
    images: Sequence[FddbImage],
    sizes: dict[str, tuple[int, int]],
    per_image: Sequence[np.ndarray],
    kind: str,
    result: FddbResult,
    *,
    hints: ProtocolHints | None = None,
    at_precision: float = 0.9,
    at_fppi: float = 1.0,
) -> FddbAnalysis:
    """Checks and operating points of one method; ``per_image``: its regions per image in
    ``images`` order (rectangles ``x y w h s`` or ellipses ``ra rb theta cx cy s``)."""
    counts = np.array([len(d) for d in per_image], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(counts)]
    width = 5 if kind == "rect" else 6
    regions = (
        np.concatenate([np.asarray(d, np.float64).reshape(-1, width) for d in per_image])
        if len(per_image)
        else np.zeros((0, width))
    )
    boxes = regions[:, :4] if kind == "rect" else ellipse_boxes(regions[:, :5])
    rows = np.column_stack([boxes, regions[:, -1]])
    faces = [im.ellipses for im in images if len(im.ellipses)]
    gt_heights = ellipse_boxes(np.concatenate(faces))[:, 3] if faces else np.zeros(0)
    hints = hints or ProtocolHints()
    checks = protocol_checks(
        rows,
        offsets,
        image_sizes=np.array([sizes[im.name] for im in images], dtype=np.float64).reshape(-1, 2),
        gt_heights=gt_heights,
        hints=hints,
        image_names=[im.name for im in images],
    )
    r = result.rows
    points = operating_points(
        r.threshold[::-1],
        r.tp_discrete[::-1],
        (r.fp + r.tp_discrete)[::-1],
        r.n_faces,
        result.n_images,
        at_precision=at_precision,
        at_fppi=at_fppi,
        to_score=lambda t: t,
    )
    return FddbAnalysis(hints, checks, points)
