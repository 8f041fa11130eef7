"""What ``facebench eval wider`` adds to the official AP: protocol checks, operating points,
breakdowns (see :mod:`.checks`, :mod:`.operating_points`, :mod:`.breakdown`).

:func:`analyse_wider` runs all of them for one evaluated prediction set; the official
evaluation itself (:func:`.wider.evaluate_wider`) is not changed by any of this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import FormatError
from facebench.evaluation.breakdown import Breakdown, wider_breakdown
from facebench.evaluation.checks import Check, ProtocolHints, protocol_checks
from facebench.evaluation.operating_points import operating_points
from facebench.evaluation.wider import WiderEvaluation
from facebench.formats.wider import WiderEvalGT

PROTOCOL_FILE = "protocol.json"


@dataclass
class WiderAnalysis:
    """Checks, operating points per setting and (optionally) the breakdown of one method."""

    hints: ProtocolHints
    checks: list[Check]
    operating_points: dict[str, dict[str, Any]]
    breakdown: Breakdown | None = None

    @property
    def warnings(self) -> list[str]:
        return [c.message for c in self.checks if c.status == "warn"]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol_hints": self.hints.as_json(),
            "checks": [c.as_json() for c in self.checks],
            "operating_points": self.operating_points,
        }
        if self.breakdown is not None:
            out["breakdown"] = self.breakdown.as_json()
        return out


def read_protocol_hints(pred_dir: str | Path | None) -> ProtocolHints:
    """Hints from ``<pred_dir>/protocol.json`` (written by ``facebench detect``), if present;
    for a prediction file (COCO results, FDDB detections), the one beside it."""
    if pred_dir is None:
        return ProtocolHints()
    folder = Path(pred_dir)
    path = (folder if folder.is_dir() else folder.parent) / PROTOCOL_FILE
    if not path.is_file():
        return ProtocolHints()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(path, f"not a readable protocol record: {exc}") from None
    if not isinstance(record, dict):
        raise FormatError(path, "not a protocol record (expected a JSON object)")
    return ProtocolHints.from_record(record, str(path))


def wider_image_sizes(
    gt: WiderEvalGT, images_dir: str | Path | None = None, sizes_csv: str | Path | None = None
) -> np.ndarray | None:
    """(n_images, 2) width, height in .mat order, from WIDER images (``<dir>/<event>/<stem>.jpg``,
    ``dir`` may also be the folder above ``images``) or a ``name,width,height`` CSV keyed by
    ``event/stem`` (with or without ``.jpg``); NaN where the CSV lacks an image; None when
    neither is given."""
    from facebench.formats.imagesize import image_sizes_from_folder, read_sizes_csv

    keys = [f"{ev}/{stem}" for ev, stem in gt.image_keys()]
    if images_dir is not None:
        root = Path(images_dir)
        if (root / "images").is_dir():
            root = root / "images"
        sizes = image_sizes_from_folder(root, keys)
        return np.array([sizes[k] for k in keys], dtype=np.float64).reshape(-1, 2)
    if sizes_csv is not None:
        table = read_sizes_csv(sizes_csv)
        table = {k.removesuffix(".jpg"): v for k, v in table.items()}
        return np.array([table.get(k, (np.nan, np.nan)) for k in keys], dtype=np.float64).reshape(
            -1, 2
        )
    return None


def score_mapping(evaluation: WiderEvaluation):
    """Normalised WIDER threshold -> raw score (inverse of the protocol's min-max scaling)."""
    m = evaluation.matched
    if m is None or m.raw_scores.size == 0:
        return None
    raw = m.raw_scores
    if evaluation.protocol == "official":
        hi = max(float(np.finfo(np.float32).tiny), float(raw.max()))
        lo = min(float(np.finfo(np.float32).max), float(raw.min()))
    else:
        hi, lo = max(0.0, float(raw.max())), min(1.0, float(raw.min()))
    return lambda thr: lo + thr * (hi - lo)


def analyse_wider(
    gt: WiderEvalGT,
    evaluation: WiderEvaluation,
    rows: np.ndarray,
    offsets: np.ndarray,
    *,
    hints: ProtocolHints | None = None,
    image_sizes: np.ndarray | None = None,
    at_precision: float = 0.9,
    at_fppi: float = 1.0,
    breakdown: bool = False,
) -> WiderAnalysis:
    """Checks, operating points (per setting) and optionally the breakdown of one method.

    ``rows``/``offsets``: the predictions as evaluated (:class:`WiderPredictions` fields).
    """
    boxes = gt.flat_boxes()
    heights = np.concatenate([b[b.any(axis=1), 3] for b in boxes]).astype(np.float64)
    hints = hints or ProtocolHints()
    checks = protocol_checks(
        rows,
        offsets,
        image_sizes=image_sizes,
        gt_heights=heights,
        hints=hints,
        image_names=[f"{ev}/{stem}" for ev, stem in gt.image_keys()],
    )
    to_score = score_mapping(evaluation)
    points = {
        s: operating_points(
            c.thresholds,
            c.tp,
            c.proposals,
            c.faces,
            evaluation.images,
            at_precision=at_precision,
            at_fppi=at_fppi,
            to_score=to_score,
        )
        for s, c in evaluation.curves.items()
    }
    return WiderAnalysis(
        hints=hints,
        checks=checks,
        operating_points=points,
        breakdown=wider_breakdown(gt, evaluation) if breakdown else None,
    )


def format_operating_points(named: list[tuple[str, WiderAnalysis]]) -> str:
    """Plain-text table: per method and setting, best-F1 / precision target / FPPI target."""
    if not named:
        return ""
    first = next(iter(named[0][1].operating_points.values()))
    p_target, f_target = first["at_precision"]["target"], first["at_fppi"]["target"]
    width = max(6, *(len(n) for n, _ in named))
    head = (
        f"{'method'.ljust(width)} {'setting':<7} {'F1':>6} {'thr':>6} {'score':>7} {'P':>6} "
        f"{'R':>6} | {'P>=' + format(p_target, 'g'):>7} {'score':>7} {'R':>6} | "
        f"{'R@' + format(f_target, 'g') + 'fppi':>9}"
    )
    lines = [head]
    for name, a in named:
        for setting, p in a.operating_points.items():
            b, ap_, af = p["best_f1"] or {}, p["at_precision"], p["at_fppi"]
            lines.append(
                f"{name.ljust(width)} {setting:<7} {_pct(b.get('f1')):>6} "
                f"{_fmt(b.get('threshold')):>6} {_fmt(b.get('score')):>7} "
                f"{_pct(b.get('precision')):>6} {_pct(b.get('recall')):>6} | "
                f"{_fmt(ap_.get('threshold')):>7} {_fmt(ap_.get('score')):>7} "
                f"{_pct(ap_.get('recall')):>6} | {_pct(af.get('recall')):>9}"
            )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
