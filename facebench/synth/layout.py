"""Scene layout: image size, scene type, face sizes and placement, distractors, occluders.

Distribution (sizes are given at the reference image size, long side 512 px, and scale
with ``max_side / 512``; ``h`` is the height of the head ellipse, ``2 b``, which is also
the WIDER box height up to roll):

- Image: long side ``max_side``; aspect (w:h) 4:3 (35%), 3:2 (20%), 16:9 (15%), 1:1 (10%),
  3:4 (12%), 2:3 (8%).
- Scene type per image, with its WIDER-style event folder:

  ========  =====  ==================  ===========================================
  scene     share  event               faces
  ========  =====  ==================  ===========================================
  street    28%    ``0--Street``       2..25 (log-uniform), h ~ LogNormal(ln 26, 0.85)
  park      10%    ``4--Park``         as street, outdoor palette
  crowd      7%    ``1--Crowd``        rows with perspective: h from U(6, 10) at the top
                                       row to U(16, 40) at the bottom, thinned at random
                                       to about N ~ log-uniform(50, 300) faces
  portrait  20%    ``2--Portrait``     1..3, h log-uniform in [50, cap]
  group     30%    ``3--Group``        3..16 in one to three rows, h = base * U(0.8, 1.25),
                                       base log-uniform in [24, 150]
  empty      5%    street or park      none (distractors only)
  ========  =====  ==================  ===========================================

  All heights are clipped to ``[6, cap]`` with ``cap = min(400, 0.85 * short side)``
  (after scaling). Over many images this is long-tailed like WIDER FACE: most faces are
  small (crowds and streets), a few are large (portraits); the median (about 14 px) is
  well below the mean (about 26 px). ``facebench data synth`` measures the histogram into
  ``synth.json``.
- Head ellipse: ``a = b * U(0.72, 0.86)``; roll ~ N(0, 0.12) rad, 5% tilted heads
  N(0, 0.45) (clipped to +-0.8); yaw ~ N(0, 0.3) rad clipped to +-1.25.
- Blur level (0 clear, 1 normal, 2 heavy) by size: h < 16: 25/35/40%; h < 40: 50/32/18%;
  else 75/17/8%. Gaussian sigma: level 1 ``U(0.025, 0.05) * h + 0.3``, level 2
  ``U(0.07, 0.14) * h + 0.6`` pixels.
- Occluders: per face with probability 30% (street/park/group), 15% (portrait), 12% (crowd),
  halved for faces with ``h >= 50``: a bar, hand or blob entering from a random direction,
  aimed to cover U(0.1, 0.6) of the face; the covered fraction actually reached is
  measured after drawing.
- Placement: centres uniform (portrait and group faces in the upper/middle band); 15% of
  faces may be cut by the image border (up to 40% outside), the others lie inside. Largest
  first, a face is rejected when more than 15% of its box lies under an earlier (larger,
  so later drawn) face's head or body, and dropped after 40 rejections. Crowds are rows
  drawn from the back, so nearer rows overlap the chins of farther ones.
- Distractors (face-like objects that are not faces, see
  :func:`facebench.synth.render.render_distractor`): 1..15 per image by scene, sizes
  log-normal around 18 px (40 px in portraits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.synth.render import DISTRACTOR_KINDS

REFERENCE_SIDE = 512
MIN_FACE = 6.0
MAX_FACE = 400.0

ASPECTS = ((4, 3), (3, 2), (16, 9), (1, 1), (3, 4), (2, 3))
ASPECT_WEIGHTS = (0.35, 0.2, 0.15, 0.1, 0.12, 0.08)

#: scene -> (share, event folder, background family)
SCENES: dict[str, tuple[float, str, str]] = {
    "street": (0.28, "0--Street", "street"),
    "park": (0.10, "4--Park", "park"),
    "crowd": (0.07, "1--Crowd", "street"),
    "portrait": (0.20, "2--Portrait", "indoor"),
    "group": (0.30, "3--Group", "indoor"),
    "empty": (0.05, "0--Street", "street"),
}
EVENTS: tuple[str, ...] = ("0--Street", "1--Crowd", "2--Portrait", "3--Group", "4--Park")

OCCLUDER_PROBABILITY = {"street": 0.3, "park": 0.3, "portrait": 0.15, "group": 0.3,
                        "crowd": 0.12, "empty": 0.0}
DISTRACTOR_COUNTS = {"street": (2, 10), "park": (2, 10), "portrait": (1, 4), "group": (2, 6),
                     "crowd": (3, 15), "empty": (4, 14)}
DISTRACTOR_WEIGHTS = (0.22, 0.13, 0.17, 0.2, 0.13, 0.15)
BLUR_LEVEL_P = ((16.0, (0.25, 0.35, 0.40)), (40.0, (0.5, 0.32, 0.18)), (np.inf, (0.75, 0.17, 0.08)))


@dataclass
class Faces:
    """Face geometry, one entry per face, all arrays (N,): centre ``cx, cy`` and semi-axes
    ``a`` (across), ``b`` (along the face) of the head ellipse in pixels, ``roll`` and
    ``yaw`` in radians, ``blur_level`` (0/1/2) and ``blur_sigma`` in pixels."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    roll: np.ndarray
    yaw: np.ndarray
    blur_level: np.ndarray
    blur_sigma: np.ndarray

    def __len__(self) -> int:
        return len(self.cx)

    def take(self, index: np.ndarray) -> Faces:
        return Faces(**{k: v[index] for k, v in vars(self).items()})


