"""Annotation rules: WIDER boxes and attributes, FDDB ellipses, easy/medium/hard subsets.

Per face (from the drawn geometry and the measured visible fraction of its head ellipse):

- WIDER box: the axis-aligned box of the (rolled) head ellipse, rounded to whole pixels
  and clipped to the image; ``x y w h``.
- FDDB ellipse: the head ellipse itself, ``(major, minor, angle, cx, cy)`` with the major
  radius ``b`` along the face and ``angle`` the direction of that axis in radians in
  (-pi/2, pi/2] (vertical faces have angle near +-pi/2, as in FDDB).
- Attributes (WIDER order): blur = the rendered blur level (0 clear, 1 normal, 2 heavy);
  expression = 0; illumination = 0; occlusion from the visible fraction ``v`` of the head
  ellipse (covered by occluders, other faces or the image border): 0 if ``v >= 0.95``,
  1 (partial) if ``v >= 0.65``, else 2 (heavy); pose = 1 (atypical) when
  ``|yaw| > 0.6`` rad or ``|roll| > 0.45`` rad; invalid = 1 when ``v < 0.3`` or the
  clipped box is under 4 px on a side.
- Subsets (invalid faces are in none; easy within medium within hard, like the official
  lists whose face heights start near 50, 30 and 10 px):
  easy: ``h >= 50`` and blur 0 and occlusion 0; medium: ``h >= 30`` and occlusion < 2;
  hard: ``h >= 10``.
"""

from __future__ import annotations

import numpy as np

#: Human-readable form of the rules, copied into the manifest.
RULES: dict[str, str] = {
    "easy": "valid and height >= 50 and blur == 0 and occlusion == 0",
    "medium": "valid and height >= 30 and occlusion < 2",
    "hard": "valid and height >= 10",
    "invalid": "visible fraction of the head ellipse < 0.3 or clipped box side < 4 px",
    "occlusion": "visible fraction v of the head ellipse: 0 if v >= 0.95, 1 if v >= 0.65, else 2",
    "blur": "rendered Gaussian blur level: 0 none, 1 sigma 0.025..0.05 h, 2 sigma 0.07..0.14 h",
    "pose": "1 (atypical) if |yaw| > 0.6 rad or |roll| > 0.45 rad",
    "box": "axis-aligned box of the head ellipse, rounded to pixels, clipped to the image",
    "ellipse": "the head ellipse: major = b, minor = a, angle of the major axis in radians",
}
SUBSETS = ("easy", "medium", "hard")


def ellipse_boxes(cx, cy, a, b, roll, width: int, height: int) -> np.ndarray:
    """(N, 4) ``x y w h``: bounding boxes of ellipses (semi-axes ``a`` across and ``b``
    along the face, rotated by ``roll``), rounded to pixels and clipped to the image."""
    c, s = np.cos(roll), np.sin(roll)
    half_w = np.sqrt((a * c) ** 2 + (b * s) ** 2)
    half_h = np.sqrt((a * s) ** 2 + (b * c) ** 2)
    x1 = np.clip(np.round(cx - half_w), 0, width)
    y1 = np.clip(np.round(cy - half_h), 0, height)
    x2 = np.clip(np.round(cx + half_w), 0, width)
    y2 = np.clip(np.round(cy + half_h), 0, height)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.float64).reshape(-1, 4)


def fddb_ellipses(cx, cy, a, b, roll) -> np.ndarray:
    """(N, 5) ``major minor angle cx cy``: the head ellipse in FDDB's convention.

    The face's own axis points along ``(-sin roll, cos roll)`` on screen (y down), i.e. at
    angle ``roll + pi/2``; folded into (-pi/2, pi/2] as FDDB's annotations are.
    """
    angle = np.asarray(roll, dtype=np.float64) + np.pi / 2
    angle = np.where(angle > np.pi / 2, angle - np.pi, angle)
    return np.stack([b, a, angle, cx, cy], axis=1).astype(np.float64).reshape(-1, 5)


def attributes(
    boxes: np.ndarray, blur_level: np.ndarray, visible: np.ndarray, yaw: np.ndarray,
    roll: np.ndarray
) -> np.ndarray:
    """(N, 6) int32 WIDER attributes ``blur expression illumination invalid occlusion
    pose`` from the boxes (N, 4), blur levels, visible fractions (0..1) and angles."""
    n = len(boxes)
    occlusion = np.where(visible >= 0.95, 0, np.where(visible >= 0.65, 1, 2))
    invalid = (visible < 0.3) | (np.minimum(boxes[:, 2], boxes[:, 3]) < 4)
    pose = (np.abs(yaw) > 0.6) | (np.abs(roll) > 0.45)
    zeros = np.zeros(n, np.int64)
    out = np.stack([blur_level, zeros, zeros, invalid, occlusion, pose], axis=1)
    return out.astype(np.int32).reshape(-1, 6)


def subset_masks(boxes: np.ndarray, attrs: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks (N,) of the faces kept in easy, medium and hard (see the rules)."""
    h = boxes[:, 3]
    blur, invalid, occlusion = attrs[:, 0], attrs[:, 3], attrs[:, 4]
    valid = invalid == 0
    return {
        "easy": valid & (h >= 50) & (blur == 0) & (occlusion == 0),
        "medium": valid & (h >= 30) & (occlusion < 2),
        "hard": valid & (h >= 10),
    }
