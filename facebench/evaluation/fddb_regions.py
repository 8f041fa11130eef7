"""FDDB regions as the official ``evaluate`` rasterises them, and their pixel overlaps.

The official program draws every region as a filled mask at the image's size (so regions
are clipped to the image) and scores a pair by ``|A and D| / |A or D|`` in pixels. This
module reproduces those masks exactly and computes the same numbers far faster:

- an ellipse ``ra rb theta cx cy`` is drawn by OpenCV with the centre cast to float32 and
  rounded half-to-even (``cvPointFrom32f``), the axes truncated to int (``static_cast``),
  and the angle ``180 - (pi - theta) * 180 / pi`` degrees, which OpenCV rounds to an
  integer: ``cv2.ellipse(mask, centre, axes, degrees, 0, 360, 1, -1)``;
- a rectangle ``x y w h`` covers the pixels between its rounded corners
  ``(x, y)`` and ``(x + w, y + h)``, both inclusive (``(w + 1) (h + 1)`` pixels);
- each region is drawn once, only on its own bounding window clipped to the image, and a
  pair's intersection is counted on the overlap of the two windows; pairs whose windows
  do not overlap are never touched (their overlap is 0);
- a rectangle's intersection with an ellipse is read from the ellipse mask's
  summed-area table, for all candidate pairs of an image at once.

Drawing an ellipse on a window instead of the whole image only translates OpenCV's
polygon by whole pixels, which leaves the pixels it fills unchanged (tested against
full-image masks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

# Radii beyond this are clamped: the official cast of a larger double to int is undefined,
# and no image is this large.
_MAX_AXIS = 1 << 24
# Extra pixels around the analytic bounding box of a drawn ellipse (OpenCV rounds its
# polygon's vertices to 1/65536 px, then fills whole pixels).
_MARGIN = 2


@dataclass(frozen=True)
class RasterEllipses:
    """Ellipses in the integer form OpenCV draws: centres, axes, angles (degrees), windows.

    All arrays have length K. ``window`` is (K, 4) ``x0 y0 x1 y1`` inclusive pixel bounds of
    the unclipped drawing (a superset of the filled pixels).
    """

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    degrees: np.ndarray
    window: np.ndarray

    def __len__(self) -> int:
        return len(self.cx)

    def __getitem__(self, index: slice) -> RasterEllipses:
        return RasterEllipses(
            self.cx[index], self.cy[index], self.a[index], self.b[index],
            self.degrees[index], self.window[index],
        )  # fmt: skip


def raster_ellipses(ellipses: np.ndarray) -> RasterEllipses:
    """Round (K, 5+) ``ra rb theta cx cy`` ellipses exactly as the official program does."""
    e = np.asarray(ellipses, dtype=np.float64).reshape(
        -1, ellipses.shape[-1] if ellipses.size else 5
    )
    ra, rb, theta, cx, cy = (e[:, i] for i in range(5))
    # cvPointFrom32f(cvPoint2D32f(cx, cy)): float32 cast, then cvRound (half to even).
    icx = np.rint(cx.astype(np.float32)).astype(np.int64)
    icy = np.rint(cy.astype(np.float32)).astype(np.int64)
    a = np.trunc(np.minimum(ra, _MAX_AXIS)).astype(np.int64)
    b = np.trunc(np.minimum(rb, _MAX_AXIS)).astype(np.int64)
    # EllipsesSingleImage stores (pi - theta) * 180 / pi; EllipseR draws 180 minus that,
    # and cv::ellipse rounds the angle to an integer.
    degrees = np.rint(180.0 - (np.pi - theta) * 180.0 / np.pi).astype(np.int64)
    rad = np.deg2rad(degrees.astype(np.float64))
    c, s = np.cos(rad), np.sin(rad)
    half_w = np.sqrt((a * c) ** 2 + (b * s) ** 2)
    half_h = np.sqrt((a * s) ** 2 + (b * c) ** 2)
    window = np.stack(
        [
            icx - np.ceil(half_w).astype(np.int64) - _MARGIN,
            icy - np.ceil(half_h).astype(np.int64) - _MARGIN,
            icx + np.ceil(half_w).astype(np.int64) + _MARGIN,
            icy + np.ceil(half_h).astype(np.int64) + _MARGIN,
        ],
        axis=1,
    )
    return RasterEllipses(icx, icy, a, b, degrees, window.reshape(-1, 4))


def raster_rects(rects: np.ndarray) -> np.ndarray:
    """Round (K, 4+) ``x y w h`` rectangles to inclusive pixel corners ``x0 y0 x1 y1``.

    Each corner is cast to float32 and rounded half-to-even, as the official
    ``cvPointFrom32f(cvPoint2D32f(x + w, y + h))`` does; corners are ordered as
    ``cv::rectangle`` orders them.
    """
    r = np.asarray(rects, dtype=np.float64).reshape(-1, rects.shape[-1] if rects.size else 4)
    x, y, w, h = (r[:, i] for i in range(4))
    p = np.stack([x, y, x + w, y + h], axis=1)
    p = np.rint(np.clip(p, -_MAX_AXIS, _MAX_AXIS).astype(np.float32)).astype(np.int64)
    x0, x1 = np.minimum(p[:, 0], p[:, 2]), np.maximum(p[:, 0], p[:, 2])
    y0, y1 = np.minimum(p[:, 1], p[:, 3]), np.maximum(p[:, 1], p[:, 3])
    return np.stack([x0, y0, x1, y1], axis=1)


def clip_windows(windows: np.ndarray, width, height) -> np.ndarray:
    """Clip inclusive windows (K, 4) to the image; empty ones get x1 < x0 or y1 < y0.

    ``width``/``height``: scalars, or (K,) arrays (one image size per window).
    """
    out = windows.copy()
    np.maximum(out[:, 0], 0, out=out[:, 0])
    np.maximum(out[:, 1], 0, out=out[:, 1])
    np.minimum(out[:, 2], width - 1, out=out[:, 2])
    np.minimum(out[:, 3], height - 1, out=out[:, 3])
    return out


def ellipse_masks(
    ell: RasterEllipses, clipped: np.ndarray, which: Iterable[int] | None = None
) -> list[np.ndarray | None]:
    """Draw ellipses on their clipped windows: uint8 masks of shape (y1-y0+1, x1-x0+1).

    ``None`` for an ellipse whose window lies outside the image, or that is not in
    ``which`` (default: all are drawn).
    """
    import cv2

    wanted = range(len(ell)) if which is None else set(int(k) for k in which)
    masks: list[np.ndarray | None] = []
    for k in range(len(ell)):
        if k not in wanted:
            masks.append(None)
            continue
        x0, y0, x1, y1 = (int(v) for v in clipped[k])
        if x1 < x0 or y1 < y0:
            masks.append(None)
            continue
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
        cv2.ellipse(
            mask,
            (int(ell.cx[k]) - x0, int(ell.cy[k]) - y0),
            (int(ell.a[k]), int(ell.b[k])),
            int(ell.degrees[k]),
            0,
            360,
            1,
            -1,
        )
        masks.append(mask)
    return masks


def full_mask(region: np.ndarray, kind: str, width: int, height: int) -> np.ndarray:
    """The official mask of one region at full image size (reference and tests; slow path).

    ``region``: ``ra rb theta cx cy`` for ``kind="ellipse"``, ``x y w h`` for ``"rect"``.
    """
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    if kind == "ellipse":
        e = raster_ellipses(np.asarray(region, dtype=np.float64)[None, :5])
        cv2.ellipse(
            mask, (int(e.cx[0]), int(e.cy[0])), (int(e.a[0]), int(e.b[0])),
            int(e.degrees[0]), 0, 360, 1, -1,
        )  # fmt: skip
    elif kind == "rect":
        c = raster_rects(np.asarray(region, dtype=np.float64)[None, :4])[0]
        cv2.rectangle(mask, (int(c[0]), int(c[1])), (int(c[2]), int(c[3])), 1, -1)
    else:
        raise ValueError(f"unknown region kind {kind!r}")
    return mask


@dataclass(frozen=True)
class PairOverlaps:
    """Sparse overlaps: annotation index, detection index, overlap in (0, 1], each (P,)."""

    annot: np.ndarray
    det: np.ndarray
    overlap: np.ndarray


def _empty_pairs() -> PairOverlaps:
    return PairOverlaps(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


@dataclass(frozen=True)
class _Rastered:
    """Regions of many images rounded once, with windows clipped to their own image."""

    ellipses: RasterEllipses | None  # None for rectangles
    windows: np.ndarray  # (K, 4) clipped, inclusive


def _raster_all(
    regions: np.ndarray, kind: str, widths: np.ndarray, heights: np.ndarray
) -> _Rastered:
    if kind == "ellipse":
        ell = raster_ellipses(regions)
        return _Rastered(ell, clip_windows(ell.window, widths, heights))
    if kind == "rect":
        return _Rastered(None, clip_windows(raster_rects(regions), widths, heights))
    raise ValueError(f"unknown detection kind {kind!r}")


def pixel_overlaps(
    annotations: np.ndarray,
    detections: np.ndarray,
    kind: str,
    width: int,
    height: int,
) -> PairOverlaps:
    """Official pixel overlaps ``|A and D| / |A or D|`` of all touching pairs of one image.

    ``annotations``: (N, 5) ellipses; ``detections``: (K, 4+) rectangles ``x y w h`` for
    ``kind="rect"`` or (K, 5+) ellipses for ``kind="ellipse"``. Returns only the pairs
    with a positive overlap (indices local to this image).
    """
    if len(annotations) == 0 or len(detections) == 0:
        return _empty_pairs()
    ann = _raster_all(annotations, "ellipse", width, height)
    det = _raster_all(detections, kind, width, height)
    return _image_overlaps(ann.ellipses, ann.windows, det.ellipses, det.windows)  # type: ignore[arg-type]


def pixel_overlaps_many(
    annotations: np.ndarray,
    annot_counts: np.ndarray,
    detections: np.ndarray,
    det_counts: np.ndarray,
    kind: str,
    sizes: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
) -> PairOverlaps:
    """Pixel overlaps of every image of a data set, with global indices.

    ``annotations`` (sum(annot_counts), 5) and ``detections`` (sum(det_counts), 5 | 6)
    hold the regions of all images in image order; ``sizes`` (n_images, 2) their
    ``width, height``. Rounding and clipping are vectorised over the whole set; only
    mask drawing and counting run per image, and only for regions with a candidate pair.
    """
    n_img = len(annot_counts)
    off_a = np.r_[0, np.cumsum(annot_counts)]
    off_d = np.r_[0, np.cumsum(det_counts)]
    img_a = np.repeat(np.arange(n_img), annot_counts)
    img_d = np.repeat(np.arange(n_img), det_counts)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    ann = _raster_all(annotations.reshape(-1, 5), "ellipse", sizes[img_a, 0], sizes[img_a, 1])
    width = 5 if kind == "rect" else 6
    det = _raster_all(detections.reshape(-1, width), kind, sizes[img_d, 0], sizes[img_d, 1])
    pa: list[np.ndarray] = []
    pd: list[np.ndarray] = []
    po: list[np.ndarray] = []
    step = max(1, n_img // 50)
    for i in range(n_img):
        a0, a1, d0, d1 = off_a[i], off_a[i + 1], off_d[i], off_d[i + 1]
        if a1 > a0 and d1 > d0:
            pairs = _image_overlaps(
                ann.ellipses[a0:a1],  # type: ignore[index]
                ann.windows[a0:a1],
                det.ellipses[d0:d1] if det.ellipses is not None else None,
                det.windows[d0:d1],
            )
            pa.append(pairs.annot + a0)
            pd.append(pairs.det + d0)
            po.append(pairs.overlap)
        if progress is not None and (i % step == step - 1 or i == n_img - 1):
            progress(i + 1, n_img)
    if not pa:
        return _empty_pairs()
    return PairOverlaps(np.concatenate(pa), np.concatenate(pd), np.concatenate(po))


def _candidate_pairs(win_a: np.ndarray, win_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Inclusive windows touch when they overlap on both axes; bounded memory: nA x nD bools.
    hit = (
        (win_a[:, None, 0] <= win_d[None, :, 2])
        & (win_d[None, :, 0] <= win_a[:, None, 2])
        & (win_a[:, None, 1] <= win_d[None, :, 3])
        & (win_d[None, :, 1] <= win_a[:, None, 3])
    )
    ai, di = np.nonzero(hit)
    return ai, di


def _nonempty(windows: np.ndarray) -> np.ndarray:
    return (windows[:, 2] >= windows[:, 0]) & (windows[:, 3] >= windows[:, 1])


def _image_overlaps(
    ann: RasterEllipses,
    ann_win: np.ndarray,
    det: RasterEllipses | None,
    det_win: np.ndarray,
) -> PairOverlaps:
    """Overlaps of one image's regions (``det`` None: rectangles given by ``det_win``)."""
    ai, di = _candidate_pairs(ann_win, det_win)
    keep = _nonempty(ann_win)[ai] & _nonempty(det_win)[di]
    ai, di = ai[keep], di[keep]
    if len(ai) == 0:
        return _empty_pairs()
    ann_masks = ellipse_masks(ann, ann_win, np.unique(ai))
    ann_area = np.array([0.0 if m is None else float(np.count_nonzero(m)) for m in ann_masks])
    ox0 = np.maximum(ann_win[ai, 0], det_win[di, 0])
    oy0 = np.maximum(ann_win[ai, 1], det_win[di, 1])
    ox1 = np.minimum(ann_win[ai, 2], det_win[di, 2])
    oy1 = np.minimum(ann_win[ai, 3], det_win[di, 3])
    if det is None:
        # Clipped rectangles: their windows are exactly their pixels.
        det_area = (
            (det_win[:, 2] - det_win[:, 0] + 1) * (det_win[:, 3] - det_win[:, 1] + 1)
        ).astype(np.float64)
        inter = _rect_intersections(ann_masks, ann_win, ai, ox0, oy0, ox1, oy1)
    else:
        det_masks = ellipse_masks(det, det_win, np.unique(di))
        det_area = np.array([0.0 if m is None else float(np.count_nonzero(m)) for m in det_masks])
        inter = np.zeros(len(ai), dtype=np.float64)
        for p in range(len(ai)):
            a, d = int(ai[p]), int(di[p])
            ma, md = ann_masks[a], det_masks[d]
            assert ma is not None and md is not None
            sa = ma[oy0[p] - ann_win[a, 1] : oy1[p] - ann_win[a, 1] + 1,
                    ox0[p] - ann_win[a, 0] : ox1[p] - ann_win[a, 0] + 1]  # fmt: skip
            sd = md[oy0[p] - det_win[d, 1] : oy1[p] - det_win[d, 1] + 1,
                    ox0[p] - det_win[d, 0] : ox1[p] - det_win[d, 0] + 1]  # fmt: skip
            inter[p] = np.count_nonzero(sa & sd)
    union = ann_area[ai] + det_area[di] - inter
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    pos = overlap > 0
    return PairOverlaps(ai[pos], di[pos], overlap[pos])