@dataclass(frozen=True)
class Distractor:
    kind: str
    cx: float
    cy: float
    size: float
    roll: float


@dataclass(frozen=True)
class Occluder:
    kind: str
    cx: float
    cy: float
    half_length: float
    half_width: float
    angle: float


@dataclass
class Scene:
    """Everything the renderer needs for one image, except appearance details. Faces are
    in drawing order: far ones first, so that nearer ones overlap them."""

    kind: str
    event: str
    family: str
    width: int
    height: int
    faces: Faces
    distractors: list[Distractor] = field(default_factory=list)
    occluders: list[Occluder] = field(default_factory=list)
    jpeg_quality: int = 90


def sample_scene(rng: np.random.Generator, max_side: int) -> Scene:
    """Draw one scene (see the module docstring for the distribution)."""
    names = list(SCENES)
    shares = np.array([SCENES[n][0] for n in names])
    kind = names[int(rng.choice(len(names), p=shares / shares.sum()))]
    _, event, family = SCENES[kind]
    if kind == "empty" and rng.random() < 0.3:
        event, family = "4--Park", "park"
    aw, ah = ASPECTS[int(rng.choice(len(ASPECTS), p=ASPECT_WEIGHTS))]
    width, height = (max_side, round(max_side * ah / aw)) if aw >= ah else (
        round(max_side * aw / ah), max_side)
    scale = max_side / REFERENCE_SIDE
    cap = min(MAX_FACE * scale, 0.85 * min(width, height))
    heights, centres = _faces_for(kind, rng, width, height, scale, cap)
    faces = _geometry(rng, heights, centres)
    distractors = _distractors(kind, rng, width, height, scale, cap)
    occluders = _occluders(kind, rng, faces)
    return Scene(kind, event, family, width, height, faces, distractors, occluders,
                 jpeg_quality=int(rng.integers(82, 96)))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int | None = None):
    return np.exp(rng.uniform(np.log(lo), np.log(max(hi, lo)), n))


