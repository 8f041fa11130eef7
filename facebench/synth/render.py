"""Rendering of synthetic scenes with numpy: backgrounds, faces, distractors and occluders.

Every object is drawn as a :class:`Sprite`: premultiplied colour (h, w, 3) and coverage
alpha (h, w) over the object's own bounding window. A sprite is painted with array
operations on a supersampled grid in the object's rotated local frame (:class:`Frame`),
averaged down to pixels (so 6 px faces are anti-aliased, not aliased blobs), optionally
Gaussian-blurred, and composited onto the image with the "over" operator by
:class:`Canvas`. The canvas keeps an owner map (which face is visible at each pixel), so a
face's occlusion is *measured* after all drawing, never assumed.

Face model (local frame: ``X`` along the face's horizontal axis, ``Y`` down the face, in
pixels, origin at the centre of the head ellipse with semi-axes ``a`` (horizontal) and
``b`` (vertical)): skin-toned head ellipse with directional shading; eyes (sclera, iris,
lid), brows, nose (ridge, shadow, nostrils) and mouth placed at longitudes on a sphere and
projected under the yaw angle (so the far eye narrows and vanishes in profile); hair
(behind the head and as a fringe down to a hairline), optional beard and glasses; neck
and clothed shoulders below. The annotated head ellipse is exactly the skin ellipse.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import gaussian_filter

F32 = np.float32

# Skin tones from light to dark (sRGB, 0..1); a face samples a point on this ramp.
SKIN_RAMP = np.array(
    [
        [0.97, 0.82, 0.71],
        [0.91, 0.72, 0.58],
        [0.80, 0.59, 0.44],
        [0.64, 0.45, 0.31],
        [0.45, 0.30, 0.20],
        [0.30, 0.20, 0.13],
    ],
    dtype=F32,
)
HAIR_COLOURS = np.array(
    [
        [0.06, 0.05, 0.05],
        [0.16, 0.10, 0.06],
        [0.33, 0.21, 0.12],
        [0.62, 0.47, 0.28],
        [0.83, 0.70, 0.45],
        [0.55, 0.24, 0.12],
        [0.70, 0.70, 0.70],
    ],
    dtype=F32,
)
HAIR_WEIGHTS = np.array([0.3, 0.25, 0.17, 0.08, 0.07, 0.05, 0.08])


# --------------------------------------------------------------------------- sprites


@dataclass
class Sprite:
    """A drawn object: window origin ``(x0, y0)`` in the image, premultiplied ``color``
    (h, w, 3), ``alpha`` (h, w) and, for faces, ``face`` (h, w): coverage of the head
    ellipse alone (before blur), used to measure how much of the face stays visible."""

    x0: int
    y0: int
    color: np.ndarray
    alpha: np.ndarray
    face: np.ndarray | None = None


class Patch:
    """A mask restricted to a sub-window of a frame: values ``m`` over the sample rows
    ``r0:r0+h`` and columns ``c0:c0+w``; zero outside. Multiplying by another patch
    intersects the windows; multiplying by a full-frame array slices it."""

    __slots__ = ("c0", "m", "r0")

    def __init__(self, r0: int, c0: int, m: np.ndarray) -> None:
        self.r0, self.c0, self.m = r0, c0, m

    @property
    def index(self) -> tuple[slice, slice]:
        h, w = self.m.shape
        return slice(self.r0, self.r0 + h), slice(self.c0, self.c0 + w)

    def __mul__(self, other: Patch | np.ndarray) -> Patch:
        if not isinstance(other, Patch):
            return Patch(self.r0, self.c0, self.m * other[self.index])
        (h1, w1), (h2, w2) = self.m.shape, other.m.shape
        r0, c0 = max(self.r0, other.r0), max(self.c0, other.c0)
        r1 = max(min(self.r0 + h1, other.r0 + h2), r0)
        c1 = max(min(self.c0 + w1, other.c0 + w2), c0)
        a = self.m[r0 - self.r0 : r1 - self.r0, c0 - self.c0 : c1 - self.c0]
        b = other.m[r0 - other.r0 : r1 - other.r0, c0 - other.c0 : c1 - other.c0]
        return Patch(r0, c0, a * b)

    def cut(self, other: Patch) -> Patch:
        """This mask minus ``other`` (which must lie on the same window)."""
        return Patch(self.r0, self.c0, self.m * (1.0 - other.m))


class Frame:
    """A supersampled grid over an object's window, in the object's rotated local frame.

    ``X, Y`` (H*ss, W*ss) are local coordinates in pixels of the sample points: ``X`` along
    the object's axis rotated by ``roll`` (radians, clockwise on screen), ``Y`` across it.
    The window covers the local rectangle ``[-left, right] x [-top, bottom]`` plus
    ``margin`` pixels, clipped to the image. Shapes come back as :class:`Patch` masks over
    their own bounding sub-window (so small features cost little); painting accumulates
    premultiplied colour and alpha; :meth:`sprite` averages them down to pixels.
    """

    def __init__(
        self,
        cx: float,
        cy: float,
        roll: float,
        extent: tuple[float, float, float, float],
        image_size: tuple[int, int],
        ss: int = 1,
        margin: float = 1.0,
    ) -> None:
        left, right, top, bottom = extent
        cos, sin = np.cos(roll), np.sin(roll)
        lx = np.array([-left, right, right, -left])
        ly = np.array([-top, -top, bottom, bottom])
        px = cx + lx * cos - ly * sin
        py = cy + lx * sin + ly * cos
        width, height = image_size
        self.x0 = int(np.clip(np.floor(px.min() - margin), 0, width))
        self.y0 = int(np.clip(np.floor(py.min() - margin), 0, height))
        x1 = int(np.clip(np.ceil(px.max() + margin), 0, width))
        y1 = int(np.clip(np.ceil(py.max() + margin), 0, height))
        self.w, self.h, self.ss = max(x1 - self.x0, 0), max(y1 - self.y0, 0), ss
        self._pose = (float(cx), float(cy), float(cos), float(sin))
        xs = (self.x0 + (np.arange(self.w * ss, dtype=F32) + 0.5) / ss - cx).astype(F32)
        ys = (self.y0 + (np.arange(self.h * ss, dtype=F32) + 0.5) / ss - cy).astype(F32)
        dx, dy = xs[None, :], ys[:, None]
        self.X = (dx * F32(cos) + dy * F32(sin)).astype(F32)
        self.Y = (dy * F32(cos) - dx * F32(sin)).astype(F32)
        self.color = np.zeros((self.h * ss, self.w * ss, 3), F32)
        self.alpha = np.zeros((self.h * ss, self.w * ss), F32)

    @property
    def empty(self) -> bool:
        return self.w == 0 or self.h == 0

    def _window(self, x: float, y: float, radius: float) -> tuple[slice, slice]:
        """Sample rows/columns within ``radius`` pixels of local ``(x, y)``."""
        cx, cy, cos, sin = self._pose
        ss = self.ss
        col = (cx + x * cos - y * sin - self.x0) * ss
        row = (cy + x * sin + y * cos - self.y0) * ss
        r = (radius + 1.0) * ss
        c0 = int(np.clip(np.floor(col - r), 0, self.w * ss))
        c1 = int(np.clip(np.ceil(col + r), 0, self.w * ss))
        r0 = int(np.clip(np.floor(row - r), 0, self.h * ss))
        r1 = int(np.clip(np.ceil(row + r), 0, self.h * ss))
        return slice(r0, max(r1, r0)), slice(c0, max(c1, c0))

    def _local(self, index: tuple[slice, slice], x: float, y: float, tilt: float):
        dx, dy = self.X[index] - F32(x), self.Y[index] - F32(y)
        if tilt:
            c, s = F32(np.cos(tilt)), F32(np.sin(tilt))
            dx, dy = dx * c + dy * s, dy * c - dx * s
        return dx, dy

    def ellipse(
        self, x: float, y: float, rx: float, ry: float, tilt: float = 0.0, bend: float = 0.0,
        on: Patch | None = None,
    ) -> Patch:
        """Coverage (0..1) of an ellipse centred at local ``(x, y)``, semi-axes ``rx, ry``
        (pixels), rotated by ``tilt``; edges are soft over one sample. ``bend`` (pixels)
        lifts the ellipse's ends (a smile); ``on`` evaluates it over that patch's window."""
        rx, ry = max(rx, 0.15), max(ry, 0.15)
        if on is not None:
            index = on.index
        else:
            index = self._window(x, y, max(rx, ry) + abs(bend))
        dx, dy = self._local(index, x, y, tilt)
        u = dx / F32(rx)
        if bend:
            dy = dy + F32(bend) * u * u
        v = dy / F32(ry)
        r = np.sqrt(u * u + v * v)
        # Signed distance to the boundary ~ (1 - r) / |grad r| (exact on the boundary).
        grad = np.sqrt((u / F32(rx)) ** 2 + (v / F32(ry)) ** 2) / np.maximum(r, F32(1e-6))
        dist = (1.0 - r) / np.maximum(grad, F32(1e-6))
        return Patch(index[0].start, index[1].start,
                     np.clip(0.5 + dist * F32(self.ss), 0.0, 1.0))

    def rect(self, x: float, y: float, hw: float, hh: float, tilt: float = 0.0) -> Patch:
        """Coverage of a rectangle centred at local ``(x, y)``, half sizes ``hw, hh``."""
        index = self._window(x, y, float(np.hypot(hw, hh)))
        dx, dy = self._local(index, x, y, tilt)
        ss = F32(self.ss)
        cover_x = np.clip(0.5 + (F32(hw) - np.abs(dx)) * ss, 0.0, 1.0)
        cover_y = np.clip(0.5 + (F32(hh) - np.abs(dy)) * ss, 0.0, 1.0)
        return Patch(index[0].start, index[1].start, cover_x * cover_y)

    def below(self, edge: np.ndarray | float, soft: float = 1.0) -> np.ndarray:
        """Coverage (full frame) of the half-plane ``Y > edge`` (edge may vary along X)."""
        return np.clip(0.5 + (self.Y - edge) * F32(self.ss / soft), 0.0, 1.0)

    def local(self, patch: Patch) -> tuple[np.ndarray, np.ndarray]:
        """Local coordinates ``X, Y`` over a patch's window."""
        return self.X[patch.index], self.Y[patch.index]

    def paint(self, mask: Patch, color: np.ndarray, opacity: float = 1.0) -> None:
        """Paint ``color`` over the frame where ``mask`` covers it. ``color``: (3,), an
        array over the whole frame (H*ss, W*ss, 3) or over the patch's window."""
        index = mask.index
        m = mask.m if opacity == 1.0 else mask.m * F32(opacity)
        if m.size == 0:
            return
        color = np.asarray(color, dtype=F32)
        if color.ndim == 3 and color.shape[:2] == self.alpha.shape:
            color = color[index]
        region = self.color[index]
        region += m[..., None] * (color - region)
        alpha = self.alpha[index]
        alpha += m * (1.0 - alpha)

    def sprite(self, blur: float = 0.0, face: Patch | None = None) -> Sprite:
        """Average the samples down to pixels and blur by ``blur`` pixels (sigma)."""
        color, alpha = _pool(self.color, self.ss), _pool(self.alpha, self.ss)
        if blur > 0.05:
            color = gaussian_filter(color, sigma=(blur, blur, 0), mode="constant", truncate=3.0)
            alpha = gaussian_filter(alpha, sigma=blur, mode="constant", truncate=3.0)
        face_cover = None
        if face is not None:
            full = np.zeros_like(self.alpha)
            full[face.index] = face.m
            face_cover = _pool(full, self.ss)
        return Sprite(self.x0, self.y0, color, alpha, face_cover)


