"""The evaluators as Python functions: ``from facebench import evaluate_wider, evaluate_fddb``.

Both do what ``facebench eval wider`` / ``facebench eval fddb`` do (official protocol, protocol
checks, operating points; WIDER breakdowns on request) and return a result object whose
``as_json()`` is that command's ``--json`` entry for the method (NaN AP -> ``None``). No
torch import.

    >>> from facebench import evaluate_wider
    >>> r = evaluate_wider("preds/", "wider_face_split_mat_dir/", breakdown=True)
    >>> r.ap["hard"], r.operating_points["hard"]["best_f1"]["recall"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import FacebenchError

PathLike = str | Path


@dataclass
class WiderResult:
    """One prediction set evaluated on WIDER FACE.

    ``ap``: setting -> AP (fraction; NaN when a setting has no face); ``evaluation``: the
    official curves (:class:`facebench.evaluation.wider.WiderEvaluation`); ``analysis``:
    checks, operating points and breakdown (:class:`facebench.evaluation.wider_extras.
    WiderAnalysis`); ``predictions``: what was read.
    """

    name: str
    ap: dict[str, float]
    evaluation: Any
    analysis: Any
    predictions: Any
    gt_dir: str | None

    @property
    def checks(self) -> list:
        return self.analysis.checks

    @property
    def warnings(self) -> list[str]:
        return list(self.evaluation.notes) + self.analysis.warnings

    @property
    def operating_points(self) -> dict[str, Any]:
        return self.analysis.operating_points

    @property
    def breakdown(self):
        return self.analysis.breakdown

    def as_json(self) -> dict[str, Any]:
        """The method's entry of ``facebench eval wider --json`` (plus ``protocol``)."""
        from facebench.evaluation.wider_report import MethodResult, report_json

        method = MethodResult(
            self.name, Path(self.predictions.root), self.predictions, self.evaluation,
            self.analysis,
        )  # fmt: skip
        doc = report_json([method], Path(self.gt_dir or ""), self.evaluation.protocol)
        return {"protocol": doc["protocol"], **doc["methods"][self.name]}


def evaluate_wider(
    predictions: PathLike | Sequence[np.ndarray] | Mapping[str, np.ndarray] | Any,
    gt: PathLike | Any,
    *,
    protocol: str = "official",
    image_ids: PathLike | None = None,
    images: PathLike | None = None,
    image_sizes: PathLike | None = None,
    score_thresh: float | None = None,
    test_scales: Sequence[float] | None = None,
    at_precision: float = 0.9,
    at_fppi: float = 1.0,
    breakdown: bool = False,
    strict: bool = False,
    name: str | None = None,
) -> WiderResult:
    """Evaluate WIDER FACE predictions with the official protocol.

    ``predictions``: a folder in the submission layout (``<event>/<image>.txt``), a COCO
    results ``.json`` (ids resolved by ``image_ids``, default ``images.json`` beside it), a
    :class:`WiderPredictions`, a list of (P, 5) ``x y w h score`` arrays in ground-truth
    order, or a dict ``{"event/image": array}`` (images left out have no predictions).
    ``gt``: the folder with ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``,
    or a :class:`WiderEvalGT`. ``images`` / ``image_sizes``: image folder or size CSV for the
    outside-image check; ``score_thresh`` / ``test_scales`` override ``protocol.json``.
    Raises :class:`facebench.errors.FacebenchError` (or its ``FormatError``) on bad input.
    """
    from facebench.evaluation.wider import evaluate_wider as official
    from facebench.evaluation.wider_extras import (
        analyse_wider,
        read_protocol_hints,
        wider_image_sizes,
    )
    from facebench.formats import coco
    from facebench.formats.wider import (
        WiderEvalGT,
        WiderPredictions,
        read_eval_gt,
        read_wider_predictions,
    )

    gt_dir = None
    if not isinstance(gt, WiderEvalGT):
        gt_dir = str(gt)
        gt = read_eval_gt(gt)
    source: Path | None = None
    if isinstance(predictions, str | Path):
        source = Path(predictions)
        if coco.is_coco_results(source):
            preds = coco.wider_predictions_from_coco(
                coco.read_coco_results(source, image_ids), gt
            )
        else:
            preds = read_wider_predictions(source, gt, strict=strict)
    elif isinstance(predictions, WiderPredictions):
        preds, source = predictions, Path(predictions.root)
    else:
        preds = _arrays_to_predictions(predictions, gt)
    evaluation = official(gt, preds, protocol=protocol)
    hints = read_protocol_hints(source).override(score_thresh, test_scales)
    analysis = analyse_wider(
        gt, evaluation, preds.rows, preds.offsets, hints=hints,
        image_sizes=wider_image_sizes(gt, images, image_sizes), at_precision=at_precision,
        at_fppi=at_fppi, breakdown=breakdown,
    )  # fmt: skip
    label = name or (source.stem if source is not None and source.is_file() else None)
    label = label or (source.resolve().name if source is not None else "predictions")
    return WiderResult(label, evaluation.ap, evaluation, analysis, preds, gt_dir)