def _faces_for(kind, rng, width, height, scale, cap) -> tuple[np.ndarray, np.ndarray]:
    """Heights (N,) and centres (N, 2) for a scene kind, in drawing order (far first)."""
    if kind == "empty":
        return np.zeros(0), np.zeros((0, 2))
    if kind == "crowd":
        return _crowd(rng, width, height, scale, cap)
    if kind in ("street", "park"):
        n = int(np.round(_log_uniform(rng, 2, 25)))
        h = np.exp(rng.normal(np.log(26.0), 0.85, n)) * scale
        band = (0.0, 1.0)
    elif kind == "portrait":
        n = int(rng.choice([1, 1, 1, 2, 2, 3]))
        h = _log_uniform(rng, 50 * scale, cap, n)
        band = (0.2, 0.6)
    elif kind == "group":
        n = int(rng.integers(3, 17))
        h = _log_uniform(rng, 24, 150) * scale * rng.uniform(0.8, 1.25, n)
        band = (0.2, 0.75)
    else:
        raise ValueError(f"unknown scene kind {kind!r}")
    h = np.clip(h, MIN_FACE, cap)
    placed_h, placed_c = _place(rng, h, width, height, band)
    return placed_h[::-1], placed_c[::-1]  # placed largest first; drawn smallest (far) first


