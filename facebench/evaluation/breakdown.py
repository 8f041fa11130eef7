"""WIDER FACE breakdowns: recall and AP by face size, by annotated attribute, and per event.

Exact definition (also in the README):

* The faces considered are those of the ``all`` setting (every annotated face except the
  ``[0 0 0 0]`` placeholder of face-less images). A **bucket** is a subset of them: by height
  ``h`` of the ground-truth box in pixels (``<10``, ``10-20``, ..., ``>160``; a bucket
  ``a-b`` holds ``a <= h < b``), by the level of one attribute of the ground truth
  (``blur`` clear/normal/heavy, ``expression`` typical/exaggerate, ``illumination``
  normal/extreme, ``occlusion`` no/partial/heavy, ``pose`` typical/atypical), or by event.
* **AP** of a size or attribute bucket is the official protocol's AP (same matching, score
  normalisation, 1000 thresholds, VOCap) with the bucket as the setting's kept faces: a
  prediction matched to a face outside the bucket is neither a true nor a false positive
  (exactly how easy/medium/hard ignore faces), every unmatched prediction is a false
  positive. **Per-event AP** keeps only the event's images (their faces and predictions).
* **Recall** of a bucket is the fraction of its faces recalled at one threshold: the
  method's best-F1 threshold of the ``all`` curve (:mod:`.operating_points`).

The breakdown reuses the matching of :func:`.wider.evaluate_wider` (no re-matching).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facebench.evaluation.operating_points import best_f1_index
from facebench.evaluation.wider import WiderCurve, WiderEvaluation, group_curves, subset_curve
from facebench.formats.wider import ATTRIBUTE_NAMES, WiderEvalGT

SIZE_EDGES: tuple[float, ...] = (0, 10, 20, 40, 80, 160, math.inf)
ATTRIBUTE_LEVELS: dict[str, tuple[str, ...]] = {
    "blur": ("clear", "normal", "heavy"),
    "expression": ("typical", "exaggerate"),
    "illumination": ("normal", "extreme"),
    "occlusion": ("no", "partial", "heavy"),
    "pose": ("typical", "atypical"),
}


def size_labels(edges: tuple[float, ...] = SIZE_EDGES) -> list[str]:
    """``<10``, ``10-20``, ..., ``>160`` for the given edges."""
    labels = []
    for lo, hi in itertools.pairwise(edges):
        if lo <= 0:
            labels.append(f"<{hi:g}")
        elif math.isinf(hi):
            labels.append(f">{lo:g}")
        else:
            labels.append(f"{lo:g}-{hi:g}")
    return labels


@dataclass
class Bucket:
    """One bucket's numbers (``ap``, ``recall`` NaN when the bucket has no face)."""

    name: str
    faces: int
    ap: float
    recall: float
    images: int | None = None

    def as_json(self) -> dict[str, Any]:
        out = {"faces": self.faces, "ap": _num(self.ap), "recall": _num(self.recall)}
        if self.images is not None:
            out["images"] = self.images
        return out


@dataclass
class Breakdown:
    """Buckets per group: ``size``, one per attribute, ``event``; ``threshold``: the
    normalised threshold of the recall column (best F1 of ``all``), None without one."""

    threshold: float | None
    groups: dict[str, list[Bucket]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "recall_at": "best-F1 threshold of the all setting",
            **{g: {b.name: b.as_json() for b in buckets} for g, buckets in self.groups.items()},
        }


def wider_breakdown(gt: WiderEvalGT, evaluation: WiderEvaluation) -> Breakdown:
    """The breakdown of one evaluation (module docstring); attributes only where the ground
    truth holds them."""
    boxes = np.concatenate(gt.flat_boxes()).reshape(-1, 4)
    base = np.zeros(len(boxes), dtype=bool)
    base[np.flatnonzero(boxes.any(axis=1))] = True  # the ``all`` setting
    everything = subset_curve(evaluation, base, "all")
    t = best_f1_index(everything.tp, everything.proposals, everything.faces)
    result = Breakdown(threshold=None if t is None else float(everything.thresholds[t]))

    def bucket(name: str, keep: np.ndarray) -> Bucket:
        return _bucket(subset_curve(evaluation, keep, name), t)

    heights = boxes[:, 3].astype(np.float64)
    result.groups["size"] = [
        bucket(label, base & (heights >= lo) & (heights < hi))
        for label, lo, hi in zip(size_labels(), SIZE_EDGES[:-1], SIZE_EDGES[1:], strict=True)
    ]
    if gt.attributes is not None:
        attrs = np.concatenate([a for ev in gt.attributes for a in ev]).reshape(-1, 6)
        for attr, levels in ATTRIBUTE_LEVELS.items():
            column = attrs[:, ATTRIBUTE_NAMES.index(attr)]
            result.groups[attr] = [
                bucket(level, base & (column == value)) for value, level in enumerate(levels)
            ]
    image_event = np.repeat(np.arange(len(gt.events)), [len(f) for f in gt.files])
    curves = group_curves(evaluation, base, image_event, gt.events)
    counts = np.bincount(image_event, minlength=len(gt.events))
    result.groups["event"] = [
        _bucket(c, t, int(n)) for c, n in zip(curves, counts.tolist(), strict=True)
    ]
    return result


