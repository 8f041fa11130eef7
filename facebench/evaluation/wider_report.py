"""Reports of WIDER evaluations: the JSON document, the PR-curve CSV, the PNG plot, the table.

JSON shape (a contract; scripts read it)::

    {"protocol": "official", "protocol_version": "...", "iou_threshold": 0.5,
     "thresholds": 1000,
     "ground_truth": {"dir": ..., "images": 3226, "faces": {"easy": 7211, ...}},
     "methods": {"<name>": {"easy": 0.xx, "medium": 0.xx, "hard": 0.xx, "all": 0.xx,
                            "pred_dir": ..., "images": ..., "images_with_predictions": ...,
                            "predictions": ..., "files_missing": n, "files_invalid": n,
                            "files_extra": n, "files_empty": n (count 0),
                            "missing": [...], "invalid": [...],
                            "extra": [...], "warnings": [...],
                            "curves": {"easy": {"threshold": [...], "precision": [...],
                                                "recall": [...], "tp": [...],
                                                "proposals": [...]}, ...},
                            "protocol_hints": {"score_thresh", "test_scales", "source"},
                            "checks": [{"name", "status": "ok|warn|skipped", "message",
                                        ...measured values}],
                            "operating_points": {"<setting>": {"best_f1": {...},
                                "at_precision": {"target", ...}, "at_fppi": {"target", ...}}},
                            "breakdown": {...} (with --breakdown; facebench.evaluation.breakdown)
                            }}}

An operating point is ``{"threshold" (normalised), "score" (raw), "precision", "recall",
"f1", "fppi", "tp", "fp"}`` (:mod:`facebench.evaluation.operating_points`).

AP values are fractions; precision is ``null`` where nothing was proposed (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facebench.atomic import atomic_open
from facebench.evaluation.wider import (
    IOU_THRESHOLD,
    PROTOCOL_VERSION,
    THRESHOLD_COUNT,
    WiderEvaluation,
)
from facebench.evaluation.wider_extras import WiderAnalysis
from facebench.formats.wider import WiderPredictions

SETTING_TITLES = {"easy": "Easy", "medium": "Medium", "hard": "Hard", "all": "All"}


@dataclass
class MethodResult:
    """One evaluated prediction folder."""

    name: str
    pred_dir: Path
    predictions: WiderPredictions
    evaluation: WiderEvaluation
    analysis: WiderAnalysis | None = None


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in np.asarray(values, dtype=np.float64).tolist()]


def _ap(value: float) -> float | None:
    return None if math.isnan(value) else value


def report_json(results: list[MethodResult], gt_dir: Path, protocol: str) -> dict:
    """The JSON document described in the module docstring."""
    faces: dict[str, int] = {}
    images = 0
    methods: dict[str, dict] = {}
    for r in results:
        ev, preds = r.evaluation, r.predictions
        faces = {s: c.faces for s, c in ev.curves.items()}
        images = ev.images
        entry: dict = {s: _ap(c.ap) for s, c in ev.curves.items()}
        entry.update(
            pred_dir=str(r.pred_dir),
            images=ev.images,
            images_with_predictions=ev.images_with_predictions,
            predictions=ev.predictions,
            files_missing=len(preds.missing),
            files_invalid=len(preds.invalid),
            files_extra=len(preds.extra),
            files_empty=len(preds.empty),
            missing=list(preds.missing),
            invalid=[str(p) for p in preds.invalid],
            extra=list(preds.extra),
            warnings=[str(p) for p in preds.notes] + list(ev.notes),
            curves={
                s: {
                    "threshold": c.thresholds.tolist(),
                    "precision": _floats(c.precision),
                    "recall": _floats(c.recall),
                    "tp": c.tp.tolist(),
                    "proposals": c.proposals.tolist(),
                }
                for s, c in ev.curves.items()
            },
        )
        if r.analysis is not None:
            entry["warnings"] += r.analysis.warnings
            entry.update(r.analysis.as_json())
        methods[r.name] = entry
    return {
        "protocol": protocol,
        "protocol_version": PROTOCOL_VERSION[protocol],
        "iou_threshold": IOU_THRESHOLD,
        "thresholds": THRESHOLD_COUNT,
        "ground_truth": {"dir": str(gt_dir), "images": images, "faces": faces},
        "methods": methods,
    }


def write_curves_csv(path: str | Path, results: list[MethodResult]) -> None:
    """``method,setting,t,threshold,precision,recall,tp,proposals`` (empty precision = NaN)."""
    lines = ["method,setting,t,threshold,precision,recall,tp,proposals"]
    for r in results:
        name = _csv_field(r.name)
        for setting, c in r.evaluation.curves.items():
            for t in range(len(c.thresholds)):
                p, rec = c.precision[t], c.recall[t]
                lines.append(
                    f"{name},{setting},{t + 1},{float(c.thresholds[t])!r},"
                    f"{'' if math.isnan(p) else repr(float(p))},"
                    f"{'' if math.isnan(rec) else repr(float(rec))},{c.tp[t]},{c.proposals[t]}"
                )
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def _csv_field(text: str) -> str:
    if any(ch in text for ch in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_plot(path: str | Path, results: list[MethodResult], protocol: str) -> None:
    """PR curves, one panel per setting, legend sorted by AP (``name-0.xxx``), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(results[0].evaluation.curves) if results else []
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 4.4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        ranked = sorted(
            results,
            key=lambda r: -_sortable(r.evaluation.curves[setting].ap),
        )
        for r in ranked:
            c = r.evaluation.curves[setting]
            ax.plot(c.recall, c.precision, linewidth=2, label=f"{r.name}-{c.ap:.3f}")
        ax.set_title(f"{SETTING_TITLES.get(setting, setting)} ({protocol})")
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(True, linestyle=":")
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def _sortable(ap: float) -> float:
    return -1.0 if math.isnan(ap) else ap


def format_table(results: list[MethodResult], settings: Mapping[str, str] = SETTING_TITLES) -> str:
    """Plain-text table: one row per method, AP in percent per setting."""
    width = max([len("method")] + [len(r.name) for r in results])
    header = "method".ljust(width) + "".join(f"{title:>9}" for title in settings.values())
    rows = [header]
    for r in results:
        cells = []
        for s in settings:
            ap = r.evaluation.curves[s].ap if s in r.evaluation.curves else math.nan
            cells.append(f"{'n/a' if math.isnan(ap) else f'{100 * ap:.2f}':>9}")
        rows.append(r.name.ljust(width) + "".join(cells))
    return "\n".join(rows)
