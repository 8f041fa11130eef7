"""Benchmark ``facebench stats anchors``: the paper's Figure 2 counts over WIDER train.

    python3 benchmarks/bench_anchor_stats.py                       # all 12,880 images, 2 workers
    python3 benchmarks/bench_anchor_stats.py --limit 500           # a quick look (extrapolated)
    python3 benchmarks/bench_anchor_stats.py --workers 2 --json out.json --markdown fig2.md

Target (issue 7): the 12,880 WIDER training images' annotations (sizes from the VOC XML, no
pixels), one epoch, the five designs of Figure 2, in under 10 minutes on 2 cores.

Prints: loading time, counting wall time, CPU time (this process + worker processes),
images per second, the full-set time extrapolated from ``--limit``, the peak RSS, the speed-up
of the near-face pre-filter over matching every anchor (on a sample of augmented images), and
the Figure 2 table (sampled positives / negatives per scale as fractions of each design's
training samples) as markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detector.anchor_stats import (
    PAPER_DESIGNS,
    count_anchor_stats,
    label_anchors,
    open_training_set,
)
from detector.anchors import anchors_for
from detector.augment import TrainAugment
from detector.data import sample_seed
from detector.designs import get_design
from detector.matching import match_anchors
from facebench.atomic import atomic_open, write_json

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "widerface"
FULL_SET = 12_880


def cpu_seconds() -> tuple[float, float]:
    """(this process, waited-for children) user + system CPU seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def prefilter_speedup(training, design_name: str, images: int, seed: int) -> dict:
    """Seconds to label ``images`` augmented images: near-face pre-filter vs all anchors."""
    design = get_design(design_name)
    augment = TrainAugment()
    step = max(1, len(training.images) // images)
    picked = training.images[::step][:images]
    cases = []
    for index, image in enumerate(picked):
        rng = np.random.default_rng(sample_seed(seed, 0, index))
        params = augment.sample(image.height, image.width, rng)
        boxes, ignore = augment.apply_to_boxes(params, image.boxes, image.ignore)
        cases.append((params.out_hw, torch.from_numpy(boxes), torch.from_numpy(ignore)))
    start = time.process_time()
    for (h, w), faces, ignore in cases:
        label_anchors(design, h, w, faces, ignore)
    filtered = time.process_time() - start
    start = time.process_time()
    for (h, w), faces, ignore in cases:
        anchors, _ = anchors_for(design, h, w)
        match_anchors(anchors, faces, design.pos_iou, design.neg_iou, ignore)
    full = time.process_time() - start
    return {
        "design": design_name,
        "images": len(cases),
        "prefilter_cpu_s": round(filtered, 3),
        "all_anchors_cpu_s": round(full, 3),
        "speedup": round(full / max(filtered, 1e-9), 2),
    }


def figure2_markdown(stats) -> str:
    """Per design and scale: counts, and the sampled positives' and negatives' distributions
    over scales (Figure 2's bars); per design, positives' share of all samples and the recall
    ceiling."""
    lines = [
        "| design | scale/stride | positives | negatives | sampled pos | sampled neg"
        " | pos dist | neg dist | faces | unmatched |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes = []
    for name, s in stats.designs.items():
        pos, neg = s.distributions()
        for k, scale in enumerate(s.design.scales):
            lines.append(
                f"| {name} | {scale}/{s.design.strides[k]} | {int(s['positives'][k]):,}"
                f" | {int(s['negatives'][k]):,} | {int(s['sampled_positives'][k]):,}"
                f" | {int(s['sampled_negatives'][k]):,} | {pos[k]:.3f} | {neg[k]:.3f}"
                f" | {int(s['faces'][k]):,} | {int(s['faces_unmatched'][k]):,} |"
            )
        ceiling = "n/a" if s.recall_ceiling is None else f"{s.recall_ceiling:.4f}"
        notes.append(
            f"{name}: positives {float(s.shares()[0].sum()):.2%} of samples,"
            f" recall ceiling {ceiling}"
        )
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N images (default all)")
    parser.add_argument("--every", type=int, default=1, help="take every k-th image")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefilter-images", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="Figure 2 PNG")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,"
          f" torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    start = time.monotonic()
    training = open_training_set(args.data)
    load_s = time.monotonic() - start
    if args.every > 1:
        training = dataclasses.replace(training, images=training.images[:: args.every])
    count = len(training.images) if args.limit is None else min(args.limit, len(training.images))
    print(f"loaded {training.kind}: {len(training.images)} images, {training.num_faces} faces"
          f" in {load_s:.1f} s")

    cpu0 = cpu_seconds()
    start = time.monotonic()
    stats = count_anchor_stats(
        training, PAPER_DESIGNS, epochs=args.epochs, seed=args.seed,
        workers=args.workers, limit=args.limit,
    )
    wall = time.monotonic() - start
    cpu1 = cpu_seconds()
    cpu = (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1])
    done = count * args.epochs
    full_wall = wall * FULL_SET / max(done, 1)
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"counted {done} image-epochs x {len(PAPER_DESIGNS)} designs with {args.workers}"
          f" worker(s): wall {wall:.1f} s, CPU {cpu:.1f} s"
          f" (main {cpu1[0] - cpu0[0]:.1f} s, workers {cpu1[1] - cpu0[1]:.1f} s),"
          f" {done / wall:.1f} images/s, {1000 * cpu / max(done, 1):.1f} ms CPU per image")
    print(f"one epoch of all {FULL_SET} images: {full_wall:.0f} s wall"
          f" ({'measured' if done == FULL_SET else 'extrapolated'}; target < 600 s on 2 cores),"
          f" {cpu * FULL_SET / max(done, 1) / 2:.0f} s if the CPU time ran on 2 idle cores")
    print(f"peak RSS: main {rss_self:.0f} MiB, largest worker {rss_kids:.0f} MiB")

    torch.set_num_threads(1)  # as the counting workers run
    speed = prefilter_speedup(training, "fpn-finest", args.prefilter_images, args.seed)
    print(f"near-face pre-filter, {speed['design']}, {speed['images']} augmented images:"
          f" {speed['prefilter_cpu_s']} s vs {speed['all_anchors_cpu_s']} s matching every"
          f" anchor ({speed['speedup']}x)")

    table = figure2_markdown(stats)
    print()
    print(table)
    if args.plot is not None:
        from cli.stats_anchors import plot_distributions

        plot_distributions(stats, args.plot)
    if args.markdown is not None:
        with atomic_open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table)
    if args.json is not None:
        write_json(args.json, {
            "images": count, "epochs": args.epochs, "workers": args.workers,
            "load_s": round(load_s, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "full_set_wall_s": round(full_wall, 1), "measured_full_set": done == FULL_SET,
            "peak_rss_mib": {"main": round(rss_self), "worker": round(rss_kids)},
            "prefilter": speed, "report": stats.to_dict(),
        })


if __name__ == "__main__":
    main()