def _overlap(cand: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(C, K) intersection of candidate boxes (C, 4) with boxes (K, 4), both ``x1 y1 x2 y2``,
    over the candidate's area."""
    ix = np.clip(np.minimum(cand[:, None, 2], boxes[None, :, 2])
                 - np.maximum(cand[:, None, 0], boxes[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(cand[:, None, 3], boxes[None, :, 3])
                 - np.maximum(cand[:, None, 1], boxes[None, :, 1]), 0, None)
    area = (cand[:, 2] - cand[:, 0]) * (cand[:, 3] - cand[:, 1])
    return ix * iy / np.maximum(area[:, None], 1e-9)


def _place(rng, heights, width, height, band) -> tuple[np.ndarray, np.ndarray]:
    """Rejection-sample centres, largest faces first; drop a face that finds no room.

    A candidate is rejected when more than 15% of its head box lies under an earlier
    (larger, so later drawn) face's head or body (neck and shoulders below the head).
    """
    order = np.argsort(-heights, kind="stable")
    heads, bodies = np.zeros((0, 4)), np.zeros((0, 4))
    kept_h, kept_c = [], []
    n_try = 40
    for h in heights[order]:
        w = 0.8 * h
        # 15% of faces may be cut by the border (up to 40% outside); the rest stay inside.
        inside = 0.1 if rng.random() < 0.15 else 0.5
        cx = rng.uniform(inside * w, max(width - inside * w, inside * w + 1), n_try)
        lo = max(band[0] * height, inside * h)
        hi = max(min(band[1] * height, height - inside * h), lo + 1)
        cy = rng.uniform(lo, hi, n_try)
        cand = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        if len(heads):
            covered = np.maximum(_overlap(cand, heads), _overlap(cand, bodies))
            ok = np.flatnonzero((covered <= 0.15).all(axis=1))
        else:
            ok = np.arange(n_try)
        if len(ok) == 0:
            continue
        x, y = cx[ok[0]], cy[ok[0]]
        kept_h.append(h)
        kept_c.append((x, y))
        heads = np.vstack([heads, cand[ok[0]]])
        bodies = np.vstack([bodies, [x - 0.85 * h, y + 0.2 * h, x + 0.85 * h, y + 1.8 * h]])
    return np.array(kept_h), np.array(kept_c).reshape(-1, 2)


def _crowd(rng, width, height, scale, cap) -> tuple[np.ndarray, np.ndarray]:
    """Rows of faces receding to the top: sizes grow linearly with y (perspective).
    Returned row by row from the top, the drawing order (sizes jitter within a row, so
    size alone would not give the depth order)."""
    y_top = rng.uniform(0.03, 0.35) * height
    h_top = rng.uniform(6, 10) * scale
    h_bot = rng.uniform(16, 40) * scale
    spacing_x = rng.uniform(1.1, 1.7)
    spacing_y = rng.uniform(1.1, 1.45)
    target = _log_uniform(rng, 50, 300)
    hs, cs = [], []
    y = y_top
    while y < height + 0.3 * h_bot:
        h = h_top + (h_bot - h_top) * (y - y_top) / max(height - y_top, 1.0)
        dx = 0.8 * h * spacing_x
        xs = np.arange(rng.uniform(0, dx), width, dx)
        xs = xs + rng.uniform(-0.15, 0.15, len(xs)) * dx
        ys = y + rng.uniform(-0.1, 0.1, len(xs)) * h
        hs.append(h * rng.uniform(0.85, 1.15, len(xs)))
        cs.append(np.stack([xs, ys], axis=1))
        y += h * spacing_y
    h = np.clip(np.concatenate(hs), MIN_FACE, cap)
    c = np.concatenate(cs)
    inside = (c[:, 0] > 0) & (c[:, 0] < width) & (c[:, 1] > 0) & (c[:, 1] < height)
    # Thin the full grid at random down to the target count (gaps in the crowd).
    keep = inside & (rng.random(len(h)) < target / max(int(inside.sum()), 1))
    return h[keep], c[keep]


def _geometry(rng, heights: np.ndarray, centres: np.ndarray) -> Faces:
    n = len(heights)
    b = heights / 2.0
    a = b * rng.uniform(0.72, 0.86, n)
    tilted = rng.random(n) < 0.05
    roll = np.where(tilted, rng.normal(0, 0.45, n), rng.normal(0, 0.12, n))
    roll = np.clip(roll, -0.8, 0.8)
    yaw = np.clip(rng.normal(0, 0.3, n), -1.25, 1.25)
    level = np.zeros(n, np.int32)
    u = rng.random(n)
    lower = -np.inf
    for upper, (p0, p1, _) in BLUR_LEVEL_P:
        sel = (heights >= lower) & (heights < upper)
        level[sel] = np.where(u[sel] < p0, 0, np.where(u[sel] < p0 + p1, 1, 2))
        lower = upper
    sigma = np.where(
        level == 0, 0.0,
        np.where(level == 1, rng.uniform(0.025, 0.05, n) * heights + 0.3,
                 rng.uniform(0.07, 0.14, n) * heights + 0.6),
    )
    return Faces(centres[:, 0].astype(float), centres[:, 1].astype(float), a, b, roll, yaw,
                 level, sigma)


def _distractors(kind, rng, width, height, scale, cap) -> list[Distractor]:
    lo, hi = DISTRACTOR_COUNTS[kind]
    n = int(rng.integers(lo, hi + 1))
    median = 40.0 if kind == "portrait" else 18.0
    sizes = np.clip(np.exp(rng.normal(np.log(median), 0.8, n)) * scale, MIN_FACE, cap)
    kinds = rng.choice(len(DISTRACTOR_KINDS), n, p=DISTRACTOR_WEIGHTS)
    xs, ys = rng.uniform(0, width, n), rng.uniform(0, height, n)
    rolls = rng.normal(0, 0.25, n)
    return [Distractor(DISTRACTOR_KINDS[k], float(x), float(y), float(s), float(r))
            for k, x, y, s, r in zip(kinds, xs, ys, sizes, rolls, strict=True)]


def _occluders(kind, rng, faces: Faces) -> list[Occluder]:
    n = len(faces)
    # Large (near) faces are occluded half as often: most portraits are unobstructed.
    p = OCCLUDER_PROBABILITY[kind] * np.where(2 * faces.b >= 50, 0.5, 1.0)
    chosen = np.flatnonzero(rng.random(n) < p)
    out = []
    for i in chosen:
        direction = rng.uniform(-np.pi, np.pi)
        d = np.array([np.cos(direction), np.sin(direction)])
        # The face's radius along d (ignoring roll: the aim is approximate, the result is
        # measured).
        radius = float(np.hypot(faces.a[i] * d[0], faces.b[i] * d[1]))
        fraction = rng.uniform(0.1, 0.6)
        near = radius * (1.0 - 2.0 * fraction)
        half_length = radius * rng.uniform(0.8, 1.5)
        half_width = radius * rng.uniform(1.1, 1.8)
        centre = np.array([faces.cx[i], faces.cy[i]]) + d * (near + half_length)
        occ_kind = ("bar", "hand", "blob")[int(rng.choice(3, p=[0.5, 0.2, 0.3]))]
        out.append(Occluder(occ_kind, float(centre[0]), float(centre[1]), half_length,
                            half_width, float(direction)))
    return out
