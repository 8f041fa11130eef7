"""``facebench calibrate``: fit per-scale score calibration for a checkpoint.

Runs the checkpoint (NMS within each anchor scale) on training images, fits one Platt
mapping per sub-detector and writes ``<checkpoint>.calibration.json``, which ``facebench
detect`` then uses for its cross-scale merge (``--merge calibrated``, the default when the
file exists). The work is :func:`detector.calibration.calibrate_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import main
from cli.console import ProgressCallback, log
from cli.options import NMS_IOU, POSITIVE_INT, OutputFile
from facebench.atomic import write_json


@main.command("calibrate")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A `facebench train` checkpoint file or run folder.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="WIDER root or synthetic data folder: its training split is used.",
)
@click.option(
    "--images", type=click.IntRange(1), default=32, show_default=True,
    help="Training images to fit on (the split's first ones).",
)
@click.option(
    "--scales", default="1", show_default=True,
    help="Pyramid factors, as you will pass to `facebench detect --scales`.",
)
@click.option(
    "--max-side",
    type=POSITIVE_INT,
    default=3000,
    show_default=True,
    help="Cap on each image side (as for detect).",
)
@click.option(
    "--nms-iou",
    type=NMS_IOU,
    default=None,
    help="NMS IoU (detect's default 0.3).",
)
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads.")
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    default=None,
    help="Also write the calibration here ('-' for stdout).",
)
def calibrate_command(checkpoint: Path, data: Path, images: int, scales: str, max_side: int,
                      nms_iou: float | None, threads: int | None, json_path: str | None) -> None:
    """Fit per-scale Platt calibration on training images; write it beside the checkpoint.

    \b
    facebench calibrate --checkpoint runs/x --data data/ --scales 1,2
    facebench detect --checkpoint runs/x --images ... --scales 1,2 --out preds/
    """
    from cli.detect import _floats
    from detector.calibration import calibrate_checkpoint

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    progress = ProgressCallback("calibrating")
    try:
        fitted, path = calibrate_checkpoint(
            checkpoint, data, images, _floats(scales, "--scales") or (1.0,), max_side, nms_iou,
            progress=progress,
        )
    finally:
        progress.close()
    for scale, a, b, pos, neg in zip(fitted.scales, fitted.a, fitted.b, fitted.positives,
                                     fitted.negatives, strict=True):
        log(f"@{scale}: p = sigmoid({a:.3f} * logit(s) + {b:+.3f}) "
            f"({pos} true / {neg} false detections)")
    log(f"calibration -> {path}")
    if json_path:
        write_json(json_path, {**fitted.to_dict(), "path": str(path)})