# Above this many rectangles on one annotation, a summed-area table beats slicing.
_INTEGRAL_MIN_PAIRS = 4


def _rect_intersections(
    masks: list[np.ndarray | None],
    windows: np.ndarray,
    ai: np.ndarray,
    ox0: np.ndarray,
    oy0: np.ndarray,
    ox1: np.ndarray,
    oy1: np.ndarray,
) -> np.ndarray:
    """Pixels of annotation masks inside the pairs' (already clipped) overlap boxes."""
    import cv2

    inter = np.zeros(len(ai), dtype=np.float64)
    order = np.argsort(ai, kind="stable")
    bounds = np.flatnonzero(np.diff(ai[order])) + 1
    for sel in np.split(order, bounds):
        a = int(ai[sel[0]])
        mask = masks[a]
        assert mask is not None
        # Window-relative, half-open boxes.
        x0 = ox0[sel] - windows[a, 0]
        y0 = oy0[sel] - windows[a, 1]
        x1 = ox1[sel] - windows[a, 0] + 1
        y1 = oy1[sel] - windows[a, 1] + 1
        if len(sel) < _INTEGRAL_MIN_PAIRS:
            for q in range(len(sel)):
                inter[sel[q]] = np.count_nonzero(mask[y0[q] : y1[q], x0[q] : x1[q]])
        else:
            sat = cv2.integral(mask, sdepth=cv2.CV_32S)
            inter[sel] = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return inter