def _pool(arr: np.ndarray, ss: int) -> np.ndarray:
    if ss == 1:
        return arr
    h, w = arr.shape[0] // ss, arr.shape[1] // ss
    return arr.reshape(h, ss, w, ss, *arr.shape[2:]).mean(axis=(1, 3), dtype=F32)


def supersampling(size: float) -> int:
    """Samples per pixel side for an object ``size`` pixels tall (more for small ones)."""
    return int(np.clip(np.ceil(24.0 / max(size, 1.0)), 1, 4))


# --------------------------------------------------------------------------- canvas


class Canvas:
    """The image being drawn (float RGB, (H, W, 3)) and its owner map (H, W) int32:
    ``k >= 1`` where face ``k`` shows, ``-1`` where something covers, 0 background."""

    def __init__(self, background: np.ndarray) -> None:
        self.rgb = background.astype(F32, copy=True)
        self.owner = np.zeros(background.shape[:2], np.int32)
        self._faces: dict[int, Sprite] = {}

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.rgb.shape[1], self.rgb.shape[0]

    def composite(self, sprite: Sprite, owner: int = 0) -> None:
        """Draw ``sprite`` over the image; ``owner >= 1`` registers it as that face."""
        h, w = sprite.alpha.shape
        if h == 0 or w == 0:
            return
        win = (slice(sprite.y0, sprite.y0 + h), slice(sprite.x0, sprite.x0 + w))
        region = self.rgb[win]
        region *= 1.0 - sprite.alpha[..., None]
        region += sprite.color
        owned = self.owner[win]
        owned[sprite.alpha > 0.5] = -1
        if owner >= 1 and sprite.face is not None:
            owned[sprite.face > 0.0] = owner
            self._faces[owner] = sprite

    def visible_area(self, owner: int) -> float:
        """Area (pixels) of face ``owner``'s head ellipse still visible in the image."""
        sprite = self._faces.get(owner)
        if sprite is None:
            return 0.0
        h, w = sprite.face.shape
        owned = self.owner[sprite.y0 : sprite.y0 + h, sprite.x0 : sprite.x0 + w] == owner
        return float(sprite.face[owned].sum(dtype=np.float64))

    def encode_jpeg(self, quality: int) -> bytes:
        """The image as JPEG bytes (deterministic for the same pixels and quality)."""
        pixels = np.clip(self.rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


# --------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class FaceLook:
    """Appearance of one face (colours 0..1 RGB); geometry comes from the layout."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    clothing: np.ndarray
    hair_style: int  # 0 bald, 1 short, 2 long
    hairline: float  # fringe edge at the centre, in units of b (negative: above centre)
    beard: bool
    glasses: bool
    smile: float
    mouth_open: float
    light: tuple[float, float]  # light direction in the face frame (x, y)
    shoulders: bool


def sample_look(rng: np.random.Generator, shoulders: bool = True) -> FaceLook:
    """Draw a random appearance: skin on :data:`SKIN_RAMP`, hair colour and style, etc."""
    t = rng.uniform(0, len(SKIN_RAMP) - 1)
    i = min(int(t), len(SKIN_RAMP) - 2)
    skin = SKIN_RAMP[i] * (i + 1 - t) + SKIN_RAMP[i + 1] * (t - i)
    skin = np.clip(skin * rng.uniform(0.92, 1.08) + rng.normal(0, 0.015, 3), 0, 1)
    hair = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS)]
    hair = np.clip(hair * rng.uniform(0.8, 1.2) + rng.normal(0, 0.02, 3), 0, 1)
    angle = rng.uniform(-np.pi, np.pi)
    irises = ([0.25, 0.15, 0.08], [0.2, 0.3, 0.45], [0.2, 0.3, 0.18])
    iris = irises[int(rng.choice(3, p=[0.7, 0.2, 0.1]))]
    return FaceLook(
        skin=skin.astype(F32),
        hair=hair.astype(F32),
        iris=np.array(iris, F32),
        clothing=rng.uniform(0.05, 0.9, 3).astype(F32),
        hair_style=int(rng.choice(3, p=[0.12, 0.55, 0.33])),
        hairline=float(rng.uniform(-0.68, -0.38)),
        beard=bool(rng.random() < 0.1),
        glasses=bool(rng.random() < 0.12),
        smile=float(rng.uniform(-0.3, 1.0)),
        mouth_open=float(rng.uniform(0, 1) ** 3),
        light=(float(np.cos(angle)), float(np.sin(angle))),
        shoulders=shoulders,
    )


def _shaded(frame: Frame, patch: Patch, base: np.ndarray, a: float, b: float,
            light: tuple[float, float], x: float = 0.0, y: float = 0.0,
            strength: float = 0.35) -> np.ndarray:
    """``base`` colour lit from ``light`` over an ellipsoid at local (x, y), radii (a, b),
    over ``patch``'s window: (h, w, 3)."""
    X, Y = frame.local(patch)
    u = (X - F32(x)) / F32(a)
    v = (Y - F32(y)) / F32(b)
    lit = F32(light[0]) * u + F32(light[1]) * v
    r2 = np.minimum(u * u + v * v, F32(1.0))
    shade = (1.0 + F32(strength) * lit) * (1.0 - F32(0.22) * r2 * r2)
    return shade[..., None] * np.asarray(base, F32)


def _hair(frame: Frame, patch: Patch, colour: np.ndarray, a: float, b: float) -> np.ndarray:
    """Hair colour with a strand texture over ``patch``'s window: (h, w, 3)."""
    X, Y = frame.local(patch)
    texture = F32(0.9) + F32(0.12) * np.sin(X * F32(19.0 / a) + Y * F32(7.0 / b))
    return texture[..., None] * colour


def render_face(
    cx: float,
    cy: float,
    a: float,
    b: float,
    roll: float,
    yaw: float,
    blur: float,
    look: FaceLook,
    image_size: tuple[int, int],
) -> Sprite:
    """Draw one face whose head (skin) ellipse has centre ``(cx, cy)``, semi-axes ``a``
    (across) and ``b`` (along the face), rotated by ``roll`` radians; ``yaw`` (radians,
    about -1.3..1.3) turns the head; ``blur`` is a Gaussian sigma in pixels. Returns the
    sprite with the head-ellipse coverage."""
    below = 3.2 * b if look.shoulders else 1.6 * b
    side = 2.3 * a if look.shoulders else 1.35 * a
    top = 1.3 * b if look.hair_style else 1.05 * b
    frame = Frame(
        cx, cy, roll, (side, side, top, below), image_size,
        ss=supersampling(2 * b), margin=1.0 + 3.0 * blur,
    )
    if frame.empty:
        return frame.sprite()
    sy = float(np.sin(yaw))
    skin, hair = look.skin, look.hair

    if look.hair_style == 2:  # long hair hangs behind the head
        back = frame.ellipse(-0.1 * sy * a, 0.35 * b, 1.22 * a, 1.45 * b)
        frame.paint(back, _hair(frame, back, hair, a, b))
    if look.shoulders:
        body = frame.ellipse(0, 2.3 * b, 2.1 * a, 1.25 * b)
        frame.paint(body, _shaded(frame, body, look.clothing, 2.1 * a, 1.25 * b, look.light,
                                  0, 2.3 * b, 0.3))
    frame.paint(frame.rect(0.1 * sy * a, 0.95 * b, 0.42 * a, 0.55 * b), skin * F32(0.78))
    if look.hair_style:  # the skull's hair shows around the top of the head
        skull = frame.ellipse(-0.12 * sy * a, -0.14 * b, 1.09 * a, 1.03 * b)
        frame.paint(skull, _hair(frame, skull, hair, a, b))

    face = frame.ellipse(0, 0, a, b)
    frame.paint(face, _shaded(frame, face, skin, a, b, look.light))

    # Ears sit on the sides at longitude +-pi/2; they show where the turn exposes them.
    for lon in (-np.pi / 2, np.pi / 2):
        if np.cos(lon + yaw) > -0.35:
            ear = frame.ellipse(np.sin(lon + yaw) * 0.98 * a, 0.02 * b, 0.14 * a, 0.2 * b)
            frame.paint(ear, skin * F32(0.88))

    _paint_features(frame, face, a, b, yaw, look)

    if look.hair_style:  # the fringe: hair over the forehead down to the hairline
        X, Y = frame.local(face)
        u = (X - F32(0.25 * sy * a)) / F32(a)
        edge = F32(b) * (F32(look.hairline) + F32(0.32) * u * u)
        soft = F32(frame.ss / max(0.04 * b, 0.5))
        fringe = Patch(face.r0, face.c0, face.m * np.clip(0.5 + (edge - Y) * soft, 0, 1))
        frame.paint(fringe, _hair(frame, fringe, hair, a, b))
    if look.glasses:
        _paint_glasses(frame, a, b, yaw)
    return frame.sprite(blur=blur, face=frame.ellipse(0, 0, a, b))


def _paint_features(
    frame: Frame, face: Patch, a: float, b: float, yaw: float, look: FaceLook
) -> None:
    skin = look.skin
    sy, cyaw = float(np.sin(yaw)), float(np.cos(yaw))
    brow_colour = look.hair * F32(0.7) if look.hair.mean() < 0.5 else skin * F32(0.5)
    for lon in (-0.45, 0.45):
        fore = float(np.cos(lon + yaw))
        if fore < 0.18:
            continue  # the far eye hides behind the nose in profile
        ex, ey = float(np.sin(lon + yaw)) * 0.96 * a, -0.1 * b
        ew, eh = 0.2 * a * fore, 0.085 * b
        frame.paint(frame.ellipse(ex, ey, ew * 1.15, eh * 1.6) * face, skin * F32(0.85))
        frame.paint(frame.ellipse(ex, ey, ew, eh) * face, np.array([0.93, 0.92, 0.88], F32))
        iris_x = ex + 0.35 * ew * sy
        frame.paint(frame.ellipse(iris_x, ey, min(0.075 * b, ew), 0.075 * b) * face, look.iris)
        frame.paint(frame.ellipse(iris_x, ey, min(0.035 * b, ew), 0.035 * b) * face,
                    np.array([0.03, 0.03, 0.03], F32))
        lid = frame.ellipse(ex, ey - eh * 0.75, ew * 1.05, 0.025 * b + 0.2) * face
        frame.paint(lid, skin * F32(0.35))
        brow = frame.ellipse(ex, -0.33 * b, 0.24 * a * fore, 0.035 * b + 0.2,
                             tilt=-0.15 * np.sign(lon)) * face
        frame.paint(brow, brow_colour)

    nose_x = sy * 1.05 * a
    frame.paint(frame.ellipse(nose_x * 0.9, 0.06 * b, 0.06 * a, 0.22 * b) * face,
                skin * F32(1.12), opacity=0.8)
    shadow_side = 1.0 if look.light[0] < 0 else -1.0
    frame.paint(frame.ellipse(nose_x + shadow_side * 0.09 * a, 0.12 * b, 0.05 * a, 0.18 * b)
                * face, skin * F32(0.72), opacity=0.7)
    frame.paint(frame.ellipse(nose_x, 0.27 * b, 0.15 * a * max(cyaw, 0.5), 0.045 * b) * face,
                skin * F32(0.55))

    if look.beard:
        beard = face * frame.below(0.3 * b, soft=max(0.05 * b, 0.5))
        frame.paint(beard, look.hair * F32(0.9), opacity=0.85)

    mx, my = sy * 0.95 * a, 0.52 * b
    mw = 0.3 * a * float(np.sqrt(max(cyaw, 0.1)))
    mh = 0.05 * b * (1.0 + 2.0 * look.mouth_open)
    bend = look.smile * 0.08 * b
    frame.paint(frame.ellipse(mx, my, mw, mh, bend=bend) * face,
                skin * np.array([0.82, 0.5, 0.5], F32))
    if look.mouth_open > 0.2:
        frame.paint(frame.ellipse(mx, my, 0.8 * mw, 0.6 * mh, bend=bend) * face,
                    np.array([0.2, 0.06, 0.06], F32))


def _ring(frame: Frame, x: float, y: float, rx: float, ry: float, inner: float) -> Patch:
    """An elliptic ring: the ellipse (rx, ry) minus the one shrunk by ``inner`` pixels."""
    outer = frame.ellipse(x, y, rx, ry)
    hole = frame.ellipse(x, y, max(rx - inner, 0.2), max(ry - inner, 0.2), on=outer)
    return outer.cut(hole)


def _paint_glasses(frame: Frame, a: float, b: float, yaw: float) -> None:
    dark = np.array([0.05, 0.05, 0.06], F32)
    thick = 0.03 * b + 0.25
    for lon in (-0.45, 0.45):
        fore = float(np.cos(lon + yaw))
        if fore < 0.18:
            continue
        ex = float(np.sin(lon + yaw)) * 0.96 * a
        rx, ry = 0.27 * a * fore, 0.16 * b
        frame.paint(_ring(frame, ex, -0.1 * b, rx + thick, ry + thick, 2 * thick), dark)
        lens = frame.ellipse(ex, -0.1 * b, max(rx - thick, 0.2), max(ry - thick, 0.2))
        frame.paint(lens, np.array([0.6, 0.7, 0.75], F32), opacity=0.12)
    frame.paint(frame.rect(np.sin(yaw) * 0.96 * a, -0.13 * b, 0.12 * a * np.cos(yaw), thick), dark)


# --------------------------------------------------------------------------- distractors

DISTRACTOR_KINDS = ("blank_head", "back_of_head", "eye_pair", "ball", "wheel", "mouth_only")


def render_distractor(
    kind: str,
    cx: float,
    cy: float,
    size: float,
    roll: float,
    rng: np.random.Generator,
    image_size: tuple[int, int],
) -> Sprite:
    """Draw a face-like object that is not a face, about ``size`` pixels tall.

    Kinds (:data:`DISTRACTOR_KINDS`): ``blank_head`` (skin ellipse with shading and maybe
    hair, no features), ``back_of_head`` (head covered in hair),
    ``eye_pair`` (two eyes and brows with no head), ``ball`` (shaded, sometimes striped
    sphere with a highlight), ``wheel`` (tyre, hub, spokes), ``mouth_only`` (skin ellipse
    with a mouth and no eyes). The head-like kinds sit on shoulders 60% of the time, as
    faces do, so a body below is no giveaway.
    """
    b = size / 2.0
    a = b * rng.uniform(0.7, 1.0)
    look = sample_look(rng)
    frame = Frame(cx, cy, roll, (2.4 * a, 2.4 * a, 1.3 * b, 3.6 * b), image_size,
                  ss=supersampling(size), margin=2.0)
    if frame.empty:
        return frame.sprite()
    if kind in ("blank_head", "mouth_only", "back_of_head"):
        if rng.random() < 0.6:  # on shoulders like a face, so the body is no giveaway
            body = frame.ellipse(0, 2.3 * b, 2.1 * a, 1.25 * b)
            frame.paint(body, _shaded(frame, body, look.clothing, 2.1 * a, 1.25 * b,
                                      look.light, 0, 2.3 * b))
        head = frame.ellipse(0, 0, a, b)
        colour = look.hair if kind == "back_of_head" else look.skin
        frame.paint(head, _shaded(frame, head, colour, a, b, look.light))
        if kind == "mouth_only":
            frame.paint(frame.ellipse(0, 0.5 * b, 0.3 * a, 0.06 * b) * head,
                        look.skin * np.array([0.82, 0.5, 0.5], F32))
        elif kind == "blank_head" and look.hair_style:
            frame.paint(head * (1.0 - frame.below(-0.35 * b, soft=max(0.05 * b, 0.5))),
                        look.hair)
    elif kind == "eye_pair":
        for side in (-1, 1):
            ex, ew, eh = side * 0.42 * a, 0.2 * a, 0.085 * b
            frame.paint(frame.ellipse(ex, -0.1 * b, ew, eh), np.array([0.93, 0.92, 0.88], F32))
            frame.paint(frame.ellipse(ex, -0.1 * b, 0.075 * b, 0.075 * b), look.iris)
            frame.paint(frame.ellipse(ex, -0.33 * b, 0.24 * a, 0.035 * b + 0.2), look.hair * 0.7)
    elif kind == "ball":
        colour = rng.uniform(0.05, 1.0, 3).astype(F32)
        ball = frame.ellipse(0, 0, b, b)
        shade = _shaded(frame, ball, colour, b, b, look.light, strength=0.5)
        if rng.random() < 0.5:
            stripes = np.sin(frame.local(ball)[0] * F32(rng.uniform(3, 9) / b)) > 0
            shade = np.where(stripes[..., None], shade, shade * F32(0.35) + F32(0.6))
        frame.paint(ball, shade)
        hx, hy = -0.4 * b * look.light[0], -0.4 * b * look.light[1]
        frame.paint(frame.ellipse(hx, hy, 0.18 * b, 0.12 * b) * ball,
                    np.ones(3, F32), opacity=0.6)
    elif kind == "wheel":
        frame.paint(_ring(frame, 0, 0, b, b, 0.32 * b), np.array([0.08, 0.08, 0.09], F32))
        hole = frame.ellipse(0, 0, 0.68 * b, 0.68 * b)
        metal = rng.uniform(0.45, 0.85) * np.ones(3, F32)
        for k in range(int(rng.integers(3, 7))):
            frame.paint(frame.rect(0, 0, 0.68 * b, 0.05 * b + 0.3, tilt=k * np.pi / 5) * hole,
                        metal)
        frame.paint(frame.ellipse(0, 0, 0.2 * b, 0.2 * b), metal * F32(0.8))
    else:
        raise ValueError(f"unknown distractor kind {kind!r}")
    blur = float(rng.choice([0.0, 0.0, 0.04, 0.1])) * size
    return frame.sprite(blur=blur)


def render_occluder(
    kind: str,
    cx: float,
    cy: float,
    half_length: float,
    half_width: float,
    angle: float,
    rng: np.random.Generator,
    image_size: tuple[int, int],
) -> Sprite:
    """Draw an occluder: ``"bar"`` (textured rectangle: a sign, pole or shoulder),
    ``"hand"`` (skin ellipse) or ``"blob"`` (coloured ellipse), centred at ``(cx, cy)``,
    extending ``half_length`` along ``angle`` and ``half_width`` across it."""
    frame = Frame(cx, cy, angle, (half_length, half_length, half_width, half_width),
                  image_size, ss=supersampling(2 * min(half_length, half_width)), margin=1.0)
    if frame.empty:
        return frame.sprite()
    if kind == "bar":
        colour = rng.uniform(0.05, 0.95, 3).astype(F32)
        bar = frame.rect(0, 0, half_length, half_width)
        grain = F32(0.85) + F32(0.15) * np.sin(frame.local(bar)[0] * F32(rng.uniform(0.2, 1.5)))
        frame.paint(bar, grain[..., None] * colour)
    elif kind in ("hand", "blob"):
        colour = sample_look(rng).skin if kind == "hand" else rng.uniform(0.05, 0.95, 3)
        blob = frame.ellipse(0, 0, half_length, half_width)
        frame.paint(blob, _shaded(frame, blob, colour, half_length, half_width, (0.5, -0.7),
                                  strength=0.3))
    else:
        raise ValueError(f"unknown occluder kind {kind!r}")
    return frame.sprite()


# --------------------------------------------------------------------------- backgrounds

# Palettes per scene family: base colours that backgrounds blend between.
PALETTES: dict[str, np.ndarray] = {
    "street": np.array(
        [[0.55, 0.55, 0.57], [0.35, 0.33, 0.32], [0.62, 0.5, 0.4], [0.5, 0.62, 0.8],
         [0.75, 0.72, 0.66], [0.25, 0.27, 0.3]], F32),
    "park": np.array(
        [[0.25, 0.45, 0.2], [0.4, 0.55, 0.25], [0.55, 0.7, 0.9], [0.45, 0.38, 0.25],
         [0.15, 0.3, 0.12], [0.7, 0.65, 0.5]], F32),
    "indoor": np.array(
        [[0.8, 0.76, 0.68], [0.5, 0.35, 0.25], [0.3, 0.3, 0.35], [0.85, 0.85, 0.82],
         [0.6, 0.5, 0.45], [0.2, 0.2, 0.25]], F32),
}


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Noise smooth over ``width / cells`` pixels: random values on a coarse grid,
    upsampled bicubically (values roughly in -1..1)."""
    gw = max(2, cells)
    gh = max(2, round(cells * height / max(width, 1)))
    coarse = rng.standard_normal((gh, gw)).astype(F32)
    img = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=F32)


def render_background(
    rng: np.random.Generator, width: int, height: int, family: str
) -> np.ndarray:
    """A cluttered natural-looking background (H, W, 3) float in 0..1.

    Layers: a vertical gradient between two palette colours (sky/ground or wall/floor),
    fractal smooth noise mixing in a third colour, random opaque shapes (rectangles with
    window grids, ellipses, polygons, poles), striped/checked texture patches, fine grain,
    and sometimes a depth-of-field blur.
    """
    palette = PALETTES[family]
    c = palette[rng.permutation(len(palette))[:3]] * rng.uniform(0.8, 1.15, (3, 1)).astype(F32)
    horizon = rng.uniform(0.2, 0.8)
    t = np.clip((np.arange(height, dtype=F32) / height - horizon) * rng.uniform(2, 8) + 0.5, 0, 1)
    base = c[0][None, None, :] * (1 - t)[:, None, None] + c[1][None, None, :] * t[:, None, None]
    base = np.broadcast_to(base, (height, width, 3)).copy()
    fractal = sum(
        _smooth_noise(rng, width, height, cells) * F32(amp)
        for cells, amp in ((3, 1.0), (8, 0.6), (24, 0.35), (64, 0.2))
    )
    mix = np.clip(0.5 + 0.35 * fractal, 0, 1)[..., None]
    base = base * (1 - mix * 0.6) + c[2][None, None, :] * (mix * 0.6)

    img = Image.fromarray(np.clip(base * 255, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    n_shapes = int(rng.integers(4, 16))
    for _ in range(n_shapes):
        colour = tuple(int(v) for v in rng.integers(15, 240, 3))
        x, y = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height
        sw, sh = rng.uniform(0.03, 0.45) * width, rng.uniform(0.03, 0.5) * height
        kind = rng.integers(0, 5)
        if kind == 0:
            draw.rectangle((x, y, x + sw, y + sh), fill=colour)
            if rng.random() < 0.5:  # a facade: a grid of windows
                window = tuple(int(v) for v in rng.integers(10, 250, 3))
                step = rng.uniform(8, 30)
                for wx in np.arange(x + step / 3, x + sw - step / 2, step):
                    for wy in np.arange(y + step / 3, y + sh - step / 2, step * 1.3):
                        draw.rectangle((wx, wy, wx + step / 2, wy + step / 1.6), fill=window)
        elif kind == 1:
            draw.ellipse((x, y, x + sw, y + sh), fill=colour)
        elif kind == 2:
            pts = [(x + rng.uniform(-1, 1) * sw, y + rng.uniform(-1, 1) * sh) for _ in range(5)]
            draw.polygon(pts, fill=colour)
        elif kind == 3:
            draw.line((x, y, x + rng.uniform(-0.2, 0.2) * width, y + height), fill=colour,
                      width=int(rng.integers(2, 12)))
        else:
            patch = Image.new("RGB", (max(int(sw), 1), max(int(sh), 1)), colour)
            stripes = ImageDraw.Draw(patch)
            step = int(rng.integers(3, 14))
            other = tuple(int(v) for v in rng.integers(15, 240, 3))
            slant = int(sh) * int(rng.integers(0, 2))  # vertical or diagonal stripes
            for k in range(-int(sh), int(sw), 2 * step):
                stripes.line((k, 0, k + slant, int(sh)), fill=other, width=step)
            img.paste(patch, (int(x), int(y)))
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.8, 3.0))))
    out = np.asarray(img, dtype=F32) / F32(255.0)
    grain = _smooth_noise(rng, width, height, max(width // 3, 2))[..., None]
    return np.clip(out * (1.0 + F32(0.06) * grain), 0, 1)


def finish(canvas: Canvas, rng: np.random.Generator) -> None:
    """Camera effects on the whole image: exposure, colour cast and sensor noise."""
    gain = rng.uniform(0.8, 1.15) * (1.0 + rng.normal(0, 0.04, 3))
    canvas.rgb *= gain.astype(F32)
    sigma = rng.uniform(0.004, 0.025)
    canvas.rgb += rng.standard_normal(canvas.rgb.shape, dtype=F32) * F32(sigma)
    np.clip(canvas.rgb, 0.0, 1.0, out=canvas.rgb)
