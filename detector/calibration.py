"""Per-scale score calibration before the cross-scale merge (Platt scaling per sub-detector).

Each sub-detector (@16 .. @128) is trained on its own anchors with its own sample budget, so
their face probabilities are not on one scale: on the CPU ablation the small-scale heads'
false positives scored up to 0.44 while the @128 head never exceeded 0.15, and a merge that
ranks raw scores lets the former bury the latter (Easy AP 1.0 merged against 14.0 for @128
alone). Platt scaling maps each scale's score ``s`` to ``sigmoid(a * logit(s) + b)`` with
``(a, b)`` fitted per scale by logistic regression on labelled detections of training images,
so that a calibrated score estimates the probability that the detection is a face whatever
sub-detector produced it.

Labels: a detection of a training image is a positive when its IoU with some valid
(non-``invalid``) face is at least ``iou`` (0.5, the WIDER criterion), a negative when its
IoU with every face, invalid ones included, is below ``iou``, and is left out otherwise
(it matches only an invalid face). Within one sub-detector the boxes have passed NMS at 0.3,
so two boxes rarely both reach IoU 0.5 with one face; no one-to-one matching is done.
Targets use Platt's smoothing (``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``), so a scale
with few or no positives gets a finite, low mapping instead of a degenerate one. A scale
without detections keeps the identity (``a = 1, b = 0``).

The fit is stored beside the checkpoint as ``<checkpoint>.calibration.json``
(:func:`sidecar_path`); ``facebench calibrate`` writes it and ``facebench detect --merge
calibrated`` uses it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import FacebenchError

CALIBRATION_FORMAT = 1
_EPS = 1e-6


def logit(scores: np.ndarray) -> np.ndarray:
    """``ln(s / (1 - s))`` with ``s`` clipped to ``[1e-6, 1 - 1e-6]`` (float64)."""
    s = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(s) - np.log1p(-s)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: ``0.5 * (1 + tanh(z / 2))``."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def fit_platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 100,
              l2: float = 1e-6, min_slope: float = 1e-3) -> tuple[float, float]:
    """Platt's fit of ``p = sigmoid(a * logit(s) + b)`` to ``labels`` (1 face, 0 not).

    Newton's method on the smoothed-target cross-entropy (a tiny ``l2`` penalty on ``a`` and
    ``b`` keeps a separable set finite). The slope is kept at ``a >= min_slope`` (then ``b``
    is refitted), so the mapping is increasing: calibration never reorders the boxes of
    one sub-detector, only the sub-detectors against each other. Returns ``(a, b)``;
    ``(1, 0)`` without scores.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if len(s) != len(y):
        raise ValueError(f"{len(s)} scores but {len(y)} labels")
    if s.size == 0:
        return 1.0, 0.0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    target = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    x = np.stack([logit(s), np.ones_like(s)], axis=1)
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = sigmoid(x @ w)
        grad = x.T @ (p - target) + l2 * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.abs(step).max() < 1e-10:
            break
    if w[0] < min_slope:
        w[0] = min_slope
        for _ in range(iterations):
            p = sigmoid(x @ w)
            step = (np.sum(p - target) + l2 * w[1]) / (np.sum(p * (1.0 - p)) + l2)
            w[1] -= step
            if abs(step) < 1e-10:
                break
    return float(w[0]), float(w[1])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), x1 y1 x2 y2."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0.0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0.0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0.0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def label_detections(dets: np.ndarray, faces: np.ndarray, invalid: np.ndarray,
                     iou: float = 0.5) -> np.ndarray:
    """Labels of ``dets`` (K, >=4 x1 y1 x2 y2 ...) against ``faces`` (M, 4 x1 y1 x2 y2):
    1 positive, 0 negative, -1 left out (see the module docstring). int8 (K,)."""
    k = len(dets)
    if k == 0:
        return np.zeros(0, dtype=np.int8)
    if len(faces) == 0:
        return np.zeros(k, dtype=np.int8)
    overlap = iou_matrix(dets[:, :4], faces) >= iou
    invalid = np.asarray(invalid, dtype=bool).reshape(-1)
    valid_hit = (overlap & ~invalid[None, :]).any(axis=1)
    any_hit = overlap.any(axis=1)
    return np.where(valid_hit, 1, np.where(any_hit, -1, 0)).astype(np.int8)


