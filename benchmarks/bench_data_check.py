"""Benchmark the up-front image check that ``train`` and ``detect`` run before any work.

``facebench.images.check_image_files`` reads every image's header (existence, decodable
header, size, pixel limit). It must cost a small fraction of decoding the same images,
which training and detection do anyway. Prints, per image set, milliseconds per image for
the header check and for a full decode (``decode_image_rgb``), and their ratio.

Sets: the real WIDER FACE (val, 416 px) and FDDB images under ../shared/data when present
(else skipped), and a synthetic set generated into a temp folder.

    python3 benchmarks/bench_data_check.py [--images 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facebench.images import check_image_files, decode_image_rgb  # noqa: E402

SHARED = Path(os.environ.get("FACEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def _best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(name: str, paths: list[Path]) -> None:
    check_s = _best_of(3, lambda: check_image_files(paths))
    decode_s = _best_of(1, lambda: [decode_image_rgb(p, check=False) for p in paths])
    n = len(paths)
    print(
        f"{name}: {n} images; header check {1000 * check_s / n:.3f} ms/image, "
        f"full decode {1000 * decode_s / n:.2f} ms/image; check/decode = "
        f"{check_s / decode_s:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="synthetic images to generate")
    args = parser.parse_args()
    for folder in (SHARED / "widerface_val_416" / "WIDER_val" / "images",
                   SHARED / "fddb" / "originalPics"):  # fmt: skip
        paths = sorted(folder.rglob("*.jpg")) if folder.is_dir() else []
        if paths:
            measure(str(folder.relative_to(SHARED)), paths)
        else:
            print(f"{folder}: not present, skipped")
    from facebench.synth.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, num_images=args.images, seed=0, max_side=512, workers=1)
        paths = sorted(Path(tmp).rglob("WIDER_train/images/**/*.jpg"))
        measure(f"synthetic ({args.images} images, 512 px)", paths)


if __name__ == "__main__":
    main()
