"""Benchmark: read + evaluate the WIDER val set with 1,000 predictions per image.

Generates predictions from the real ground truth (../shared/data/widerface, 3,226 images):
per image, 1,000 boxes mixing jittered copies of its faces (so matching has real work) and
random boxes, with random scores, written in the official layout to a temporary folder.
Then, in a fresh process (so its peak memory is the evaluator's own), it times

* reading the ground truth (.mat files),
* reading the whole prediction folder (``read_wider_predictions``),
* evaluating the four settings easy/medium/hard/all (``evaluate_wider``),
* protocol checks, operating points and the full breakdown (``analyse_wider``),

and prints wall seconds, CPU seconds and peak RSS. Target (issue 3): read + evaluate in
under 5 s wall and under 2 GB on 2 cores. For scale it also times the Python port's
line-by-line reader on a sample of the files and extrapolates.

    python3 benchmarks/bench_wider_eval.py [--per-image 1000] [--protocol official]
        [--pred-dir DIR]   # reuse an existing folder instead of generating one
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GT_DIR = (
    Path(os.environ.get("FACEBENCH_SHARED_DATA", REPO.parent / "shared" / "data")) / "widerface"
)


def generate(pred_dir: Path, per_image: int, seed: int = 0) -> int:
    """Write ``per_image`` predictions for every val image; returns the total box count."""
    from facebench.formats.wider import read_eval_gt

    gt = read_eval_gt(GT_DIR)
    rng = np.random.default_rng(seed)
    total = 0
    for (event, stem), boxes in zip(gt.image_keys(), gt.flat_boxes(), strict=True):
        b = boxes.astype(np.float64)
        near = per_image // 2
        src = b[rng.integers(0, len(b), near)]
        src = src + rng.normal(0, 0.15, (near, 4)) * np.maximum(src[:, 2:3], 4)
        extent = max(float((b[:, 0] + b[:, 2]).max()), 1024.0)
        far = per_image - near
        rand = np.column_stack([rng.random((far, 2)) * extent, rng.gamma(2.0, 15.0, (far, 2)) + 2])
        rows = np.column_stack([np.vstack([src, rand]), rng.random(per_image)])
        rows[:, 2:4] = np.abs(rows[:, 2:4])
        text = "\n".join(
            f"{x:.1f} {y:.1f} {w:.1f} {h:.1f} {s:.5f}" for x, y, w, h, s in rows.tolist()
        )
        folder = pred_dir / event
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.txt").write_text(f"{stem}\n{per_image}\n{text}\n")
        total += per_image
    return total


def measure(pred_dir: Path, protocol: str) -> dict:
    """Time GT read, prediction read and evaluation in this process."""
    from facebench.evaluation.wider import evaluate_wider
    from facebench.formats.wider import read_eval_gt, read_wider_predictions

    out: dict = {}
    t, c = time.perf_counter(), time.process_time()
    gt = read_eval_gt(GT_DIR)
    out["gt_read_s"], out["gt_read_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    preds = read_wider_predictions(pred_dir, gt)
    out["read_s"], out["read_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    result = evaluate_wider(gt, preds, protocol=protocol)
    out["eval_s"], out["eval_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    from facebench.evaluation.wider_extras import analyse_wider

    t, c = time.perf_counter(), time.process_time()
    analyse_wider(gt, result, preds.rows, preds.offsets, breakdown=True)
    out["analyse_s"], out["analyse_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    out["predictions"] = result.predictions
    out["ap"] = result.ap
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def port_reader_estimate(pred_dir: Path, sample: int = 50) -> float:
    """Seconds the Python port's reader (readlines, split, float per field) would need for
    the whole folder, extrapolated from ``sample`` files."""
    files = sorted(pred_dir.glob("*/*.txt"))
    chosen = files[:: max(1, len(files) // sample)][:sample]
    t = time.perf_counter()
    for f in chosen:
        with open(f) as fh:
            lines = fh.readlines()[2:]
        np.array([[float(v) for v in line.rstrip("\r\n").split(" ")[:5]] for line in lines])
    return (time.perf_counter() - t) / len(chosen) * len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-image", type=int, default=1000)
    parser.add_argument("--protocol", default="official", choices=["official", "python-port"])
    parser.add_argument("--pred-dir", type=Path)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # child process: print the measurements as JSON
        print(json.dumps(measure(args.measure, args.protocol)))
        return
    if not GT_DIR.is_dir():
        sys.exit(f"real data not found at {GT_DIR}")
    with tempfile.TemporaryDirectory(prefix="bench_wider_") as tmp:
        pred_dir = args.pred_dir
        if pred_dir is None:
            pred_dir = Path(tmp) / "pred"
            t = time.perf_counter()
            total = generate(pred_dir, args.per_image)
            print(f"generated {total:,} predictions in {time.perf_counter() - t:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(pred_dir), "--protocol", args.protocol],
            check=True,
            capture_output=True,
            text=True,
        )
        m = json.loads(child.stdout.strip().splitlines()[-1])
        estimate = port_reader_estimate(pred_dir)
    total_s = m["read_s"] + m["eval_s"]
    total_cpu = m["read_cpu_s"] + m["eval_cpu_s"]
    print(
        f"protocol: {args.protocol}; cores: {os.cpu_count()}; "
        f"load average: {os.getloadavg()[0]:.1f}"
    )
    print(f"ground truth read:    {m['gt_read_s']:.2f} s wall, {m['gt_read_cpu_s']:.2f} s CPU")
    print(
        f"predictions read:     {m['read_s']:.2f} s wall, {m['read_cpu_s']:.2f} s CPU "
        f"({m['predictions']:,} boxes)"
    )
    print(f"evaluate 4 settings:  {m['eval_s']:.2f} s wall, {m['eval_cpu_s']:.2f} s CPU")
    print(f"read + evaluate:      {total_s:.2f} s wall, {total_cpu:.2f} s CPU (target < 5 s)")
    print(
        f"checks + operating points + breakdown: {m['analyse_s']:.2f} s wall, "
        f"{m['analyse_cpu_s']:.2f} s CPU"
    )
    print(f"peak memory (RSS):    {m['peak_rss_mb']:.0f} MB (target < 2048 MB)")
    print(
        f"the Python port's line-by-line reader: ~{estimate:.1f} s for the same folder "
        f"({estimate / max(m['read_s'], 1e-9):.1f}x this reader)"
    )
    print("AP: " + ", ".join(f"{k} {v:.4f}" for k, v in m["ap"].items()))


if __name__ == "__main__":
    main()
