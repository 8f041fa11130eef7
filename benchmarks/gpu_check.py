"""GPU check for ``facebench train`` / ``detect`` (issue 6): AMP training, multi-scale test,
throughput, in one table. Under 10 minutes on one GPU.

    python benchmarks/gpu_check.py                 # CUDA: ResNet-50, AMP, 300 iterations
    python benchmarks/gpu_check.py --cpu-smoke     # same code path, tiny model, seconds on CPU

Steps: (1) a synthetic data set in a temp folder; (2) ``train`` the paper's design
(fpn-finest-sampling) with ResNet-50 from random init under ``--amp`` (the check is about the
machinery and speed, not accuracy: no pretrained weights are available offline), checking
that every logged loss is finite and that the AMP loss scale stayed positive; (3) reload the
final checkpoint with :class:`CheckpointDetector` and time single-scale (batch 1 and 8) and
the multi-scale pyramid (0.5, 1, 2; sides capped at 3,000 px) on the val split, checking
>= 1 detection per image is possible and the 1,000-box cap holds; (4) WIDER AP of that
model on synthetic val via the official evaluator (a number, not a goal, after a few
hundred iterations). Prints a table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="Tiny model, few iterations, CPU: checks the script runs.")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--images", type=int, default=None, help="Synthetic images.")
    parser.add_argument("--work", type=Path, default=None, help="Work folder (default: temp).")
    parser.add_argument("--json", type=Path, default=None, help="Write the figures as JSON.")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("no CUDA device: run with --cpu-smoke to check the script on CPU", file=sys.stderr)
        return 2
    plan = {
        "device": "cpu" if smoke else "cuda",
        "backbone": "tiny" if smoke else "resnet50",
        "amp": not smoke,
        "iterations": args.iterations or (4 if smoke else 300),
        "images": args.images or (12 if smoke else 200),
        "image_side": 256 if smoke else 1024,
        "batch_size": 1 if smoke else 2,
        "workers": 0 if smoke else 4,
        "train_max_side": 256 if smoke else 1200,
        "pyramid": (0.5, 1.0, 2.0),
    }
    with tempfile.TemporaryDirectory(prefix="facebench-gpu-check-") as tmp:
        work = args.work or Path(tmp)
        figures = run(plan, work, np, torch)
    _print_table(plan, figures)
    if args.json:
        from facebench.atomic import write_json

        write_json(args.json, {"plan": plan, "figures": figures})
    return 0 if figures["ok"] else 1


def run(plan: dict, work: Path, np, torch) -> dict:
    from detector.inference import CheckpointDetector
    from detector.train import TrainConfig, train
    from facebench.detection import load_image, wider_images
    from facebench.evaluation.wider import evaluate_wider
    from facebench.formats.wider import read_eval_gt, write_prediction_file
    from facebench.synth import generate

    figures: dict = {"checks": {}}
    t0 = time.perf_counter()
    data = work / "data"
    if not (data / "synth.json").is_file():
        generate(data, num_images=plan["images"], seed=0, max_side=plan["image_side"])
    figures["data_seconds"] = time.perf_counter() - t0

    run_dir = work / f"run-{int(time.time())}"
    cfg = TrainConfig(
        data=str(data), out=str(run_dir), backbone=plan["backbone"],
        iterations=plan["iterations"], batch_size=plan["batch_size"],
        micro_batch=plan["batch_size"], max_side=plan["train_max_side"], workers=plan["workers"],
        amp=plan["amp"], device=plan["device"], checkpoint_every=max(plan["iterations"] // 2, 1),
        log_every=10, seed=0,
    )
    if plan["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = train(cfg, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    records = [json.loads(x) for x in Path(result.metrics).read_text().splitlines()]
    figures["train_images_per_s"] = result.images_per_s
    figures["train_s_per_iter"] = result.seconds / max(result.iterations, 1)
    figures["train_loss_first_last"] = (records[0]["loss"], records[-1]["loss"])
    figures["checks"]["losses finite"] = all(math.isfinite(r["loss"]) for r in records)
    if plan["device"] == "cuda":
        figures["train_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        state = torch.load(result.final_checkpoint, map_location="cpu", weights_only=True)
        scale = (state.get("scaler") or {}).get("scale")
        figures["amp_loss_scale"] = scale
        figures["checks"]["AMP loss scale > 0"] = scale is None or float(scale) > 0

    root = data / "widerface"
    split = root / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    items = wider_images(root / "WIDER_val", split)
    images = [load_image(i.path) for i in items]
    for label, scales, batch in (("single-scale b1", (1.0,), 1), ("single-scale b8", (1.0,), 8),
                                 ("pyramid 0.5,1,2", plan["pyramid"], 1)):
        det = CheckpointDetector(result.final_checkpoint, device=plan["device"], scales=scales,
                                 max_side=3000, batch_size=batch)
        det.detect_batch(images[:1])  # warm-up (cuDNN autotune, allocator)
        _sync(torch, plan)
        t = time.perf_counter()
        outputs = []
        for start in range(0, len(images), batch):
            outputs += det.detect_batch(images[start : start + batch])
        _sync(torch, plan)
        seconds = time.perf_counter() - t
        figures[f"detect {label} images/s"] = len(images) / seconds
        figures["checks"][f"{label}: <= 1000 boxes, float32, 6 columns"] = all(
            o.dtype == np.float32 and o.shape[1] == 6 and len(o) <= 1000 for o in outputs
        )
        if label.startswith("pyramid"):
            pred = work / "pred"
            for item, o in zip(items, outputs, strict=True):
                xywh = np.column_stack([o[:, :2], o[:, 2:4] - o[:, :2]])
                write_prediction_file(pred, item.event, item.stem, xywh, o[:, 4])
            gt = read_eval_gt(root / "ground_truth")
            from facebench.formats.wider import read_wider_predictions

            figures["wider_ap_pyramid"] = evaluate_wider(gt, read_wider_predictions(pred, gt)).ap
            figures["protocol"] = det.protocol()
    figures["ok"] = all(figures["checks"].values())
    return figures


def _sync(torch, plan: dict) -> None:
    if plan["device"] == "cuda":
        torch.cuda.synchronize()


def _print_table(plan: dict, figures: dict) -> None:
    rows = [
        ("device / backbone / AMP", f"{plan['device']} / {plan['backbone']} / {plan['amp']}"),
        ("train iterations x batch", f"{plan['iterations']} x {plan['batch_size']}"),
        ("train images/s", f"{figures['train_images_per_s']:.2f}"),
        ("train s/iteration", f"{figures['train_s_per_iter']:.3f}"),
        ("train loss first -> last", "{:.3f} -> {:.3f}".format(*figures["train_loss_first_last"])),
    ]
    if "train_peak_gib" in figures:
        rows.append(("train peak GPU memory (GiB)", f"{figures['train_peak_gib']:.2f}"))
        rows.append(("AMP loss scale", f"{figures['amp_loss_scale']}"))
    rows += [(k, f"{v:.2f}") for k, v in figures.items() if k.startswith("detect ")]
    ap = figures.get("wider_ap_pyramid", {})
    rows.append(("WIDER AP easy/medium/hard (pyramid)",
                 " / ".join(f"{ap.get(k, float('nan')):.3f}" for k in ("easy", "medium", "hard"))))
    rows += [(f"check: {k}", "ok" if v else "FAILED") for k, v in figures["checks"].items()]
    width = max(len(k) for k, _ in rows)
    print(f"{'figure'.ljust(width)}  value")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    sys.exit(main())