def _bucket(curve: WiderCurve, t: int | None, images: int | None = None) -> Bucket:
    ap = curve.ap if curve.faces else math.nan
    return Bucket(curve.setting, curve.faces, ap, _recall(curve, t), images)


def _recall(curve: WiderCurve, t: int | None) -> float:
    if t is None or not curve.faces:
        return math.nan
    return float(curve.tp[t]) / curve.faces


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def format_breakdown(named: list[tuple[str, Breakdown]]) -> str:
    """Plain-text table: one row per bucket, AP and recall (%) per method."""
    if not named:
        return ""
    groups = list(named[0][1].groups)
    names = [n for n, _ in named]
    head_width = max(22, *(len(f"{g} {b.name}") for g in groups for b in named[0][1].groups[g]))
    cells = "".join(f"{n[:14] + ' AP':>18}{'R':>7}" for n in names)
    lines = ["bucket".ljust(head_width) + f"{'faces':>7}" + cells]
    for g in groups:
        for i, b in enumerate(named[0][1].groups[g]):
            row = f"{g} {b.name}".ljust(head_width) + f"{b.faces:>7}"
            for _, bd in named:
                other = bd.groups[g][i]
                row += f"{_pct(other.ap):>18}{_pct(other.recall):>7}"
            lines.append(row)
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def write_breakdown_plot(path, named: list[tuple[str, Breakdown]]) -> None:
    """PNG: AP (bars) and recall (markers) per bucket and method, one panel per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facebench.atomic import atomic_open

    groups = list(named[0][1].groups) if named else []
    small = [g for g in groups if g != "event"]
    fig = plt.figure(figsize=(16, 4 + 0.18 * len(named[0][1].groups.get("event", []))))
    grid = fig.add_gridspec(2, max(1, len(small)), height_ratios=[1, 2.2])
    width = 0.8 / max(1, len(named))
    for col, g in enumerate(small):
        ax = fig.add_subplot(grid[0, col])
        labels = [b.name for b in named[0][1].groups[g]]
        x = np.arange(len(labels))
        for k, (name, bd) in enumerate(named):
            ap = [b.ap for b in bd.groups[g]]
            rec = [b.recall for b in bd.groups[g]]
            bars = ax.bar(x + k * width, ap, width, label=f"{name} AP")
            ax.plot(x + k * width, rec, "o", color=bars.patches[0].get_facecolor(),
                    markeredgecolor="black", label=f"{name} recall")  # fmt: skip
        ax.set_xticks(x + width * (len(named) - 1) / 2, labels, rotation=45, fontsize=7)
        ax.set_ylim(0, 1.08)
        ax.set_title(g)
        ax.grid(True, axis="y", linestyle=":")
        if col == 0:
            ax.legend(fontsize=6)
    if "event" in groups:
        ax = fig.add_subplot(grid[1, :])
        events = [b.name for b in named[0][1].groups["event"]]
        order = np.argsort([-(b.ap if not math.isnan(b.ap) else -1)
                            for b in named[0][1].groups["event"]])  # fmt: skip
        x = np.arange(len(events))
        for k, (name, bd) in enumerate(named):
            ap = np.array([b.ap for b in bd.groups["event"]])[order]
            ax.bar(x + k * width, ap, width, label=name)
        ax.set_xticks(x + width * (len(named) - 1) / 2, [events[i] for i in order],
                      rotation=90, fontsize=6)  # fmt: skip
        ax.set_ylim(0, 1)
        ax.set_ylabel("AP")
        ax.set_title("per-event AP (sorted by the first method)")
        ax.grid(True, axis="y", linestyle=":")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