def _arrays_to_predictions(predictions, gt):
    from facebench.formats.wider import WiderPredictions

    keys = [f"{event}/{stem}" for event, stem in gt.image_keys()]
    if isinstance(predictions, Mapping):
        unknown = [k for k in predictions if k.removesuffix(".jpg") not in set(keys)]
        if unknown:
            raise FacebenchError(f"predictions for images not in the ground truth: {unknown[0]!r}")
        by_key = {k.removesuffix(".jpg"): v for k, v in predictions.items()}
        predictions = [by_key.get(k, np.zeros((0, 5))) for k in keys]
    if len(predictions) != len(keys):
        raise FacebenchError(f"{len(predictions)} prediction arrays for {len(keys)} images")
    arrays = []
    for key, p in zip(keys, predictions, strict=True):
        a = np.asarray(p, dtype=np.float64)
        if a.size and (a.ndim != 2 or a.shape[1] < 5):
            raise FacebenchError(f"{key}: expected a (P, 5) x y w h score array, got {a.shape}")
        arrays.append(a[:, :5] if a.size else np.zeros((0, 5)))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    rows = np.concatenate(arrays) if arrays else np.zeros((0, 5))
    return WiderPredictions(Path("."), rows, offsets)


@dataclass
class FddbResult:
    """One detection set evaluated on FDDB: ``result`` the official ROC
    (:class:`facebench.evaluation.fddb.FddbResult`), ``analysis`` checks and operating points."""

    name: str
    result: Any
    analysis: Any
    at: tuple[float, ...]

    def tpr_at(self, k: float, curve: str = "discrete", interpolate: bool = False) -> float:
        """TPR at ``k`` false positives (the official step rule, or interpolated)."""
        return self.result.tpr_at(k, curve, interpolate)  # type: ignore[arg-type]

    @property
    def operating_points(self) -> dict[str, Any]:
        return self.analysis.operating_points

    @property
    def warnings(self) -> list[str]:
        return self.analysis.warnings

    def as_json(self) -> dict[str, Any]:
        """The method's entry of ``facebench eval fddb --json``."""
        return {**self.result.summary(self.at), **self.analysis.as_json()}


def evaluate_fddb(
    detections: PathLike,
    folds_dir: PathLike,
    *,
    image_sizes: PathLike | Mapping[str, tuple[int, int]] | None = None,
    images: PathLike | None = None,
    folds: Sequence[int] | None = None,
    overlap: str = "pixel",
    format: str = "auto",
    rect_to_ellipse: bool = False,
    image_ids: PathLike | None = None,
    at: Sequence[float] = (200, 500, 1000),
    score_thresh: float | None = None,
    test_scales: Sequence[float] | None = None,
    at_precision: float = 0.9,
    at_fppi: float = 1.0,
    name: str | None = None,
) -> FddbResult:
    """Evaluate FDDB detections (discrete and continuous ROC, the official protocol).

    ``detections``: an official detection file, a folder of ``fold-XX-out.txt`` files or a
    COCO results ``.json`` (``image_ids``). Image sizes from ``image_sizes`` (a CSV path or a
    ``{name: (width, height)}`` dict) or the images' headers under ``images``. ``folds``:
    which folds (default all 10, as the protocol requires).
    """
    from facebench.evaluation.fddb import (
        align_detections,
        load_detections,
        rects_to_ellipses,
    )
    from facebench.evaluation.fddb import evaluate_fddb as official
    from facebench.evaluation.fddb_extras import analyse_fddb, fddb_protocol_hints
    from facebench.formats.fddb import available_folds, read_folds
    from facebench.formats.imagesize import image_sizes_from_folder, read_sizes_csv

    fold_numbers = available_folds(folds_dir)
    all_images = read_folds(folds_dir, fold_numbers)
    chosen = [im for im in all_images if folds is None or im.fold in set(folds)]
    if not chosen:
        raise FacebenchError(f"{folds_dir}: none of folds {list(folds or [])} found")
    if (image_sizes is None) == (images is None):
        raise FacebenchError("give exactly one of image_sizes (CSV or dict) or images (folder)")
    if images is not None:
        sizes = image_sizes_from_folder(images, [im.name for im in chosen])
    elif isinstance(image_sizes, Mapping):
        sizes = dict(image_sizes)
    else:
        sizes = read_sizes_csv(image_sizes)  # type: ignore[arg-type]
    dets = load_detections(detections, format, image_ids)  # type: ignore[arg-type]
    if rect_to_ellipse:
        dets = rects_to_ellipses(dets)
    known = [im.name for im in all_images]
    result = official(chosen, sizes, dets, overlap, known)  # type: ignore[arg-type]
    hints = fddb_protocol_hints(detections).override(score_thresh, test_scales)
    analysis = analyse_fddb(
        chosen, sizes, align_detections(chosen, dets, known).per_image, dets.kind, result,
        hints=hints, at_precision=at_precision, at_fppi=at_fppi,
    )  # fmt: skip
    return FddbResult(name or Path(detections).stem, result, analysis, tuple(at))