@dataclass(frozen=True)
class ScaleCalibration:
    """Platt parameters per anchor scale: ``p = sigmoid(a[i] * logit(s) + b[i])`` for the
    detections of scale id ``i``; ``positives``/``negatives`` count the fitted detections."""

    scales: tuple[int, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    images: int = 0
    source: str = ""
    #: The detector settings the fit was made with (pyramid scales, NMS IoU, score floor):
    #: calibrated scores are only meaningful under the same settings.
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.scales)
        if not n or any(len(v) != n for v in (self.a, self.b, self.positives, self.negatives)):
            raise FacebenchError("calibration: need one a, b, positive and negative count "
                                 "per scale")
        if not all(np.isfinite(self.a)) or not all(np.isfinite(self.b)):
            raise FacebenchError("calibration: parameters must be finite")

    def apply(self, dets: np.ndarray) -> np.ndarray:
        """``dets`` (K, 6) x1 y1 x2 y2 score scale_id -> a float32 copy with calibrated scores,
        re-sorted by decreasing calibrated score (stable)."""
        rows = np.array(dets, dtype=np.float32).reshape(-1, 6)
        if not len(rows):
            return rows
        sid = rows[:, 5].astype(np.int64)
        if sid.min() < 0 or sid.max() >= len(self.scales):
            raise FacebenchError(
                f"calibration covers {len(self.scales)} scales, detections carry scale id "
                f"{int(sid.max()) if sid.max() >= 0 else int(sid.min())}"
            )
        a, b = np.asarray(self.a)[sid], np.asarray(self.b)[sid]
        rows[:, 4] = sigmoid(a * logit(rows[:, 4]) + b)
        return rows[np.argsort(-rows[:, 4], kind="stable")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT, "method": "platt per anchor scale",
            "scales": list(self.scales), "a": list(self.a), "b": list(self.b),
            "positives": list(self.positives), "negatives": list(self.negatives),
            "images": self.images, "source": self.source, "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "calibration") -> ScaleCalibration:
        try:
            if data.get("format") != CALIBRATION_FORMAT:
                raise FacebenchError(f"{where}: unknown calibration format {data.get('format')!r}")
            return cls(
                scales=tuple(int(v) for v in data["scales"]),
                a=tuple(float(v) for v in data["a"]), b=tuple(float(v) for v in data["b"]),
                positives=tuple(int(v) for v in data["positives"]),
                negatives=tuple(int(v) for v in data["negatives"]),
                images=int(data.get("images", 0)), source=str(data.get("source", "")),
                settings=dict(data.get("settings") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FacebenchError(f"{where}: not a calibration file ({exc})") from None


def sidecar_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint file's calibration lives: ``<checkpoint>.calibration.json``."""
    return Path(str(checkpoint) + ".calibration.json")


def save_calibration(calibration: ScaleCalibration, path: str | Path) -> Path:
    from facebench.atomic import write_json

    write_json(path, calibration.to_dict())
    return Path(path)


def load_calibration(path: str | Path) -> ScaleCalibration:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FacebenchError(f"{path}: cannot read calibration: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise FacebenchError(f"{path}: calibration is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FacebenchError(f"{path}: calibration is not a JSON object")
    return ScaleCalibration.from_dict(data, str(path))


def fit_from_detections(
    scales: Sequence[int], detections: Sequence[np.ndarray], faces: Sequence[np.ndarray],
    invalid: Sequence[np.ndarray], iou: float = 0.5, source: str = "",
) -> ScaleCalibration:
    """Fit one Platt mapping per scale from per-image ``detections`` ((K, 6) rows with the
    scale id in column 5, each sub-detector NMS'd on its own) and the images' ``faces``
    ((M, 4) x1 y1 x2 y2) with their ``invalid`` flags."""
    if not (len(detections) == len(faces) == len(invalid)):
        raise ValueError("need detections, faces and invalid flags for the same images")
    labelled = [
        (np.asarray(d, dtype=np.float32).reshape(-1, 6), label_detections(
            np.asarray(d, dtype=np.float32).reshape(-1, 6), f, v, iou))
        for d, f, v in zip(detections, faces, invalid, strict=True)
    ]
    rows = np.concatenate([d for d, _ in labelled]) if labelled else np.zeros((0, 6))
    labels = np.concatenate([lab for _, lab in labelled]) if labelled else np.zeros(0)
    keep = labels >= 0
    rows, labels = rows[keep], labels[keep]
    a, b, pos, neg = [], [], [], []
    for i in range(len(scales)):
        mine = rows[:, 5].astype(np.int64) == i
        ai, bi = fit_platt(rows[mine, 4], labels[mine] == 1)
        a.append(ai)
        b.append(bi)
        pos.append(int((labels[mine] == 1).sum()))
        neg.append(int((labels[mine] == 0).sum()))
    return ScaleCalibration(tuple(int(s) for s in scales), tuple(a), tuple(b), tuple(pos),
                            tuple(neg), images=len(detections), source=source)


def fit_on_wider_split(
    detector: Any, images_dir: Path, split: Path, limit: int, iou: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> ScaleCalibration:
    """Run ``detector`` (a per-scale-NMS checkpoint detector with ``model.design.scales``)
    on the first ``limit`` images of a WIDER split file and fit the per-scale calibration
    against that split's faces (``x y w h`` boxes, the ``invalid`` attribute)."""
    from facebench import detection
    from facebench.formats.wider import ATTRIBUTE_NAMES, read_split_txt

    if limit < 1:
        raise FacebenchError(f"calibration needs at least 1 image, got {limit}")
    gt = {Path(im.name).with_suffix("").as_posix(): im for im in read_split_txt(split)}
    items = detection.wider_images(images_dir, split)[:limit]
    invalid_col = ATTRIBUTE_NAMES.index("invalid")
    dets, faces, invalid = [], [], []
    for k, item in enumerate(items, 1):
        im = gt[item.key]
        dets.append(detector.detect_batch([detection.load_image(item.path)])[0])
        xywh = im.boxes.astype(np.float64).reshape(-1, 4)
        faces.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
        invalid.append(im.attributes[:, invalid_col].astype(bool))
        if progress is not None:
            progress(k, len(items))
    scales = detector.model.design.scales
    return fit_from_detections(scales, dets, faces, invalid, iou,
                               source=f"{split} (first {len(items)} images)")


def calibrate_checkpoint(
    checkpoint: str | Path, data: str | Path, images: int = 32,
    scales: Sequence[float] = (1.0,), max_side: int = 3000, nms_iou: float | None = None,
    score_thresh: float = 0.001, progress: Callable[[int, int], None] | None = None,
) -> tuple[ScaleCalibration, Path]:
    """Fit the per-scale calibration of a checkpoint on the first ``images`` images of the
    training split of ``data`` (a WIDER root or a synthetic data folder), with the detector
    settings it will be used with; write it to :func:`sidecar_path` and return both."""
    from detector.data import resolve_wider_root
    from detector.inference import DEFAULT_NMS_IOU, CheckpointDetector

    root = resolve_wider_root(data)
    split = root / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    if not split.is_file():
        raise FacebenchError(f"{split}: training split not found (calibration fits on the "
                             "training images; give a WIDER root or a synthetic data folder)")
    det = CheckpointDetector(
        str(checkpoint), scales=scales, max_side=max_side,
        nms_iou=DEFAULT_NMS_IOU if nms_iou is None else nms_iou, score_thresh=score_thresh,
        max_detections=4000, nms_per_scale=True,
    )
    fitted = fit_on_wider_split(det, root / "WIDER_train", split, images, progress=progress)
    settings = {k: det.protocol()[k] for k in ("scales", "max_side", "nms_iou", "score_thresh")}
    fitted = ScaleCalibration(fitted.scales, fitted.a, fitted.b, fitted.positives,
                              fitted.negatives, fitted.images, fitted.source, settings)
    return fitted, save_calibration(fitted, sidecar_path(det.checkpoint))


def merge_calibration(merge: str | None, checkpoint: str | Path) -> ScaleCalibration | None:
    """The calibration the cross-scale merge of ``checkpoint`` uses: ``merge`` ``"nms"``:
    none (raw scores); ``"calibrated"``: the sidecar file, which must exist; ``None`` (the
    default): the sidecar when it exists, else none."""
    from detector.checkpoint import resolve_checkpoint

    if merge not in (None, "nms", "calibrated"):
        raise FacebenchError(f"merge must be 'nms' or 'calibrated', got {merge!r}")
    if merge == "nms":
        return None
    path = sidecar_path(resolve_checkpoint(checkpoint))
    if path.is_file():
        return load_calibration(path)
    if merge == "calibrated":
        raise FacebenchError(f"{path}: no calibration for this checkpoint; fit one with "
                             "`facebench calibrate --checkpoint ... --data ...`")
    return None


class CalibratedWriter:
    """Writer adapter: calibrates each image's per-scale rows, then hands them to ``writer``
    (typically the cross-scale merge)."""

    def __init__(self, writer: Any, calibration: ScaleCalibration) -> None:
        self.writer = writer
        self.calibration = calibration

    def write(self, item: Any, dets: np.ndarray) -> None:
        self.writer.write(item, self.calibration.apply(dets))

    def close(self) -> dict:
        return self.writer.close()
