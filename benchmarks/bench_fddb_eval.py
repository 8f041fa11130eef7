"""Benchmark ``facebench eval fddb`` on the real FDDB folds (all 10, 2,845 images).

Cases (synthetic detections on the real annotations and image sizes):

1. ~7,000 detections (about 2.5 per image), rectangles and ellipses: the size of a typical
   submission. With ``--official PATH`` the official C++ ``evaluate`` (built elsewhere, see
   tests/data/fddb_official/PROVENANCE.md; it must accept ``-w SIZES`` for image sizes) runs
   on the same input, and its TPR at 200/500/1000 false positives is compared.
2. 100 detections per image (284,500): target under 60 s.

Prints wall and CPU seconds (the machine may be shared: CPU time is the steadier figure).

    python3 benchmarks/bench_fddb_eval.py [--official /tmp/fddb_official/evaluate] [--skip-dense]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO / "tests"))  # the synthetic detections are test fixture code

from fddb_synthetic import synthetic_detections  # noqa: E402

from facebench.evaluation.fddb import evaluate_fddb, load_detections, tpr_at  # noqa: E402
from facebench.formats.fddb import read_folds, write_detections  # noqa: E402
from facebench.formats.imagesize import read_sizes_csv  # noqa: E402

SHARED = Path(os.environ.get("FACEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


class Timer:
    """Wall and CPU seconds of this process plus finished child processes."""

    def __enter__(self) -> Timer:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.child = _children_cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.child = _children_cpu() - self.child


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _write(path: Path, images, regions, kind: str) -> None:
    write_detections(path, [(im.name, regions[im.name]) for im in images], kind)


def _tprs(rows_fp, rows_tpr) -> list[float]:
    return [tpr_at(rows_fp, rows_tpr, k) for k in (200, 500, 1000)]


def bench_submission(images, sizes, folds: Path, sizes_csv: Path, tmp: Path, official: str | None):
    print("\n== ~7,000 detections over all 10 folds ==")
    print(f"{'case':34s} {'wall s':>8s} {'cpu s':>8s}   TPR disc@200/500/1000")
    for kind, seed in (("rect", 101), ("ellipse", 102)):
        regions = synthetic_detections(images, sizes, per_image=2.5, kind=kind, seed=seed)
        n = sum(len(r) for r in regions.values())
        det_file = tmp / f"{kind}.txt"
        _write(det_file, images, regions, kind)
        with Timer() as t:
            res = evaluate_fddb(images, sizes, load_detections(det_file))
        mine = _tprs(res.rows.fp, res.tpr_discrete)
        print(f"{f'facebench in-process {kind} ({n})':34s} {t.wall:8.2f} {t.cpu:8.2f}   "
              + " ".join(f"{v:.4f}" for v in mine))  # fmt: skip
        cmd = [sys.executable, "-c", "from cli.app import main; main()", "eval", "fddb",
               str(det_file), "--folds", str(folds), "--image-sizes", str(sizes_csv)]  # fmt: skip
        with Timer() as t:
            subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
        print(f"{f'facebench CLI (whole command) {kind}':34s} {t.wall:8.2f} {t.child:8.2f}")
        if official:
            _run_official(official, images, folds, sizes, tmp, det_file, kind, mine)


def _run_official(official, images, folds, sizes, tmp, det_file, kind, mine) -> None:
    listing = tmp / "list.txt"
    listing.write_text("".join(f"{im.name}\n" for im in images))
    annot = tmp / "annot.txt"
    annot.write_text(
        "".join((folds / f"FDDB-fold-{k:02d}-ellipseList.txt").read_text() for k in range(1, 11))
    )
    size_file = tmp / "sizes.txt"
    size_file.write_text("".join(f"{n} {w} {h}\n" for n, (w, h) in sizes.items()))
    prefix = tmp / f"official-{kind}-"
    cmd = [official, "-l", str(listing), "-a", str(annot), "-d", str(det_file),
           "-f", "0" if kind == "rect" else "1", "-w", str(size_file),
           "-r", str(prefix)]  # fmt: skip
    with Timer() as t:
        subprocess.run(cmd, check=True, capture_output=True)
    disc = np.loadtxt(f"{prefix}DiscROC.txt", ndmin=2)
    theirs = _tprs(disc[:, 1], disc[:, 0])
    diff = max(abs(a - b) for a, b in zip(mine, theirs, strict=True))
    print(f"{f'official evaluate {kind}':34s} {t.wall:8.2f} {t.child:8.2f}   "
          + " ".join(f"{v:.4f}" for v in theirs) + f"   (max |diff| {diff:.2e})")  # fmt: skip


def bench_dense(images, sizes, tmp: Path) -> None:
    print("\n== 100 detections per image (284,500) ==")
    print(f"{'case':34s} {'wall s':>8s} {'cpu s':>8s}   rows")
    for kind, overlap in (("rect", "pixel"), ("ellipse", "pixel"), ("rect", "geometric")):
        regions = synthetic_detections(
            images, sizes, per_image=100, kind=kind, seed=7, score_decimals=None, empty_fraction=0
        )
        det_file = tmp / f"dense-{kind}.txt"
        _write(det_file, images, regions, kind)
        with Timer() as t:
            dets = load_detections(det_file)
            res = evaluate_fddb(images, sizes, dets, overlap=overlap)  # type: ignore[arg-type]
        print(f"{f'{kind} {overlap} ({dets.n_detections})':34s} {t.wall:8.2f} {t.cpu:8.2f}"
              f"   {len(res.rows.threshold)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", help="path of a built official `evaluate` (optional)")
    parser.add_argument("--skip-dense", action="store_true", help="skip the 284,500 case")
    args = parser.parse_args()
    folds = SHARED / "fddb" / "FDDB-folds"
    sizes_csv = SHARED / "fddb" / "image_sizes.csv"
    if not folds.is_dir():
        sys.exit(f"real data not found at {SHARED} (set FACEBENCH_SHARED_DATA)")
    images = read_folds(folds)
    sizes = read_sizes_csv(sizes_csv)
    print(f"FDDB: {len(images)} images, {sum(len(im.ellipses) for im in images)} faces")
    with tempfile.TemporaryDirectory() as tmp:
        bench_submission(images, sizes, folds, sizes_csv, Path(tmp), args.official)
        if not args.skip_dense:
            bench_dense(images, sizes, Path(tmp))


if __name__ == "__main__":
    main()
