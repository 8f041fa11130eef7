"""Plausible synthetic FDDB detections: test fixture code (also used by benchmarks/).

Detections are the ground-truth faces jittered (centre, size, angle), some of them
dropped, plus random false boxes, with random scores correlated with quality. They
exercise every branch of the evaluator (hits, near misses, crowded components, ties,
images without detections) on the real annotation geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from facebench.formats.fddb import FddbImage


def synthetic_detections(
    images: Sequence[FddbImage],
    sizes: Mapping[str, tuple[int, int]],
    per_image: float = 2.5,
    kind: Literal["rect", "ellipse"] = "rect",
    seed: int = 0,
    score_decimals: int | None = 3,
    empty_fraction: float = 0.02,
) -> dict[str, np.ndarray]:
    """Detections ``{name: (K, 5 | 6)}`` averaging ``per_image`` regions per image.

    About 85% of faces get a jittered detection; the rest of the budget is random false
    regions (some near faces). ``score_decimals`` rounds scores so that ties occur (None:
    continuous scores). ``empty_fraction`` of images get no detections at all.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for im in images:
        width, height = sizes[im.name]
        if rng.random() < empty_fraction:
            out[im.name] = np.zeros((0, 5 if kind == "rect" else 6))
            continue
        e = im.ellipses
        hit = e[rng.random(len(e)) < 0.85]
        jit = hit.copy()
        scale = np.maximum(hit[:, :2].mean(axis=1), 1.0)
        jit[:, 3:5] += rng.normal(0, 0.12, (len(hit), 2)) * scale[:, None]
        jit[:, :2] *= np.exp(rng.normal(0, 0.12, (len(hit), 2)))
        jit[:, 2] += rng.normal(0, 0.15, len(hit))
        quality = np.exp(-np.abs(jit[:, 3:5] - hit[:, 3:5]).sum(axis=1) / scale)
        true_scores = np.clip(0.5 + 0.5 * quality * rng.random(len(hit)) + 0.2, 0, 1)
        n_false = max(0, int(rng.poisson(max(per_image - len(hit), 0.3))))
        fw = np.exp(rng.uniform(np.log(8), np.log(0.45 * min(width, height)), n_false))
        false_e = np.c_[
            fw * rng.uniform(1.0, 1.4, n_false),
            fw,
            rng.uniform(-np.pi / 2, np.pi / 2, n_false),
            rng.uniform(-0.05 * width, 1.05 * width, n_false),
            rng.uniform(-0.05 * height, 1.05 * height, n_false),
        ]
        false_scores = rng.random(n_false) * 0.8
        ell = np.r_[jit, false_e]
        scores = np.r_[true_scores, false_scores]
        if score_decimals is not None:
            scores = np.round(scores, score_decimals)
        if kind == "ellipse":
            ell[:, :2] = np.maximum(ell[:, :2], 1.0)
            out[im.name] = np.c_[ell, scores]
        else:
            # Axis-aligned box of the ellipse, as a detector would output.
            c, s = np.cos(ell[:, 2]), np.sin(ell[:, 2])
            hw = np.sqrt((ell[:, 0] * c) ** 2 + (ell[:, 1] * s) ** 2)
            hh = np.sqrt((ell[:, 0] * s) ** 2 + (ell[:, 1] * c) ** 2)
            out[im.name] = np.c_[ell[:, 3] - hw, ell[:, 4] - hh, 2 * hw, 2 * hh, scores]
    return out
