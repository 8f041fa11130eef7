"""Benchmark: read every WIDER train VOC XML (12,880 files, 159,424 boxes) with read_voc_xml.

The anchor-statistics pass reads image sizes and boxes of the whole training split from
``../shared/data/widerface/voc_xml/WIDER_train_annotations``. This times
``facebench.formats.voc.read_voc_dir`` (full validation, numpy boxes) against a bare
``xml.etree.ElementTree.parse`` of the same files (the parsing floor), and prints files/s,
the overhead ratio and the totals. Target: the whole split in a few seconds on one core,
within 2x of the bare parse.

    python3 benchmarks/bench_voc_read.py [--dir PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from facebench.formats.voc import count_boxes, read_voc_dir

DEFAULT = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/widerface/voc_xml/WIDER_train_annotations"
)


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(args.dir.glob("*.xml"))
    if not files:
        raise SystemExit(f"no XML files in {args.dir}")

    bare_s, _ = best_of(args.repeat, lambda: [ET.parse(f) for f in files])
    ours_s, anns = best_of(args.repeat, lambda: read_voc_dir(args.dir))
    n = len(anns)  # type: ignore[arg-type]
    print(f"files: {n}, boxes: {count_boxes(anns)}")  # type: ignore[arg-type]
    print(f"ElementTree.parse only : {bare_s:6.2f} s  ({n / bare_s:8.0f} files/s)")
    print(f"read_voc_dir           : {ours_s:6.2f} s  ({n / ours_s:8.0f} files/s)")
    print(f"overhead ratio         : {ours_s / bare_s:6.2f}x the bare parse")


if __name__ == "__main__":
    main()
