"""Write the deterministic synthetic WIDER predictions pinned in this folder.

    python3 tests/data/wider_official/make_predictions.py ../shared/data/widerface_val_416 OUT

For each image of the shared ``widerface_val_416`` ground truth (file order of its .mat):
about 70% of the faces get a jittered box (centre and size moved by up to 15% of the face
size), plus 0-3 random false boxes; scores are uniform, higher for better boxes, rounded to
4 decimals so that equal scores occur; coordinates are rounded to 1 decimal. The boxes are
written in the WIDER submission layout (``OUT/<event>/<stem>.txt``) and, all together, to
``OUT/predictions.txt`` (``event/stem x y w h score`` per line), the file committed here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from facebench.formats.wider import read_eval_gt, write_prediction_file  # noqa: E402


def synthetic_predictions(gt_dir: Path, seed: int = 14) -> dict[tuple[str, str], np.ndarray]:
    """``{(event, stem): (K, 5) x y w h score}`` for every ground-truth image."""
    gt = read_eval_gt(gt_dir)
    rng = np.random.default_rng(seed)
    out = {}
    for (event, stem), boxes in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
        hit = boxes[rng.random(len(boxes)) < 0.7]
        size = np.sqrt(hit[:, 2] * hit[:, 3])[:, None]
        jitter = rng.uniform(-0.15, 0.15, (len(hit), 4)) * size
        true = np.column_stack([hit[:, :2] + jitter[:, :2], hit[:, 2:] + jitter[:, 2:]])
        true_scores = 0.4 + 0.6 * rng.random(len(hit)) * (1 - np.abs(jitter).sum(1) / size[:, 0])
        n_false = int(rng.integers(0, 4))
        corner = rng.uniform(0, 380, (n_false, 2))
        false = np.column_stack([corner, rng.uniform(6, 60, (n_false, 2))])
        false_scores = 0.6 * rng.random(n_false)
        rows = np.column_stack([
            np.round(np.concatenate([true, false]), 1),
            np.round(np.concatenate([true_scores, false_scores]), 4),
        ])  # fmt: skip
        rows[:, 2:4] = np.maximum(rows[:, 2:4], 1.0)
        out[(event, stem)] = rows
    return out


def main() -> None:
    gt_root, out = Path(sys.argv[1]), Path(sys.argv[2])
    preds = synthetic_predictions(gt_root / "ground_truth")
    lines = []
    for (event, stem), rows in preds.items():
        write_prediction_file(out, event, stem, rows[:, :4], rows[:, 4], digits=6)
        lines += [f"{event}/{stem} " + " ".join(f"{v:g}" for v in row) for row in rows]
    (out / "predictions.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
