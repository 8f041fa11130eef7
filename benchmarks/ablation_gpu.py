"""The GPU variant of ``facebench experiment ablation``: ResNet-50, larger budget, one GPU.

Runs the ``gpu-resnet50`` protocol (:data:`detector.experiments.protocol.GPU`: 600 synthetic
images at 640 px, ResNet-50 from random init, 300 iterations x 4 images with AMP, pyramid
0.5/1/2) for the paper's Table 1 designs (``--designs all`` adds smooth-L1, OHEM and focal
loss) with 3 seeds, seed-major, inside a wall-clock budget (default 8.5 minutes, so the
whole script with start-up and report stays under 10): a seed round starts only if the
longest round so far still fits. Whatever finished goes into the
same report as the CPU ablation (``report.md``, ``report.json``, figures), and the script
prints a table of timings, AP and the verdicts. Re-running continues (finished runs reused).

    python benchmarks/ablation_gpu.py --out /tmp/fb-ablation-gpu             # on a GPU
    python benchmarks/ablation_gpu.py --cpu-smoke --out /tmp/fb-ablation-smoke  # pipeline check

``--cpu-smoke`` swaps in a tiny setting (tiny backbone, 24 images at 256 px, 4 iterations,
2 designs x 2 seeds) so the script itself can be checked on a CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from detector.experiments.ablation import run_ablation
from detector.experiments.protocol import DESIGN_PRESETS, GPU, SynthSpec
from detector.experiments.report import write_report


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _protocol(args: argparse.Namespace):
    protocol = GPU
    if args.cpu_smoke:
        protocol = protocol.with_changes(
            name="gpu-resnet50-cpu-smoke", backbone="tiny", iterations=4, batch_size=1,
            lr=0.01, train_max_side=256, scale_choices=(1.0,), test_scales=(1.0,), amp=False,
            synth=SynthSpec(images=24, seed=0, val_fraction=0.5, max_side=256),
        )
    if args.iterations:
        protocol = protocol.with_changes(iterations=args.iterations)
    return protocol


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/fb-ablation-gpu"))
    parser.add_argument("--designs", default="table1",
                        help="table1 (default), all, or comma-separated design names")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-minutes", type=float, default=8.5,
                        help="wall-clock budget; no seed round starts that would overrun it")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="data-loading processes per run")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny setting on CPU: checks the script, numbers meaningless")
    args = parser.parse_args()

    start = time.monotonic()
    budget = args.budget_minutes * 60.0
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("no CUDA device: run with --cpu-smoke for a CPU check", file=sys.stderr)
        return 2
    protocol = _protocol(args)
    if args.designs in DESIGN_PRESETS:
        designs = list(DESIGN_PRESETS["quick" if args.cpu_smoke else args.designs])
    else:
        designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    seeds = list(range(2 if args.cpu_smoke else args.seeds))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    _log(f"{protocol.name} on {device}: {len(designs)} designs x {len(seeds)} seeds, "
         f"{protocol.iterations} iterations x {protocol.batch_size} images "
         f"({protocol.backbone}, amp {protocol.amp}), budget {args.budget_minutes} min")
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True

    # Seed rounds: every design for one seed. A round starts only if the longest round so
    # far still fits in what is left of the budget (data generation counts).
    longest = 0.0
    state = None
    for k in range(len(seeds)):
        left = budget - (time.monotonic() - start)
        if k and longest > left:
            _log(f"stopping before seed {seeds[k]}: a round takes ~{longest:.0f}s, "
                 f"{left:.0f}s left")
            break
        t0 = time.monotonic()
        state = run_ablation(args.out, protocol, designs, seeds[: k + 1], workers=args.workers,
                             log=_log, deadline=start + budget)
        longest = max(longest, time.monotonic() - t0) if state.trained else longest
    state = run_ablation(args.out, protocol, designs, seeds, train=False, log=_log)
    report = write_report(args.out, state)
    total = time.monotonic() - start

    print(f"\n{protocol.name} on {device}; {len(report['runs'])}/{len(designs) * len(seeds)} "
          f"runs finished in {total / 60:.1f} min total")
    print(f"{'design':<32}{'seed':>5}{'train s':>9}{'detect s':>9}{'All':>7}{'@16':>7}"
          f"{'@128':>7}")
    for r in report["runs"]:
        print(f"{r['design']:<32}{r['seed']:>5}{r['train_seconds']:>9.1f}"
              f"{r['detect_seconds']:>9.1f}{r['ap']['all']:>7.1f}{r['ap']['@16']:>7.1f}"
              f"{r['ap']['@128']:>7.1f}")
    print()
    for line in report["verdict_lines"]:
        print(line)
    if torch.cuda.is_available():
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
