"""Benchmark the detector core on CPU: matching + group sampling, and forward/backward.

    python3 benchmarks/bench_detector_core.py                 # everything (a few minutes)
    python3 benchmarks/bench_detector_core.py --skip-model    # matching + sampling only
    python3 benchmarks/bench_detector_core.py --backbones resnet18 --designs fpn rpn --json out.json

Part 1, matching + sampling: anchors per second of ``match_anchors`` followed by
``sample_scale_groups`` for a typical WIDER image (1,024 x 1,024, 20 faces) and a crowd
image (1,200 x 1,200, 1,500 faces), under the ``fpn-finest-sampling`` anchors (the
densest design), plus the peak resident-memory growth of the crowd match.

Part 2, model: seconds per training forward+backward (one 640 x 640 image, 20 faces) and
per inference forward, for each design and backbone (random init).

Figures go to stdout; ``--json PATH`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detector.anchors import anchors_for
from detector.designs import get_design
from detector.matching import match_anchors
from detector.model import build_detector
from detector.sampling import sample_scale_groups
from facebench.atomic import write_json

MODEL_DESIGNS = (
    "rpn", "fpn", "fpn-finest-stride", "fpn-finest", "fpn-finest-sampling",
    "fpn-finest-ohem", "fpn-finest-focal", "fpn-finest-sampling-frcnn",
)


def random_faces(num: int, size: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    """``num`` square-ish faces with log-uniform sides in [lo, hi] inside a size x size image."""
    gen = torch.Generator().manual_seed(seed)
    side = torch.exp(torch.empty(num, 1).uniform_(float(torch.tensor(lo).log()),
                                                  float(torch.tensor(hi).log()), generator=gen))
    aspect = torch.empty(num, 1).uniform_(0.7, 1.3, generator=gen)
    wh = torch.cat([side, side * aspect], 1)
    xy = torch.rand(num, 2, generator=gen) * (size - wh).clamp(min=1)
    return torch.cat([xy, xy + wh], 1)


def timed(fn, repeats: int, warm_up: bool = True) -> tuple[float, float, object]:
    """Median wall and process-CPU seconds of ``repeats`` calls after a warm-up, last result.

    CPU time (all threads) next to wall time shows how much a shared machine slowed a run.
    """
    result = fn() if warm_up else None
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def bench_matching(repeats: int) -> list[dict]:
    design = get_design("fpn-finest-sampling")
    cases = [
        ("typical", 1024, random_faces(20, 1024, 12, 400, 0)),
        ("crowd", 1200, random_faces(1500, 1200, 8, 64, 1)),
    ]
    rows = []
    for label, size, faces in cases:
        anchors, scale_ids = anchors_for(design, size, size)
        gen = torch.Generator().manual_seed(0)

        def run(anchors=anchors, scale_ids=scale_ids, faces=faces, gen=gen):
            labels, _ = match_anchors(anchors, faces, design.pos_iou, design.neg_iou)
            return labels, sample_scale_groups(labels, scale_ids, design.group_size, 0.25, gen)

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        seconds, cpu, (labels, mask) = timed(run, repeats)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        match_s, _, _ = timed(lambda a=anchors, f=faces: match_anchors(a, f), repeats)
        rows.append({
            "case": label, "image": size, "faces": len(faces), "anchors": len(anchors),
            "seconds": seconds, "cpu_seconds": cpu, "match_seconds": match_s,
            "anchors_per_second": len(anchors) / seconds,
            "positives": int((labels == 1).sum()), "sampled": int(mask.sum()),
            "peak_rss_growth_mb": (rss_after - rss_before) / 1024,
        })
        r = rows[-1]
        print(
            f"match+sample {label:8s} {size}px {len(faces):5d} faces {len(anchors):8d} anchors: "
            f"{seconds * 1e3:8.1f} ms wall, {cpu * 1e3:.1f} ms CPU "
            f"({r['anchors_per_second'] / 1e6:.2f} M anchors/s; "
            f"match alone {match_s * 1e3:.1f} ms) positives {r['positives']}, "
            f"sampled {r['sampled']}, peak RSS growth {r['peak_rss_growth_mb']:.0f} MB",
            flush=True,
        )
    return rows


def bench_model(designs, backbones, size: int, repeats: int) -> list[dict]:
    rows = []
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    target = [{"boxes": random_faces(20, size, 12, 300, 2)}]
    for backbone in backbones:
        for name in designs:
            torch.manual_seed(0)
            model = build_detector(name, backbone=backbone)

            def train_step(model=model):
                model.train()
                model.zero_grad(set_to_none=True)
                loss = sum(model(image, target).values())
                loss.backward()
                return loss

            def infer(model=model):
                model.eval()
                with torch.no_grad():
                    return model(image)

            train_s, train_cpu, _ = timed(train_step, repeats)
            # the training warm-up already ran every convolution at this size
            infer_s, infer_cpu, dets = timed(infer, repeats, warm_up=False)
            rows.append({
                "design": name, "backbone": backbone, "image": size,
                "train_step_seconds": train_s, "train_step_cpu_seconds": train_cpu,
                "inference_seconds": infer_s, "inference_cpu_seconds": infer_cpu,
                "detections": len(dets[0]["boxes"]),
            })
            print(
                f"{backbone:8s} {name:26s} {size}px: forward+backward {train_s:6.2f} s "
                f"({train_cpu:6.2f} s CPU), inference {infer_s:6.2f} s ({infer_cpu:6.2f} s CPU)",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", default=list(MODEL_DESIGNS))
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--model-repeats", type=int, default=1)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}",
        flush=True,
    )
    report = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    report["matching"] = bench_matching(args.repeats)
    if not args.skip_model:
        report["model"] = bench_model(args.designs, args.backbones, args.size, args.model_repeats)
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
