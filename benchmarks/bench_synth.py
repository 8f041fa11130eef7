"""Benchmark the synthetic data generator against its goal: 200 images in under 30 s on 2 cores.

    python3 benchmarks/bench_synth.py                      # 200 images, 1 and 2 workers
    python3 benchmarks/bench_synth.py --images 400 --workers 2 --json out.json

For each worker count: wall time, CPU time (this process plus its workers; on a shared
machine CPU time is the steadier figure), images and faces per second, the ratio of wall
time to the 30 s goal, and the load average before the run (a busy machine inflates the
wall time, not the CPU time). Figures go to stdout; ``--json PATH`` also writes them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facebench.atomic import write_json
from facebench.synth import generate

GOAL_S = 30.0
GOAL_IMAGES = 200


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(images: int, workers: int, seed: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        load = os.getloadavg()[0]
        cpu0, t0 = _cpu_s(), time.perf_counter()
        manifest = generate(tmp / "data", num_images=images, seed=seed, workers=workers)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    faces = manifest["counts"]["train"]["faces"] + manifest["counts"]["val"]["faces"]
    return {
        "images": images,
        "workers": workers,
        "faces": faces,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "images_per_s": round(images / wall, 2),
        "faces_per_s": round(faces / wall, 1),
        "wall_per_goal": round(wall / (GOAL_S * images / GOAL_IMAGES), 3),
        "load_average_before": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=GOAL_IMAGES)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args()
    rows = [run(args.images, w, args.seed) for w in args.workers]
    print(f"synthetic data: {args.images} images, goal {GOAL_S:.0f} s per {GOAL_IMAGES} images")
    print(f"{'workers':>7} {'faces':>6} {'wall s':>7} {'cpu s':>6} {'img/s':>6} {'faces/s':>8}"
          f" {'wall/goal':>9} {'load':>5}")
    for r in rows:
        print(f"{r['workers']:>7} {r['faces']:>6} {r['wall_s']:>7.2f} {r['cpu_s']:>6.2f}"
              f" {r['images_per_s']:>6.2f} {r['faces_per_s']:>8.1f} {r['wall_per_goal']:>9.3f}"
              f" {r['load_average_before']:>5.2f}")
    if args.json:
        write_json(args.json, {"runs": rows})


if __name__ == "__main__":
    main()
