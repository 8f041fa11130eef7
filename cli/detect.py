"""``facebench detect``: run a trained checkpoint or a peer detector over images.

Sources: a folder of images (``--images``), a WIDER layout restricted to a split file
(``--images`` + ``--split``), or FDDB folds (``--fddb-folds`` + ``--images``). Outputs:
the WIDER submission layout, FDDB rectangle or ellipse files, optional per-anchor-scale
WIDER folders, and ``protocol.json`` beside them (written last).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import click

from cli.app import main
from cli.console import ProgressCallback, check_progress, log, warn
from cli.options import (
    NMS_IOU,
    POSITIVE_INT,
    PROBABILITY,
    Device,
    OutputDir,
    OutputFile,
    max_image_pixels_option,
    positive_floats,
)
from facebench.atomic import write_json
from facebench.errors import FacebenchError

FORMATS = ("wider", "fddb-rect", "fddb-ellipse", "coco")
OWN_DETECTOR = "facebench"
#: Boxes the calibrated cross-scale merge keeps per image (the detector's default cap).
MERGED_KEEP = 1000


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    return None if text is None else positive_floats(text, what)


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    values = _floats(text, what)
    if values is not None and any(v != int(v) for v in values):
        raise FacebenchError(f"{what}: expected whole numbers, got {text!r}")
    return None if values is None else tuple(int(v) for v in values)


def build_checkpoint_detector(checkpoint: str, threads: int | None, **options: Any):
    """Our trained detector (imports torch); options left None keep their defaults."""
    from detector.inference import CheckpointDetector

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from detector.checkpoint import describe_nonfinite

    kwargs = {k: v for k, v in options.items() if v is not None}
    detector = CheckpointDetector(checkpoint, **kwargs)
    if detector.nonfinite:
        warn(describe_nonfinite(detector.checkpoint, detector.nonfinite))
    return detector


def build_onnx_detector(path: Path, threads: int | None, **options: Any):
    """An exported model in onnxruntime (imports torch for the shared post-processing)."""
    from detector.onnx_export import OnnxDetector

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    kwargs = {k: v for k, v in options.items() if v is not None}
    return OnnxDetector(path, threads=threads, **kwargs)


def build_peer_detector(
    name: str, score_thresh: float | None, threads: int | None, extra: dict | None = None
):
    """A peer adapter from :mod:`facebench.peers` with the options it accepts."""
    from facebench import peers

    spec = peers.PEERS.get(name)
    if spec is None:
        raise FacebenchError(
            f"unknown detector {name!r}; choose {OWN_DETECTOR!r} (with --checkpoint) or one "
            f"of: {', '.join(peers.peer_names())}"
        )
    module = __import__(f"facebench.peers.{spec.module}", fromlist=[spec.cls])
    params = inspect.signature(getattr(module, spec.cls)).parameters
    options: dict[str, Any] = {"threads": threads, **(extra or {})}
    if score_thresh is not None:
        if "score_thresh" not in params:
            raise FacebenchError(f"detector {name!r} has no score threshold (--score-thresh)")
        options["score_thresh"] = score_thresh
    return peers.create_peer(name, **options)


def anchor_scale_names(detector: Any) -> list[int] | None:
    """Anchor sizes indexed by scale id (``model.design.scales``), where the detector has them."""
    design = getattr(getattr(detector, "model", None), "design", None)
    scales = getattr(design, "scales", None)
    return [int(s) for s in scales] if scales else None


def resolve_source(
    images: Path | None, split: Path | None, fddb_folds: Path | None, folds: str | None
) -> tuple[list, dict[str, Any]]:
    """(items, description) of the chosen image source."""
    from facebench import detection

    if images is None:
        raise FacebenchError("--images is required (image folder, WIDER images or FDDB images)")
    if fddb_folds is not None:
        if split is not None:
            raise FacebenchError("--split is for WIDER sources, not with --fddb-folds")
        fold_list = _ints(folds, "--folds")
        items = detection.fddb_images(fddb_folds, images, fold_list)
        return items, {
            "kind": "fddb",
            "folds_dir": str(fddb_folds),
            "images": str(images),
            "folds": list(fold_list) if fold_list else "all",
        }
    if folds is not None:
        raise FacebenchError("--folds needs --fddb-folds")
    if split is not None:
        items = detection.wider_images(images, split)
        return items, {"kind": "wider", "images": str(images), "split": str(split)}
    return detection.folder_images(images), {"kind": "folder", "images": str(images)}


def _check_headers(items: list) -> None:
    """Every image's header, before the detector loads: a bad file fails in seconds."""
    from facebench.images import check_image_files

    progress = check_progress("checking images", len(items))
    try:
        check_image_files([item.path for item in items], progress)
    finally:
        if progress is not None:
            progress.close()


def _check_empty(path: Path, overwrite: bool) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite:
            raise FacebenchError(f"{path}: output exists and is not empty (use --overwrite)")
        stale = path / "protocol.json"
        if stale.is_file():
            stale.unlink()  # an interrupted re-run must not look complete


@main.command("detect")
@max_image_pixels_option
@click.option(
    "--detector",
    "detector_name",
    default=None,
    help="Peer detector name (see `facebench detect --list`), or 'facebench' "
    "(the default when --checkpoint is given).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="A `facebench train` checkpoint file or run folder.",
)
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Run a model exported by `facebench export onnx` through onnxruntime (CPU) "
    "instead of --checkpoint; same test options and output.",
)
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    default=None,
    help="Image folder (recursive), WIDER images folder, or FDDB image root.",
)
@click.option(
    "--split",
    type=click.Path(path_type=Path),
    default=None,
    help="WIDER split file (e.g. wider_face_val_bbx_gt.txt): run only its images.",
)
@click.option(
    "--fddb-folds",
    type=click.Path(path_type=Path),
    default=None,
    help="FDDB-folds folder: run the images its fold lists name (under --images).",
)
@click.option("--folds", default=None, help="FDDB folds to run, e.g. 1,2 (default all 10).")
@click.option(
    "--out",
    type=OutputDir(path_type=Path),
    default=None,
    help="Output folder.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output layout (default: wider; fddb-rect for --fddb-folds); coco: detections.json "
    "(COCO results) + images.json (image-id map).",
)
@click.option(
    "--per-scale",
    is_flag=True,
    help="Also write <out>@<anchor> WIDER folders from the scale_id column "
    "(checkpoints; NMS then runs within each anchor scale).",
)
@click.option(
    "--merge",
    type=click.Choice(["nms", "calibrated"]),
    default=None,
    help="[checkpoint] cross-scale merge: nms (raw scores) or calibrated (per-scale Platt "
    "calibration from `facebench calibrate`, then NMS). Default: calibrated when "
    "<checkpoint>.calibration.json exists, else nms.",
)
@click.option(
    "--score-thresh",
    type=PROBABILITY,
    default=None,
    help="Score threshold (default: each detector's low default, 0.01 where allowed).",
)
@click.option(
    "--threads",
    type=POSITIVE_INT,
    default=None,
    help="CPU threads for the detector.",
)
@click.option(
    "--batch-size",
    type=POSITIVE_INT,
    default=1,
    show_default=True,
)
@click.option(
    "--device",
    type=Device(),
    default=None,
    help="[checkpoint] cpu, cuda, cuda:1 ...",
)
@click.option("--scales", default=None, help="[checkpoint] pyramid factors, e.g. 0.5,1,2.")
@click.option(
    "--max-side",
    type=POSITIVE_INT,
    default=None,
    help="[checkpoint] cap on each image side.",
)
@click.option(
    "--max-pixels",
    type=POSITIVE_INT,
    default=None,
    help="[checkpoint] pixel budget per pyramid level.",
)
@click.option(
    "--nms-iou",
    type=NMS_IOU,
    default=None,
    help="[checkpoint] NMS IoU.",
)
@click.option(
    "--limit",
    type=POSITIVE_INT,
    default=None,
    help="Run only the first N images.",
)
@click.option("--overwrite", is_flag=True, help="Allow a non-empty output folder.")
@click.option(
    "--list",
    "list_detectors",
    is_flag=True,
    help="List the detectors and whether their packages are installed, then exit.",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    default=None,
    help="Write a machine-readable summary here ('-' for stdout).",
)
def detect_command(
    detector_name: str | None,
    checkpoint: Path | None,
    onnx_path: Path | None,
    images: Path | None,
    split: Path | None,
    fddb_folds: Path | None,
    folds: str | None,
    out: Path | None,
    fmt: str | None,
    per_scale: bool,
    merge: str | None,
    score_thresh: float | None,
    threads: int | None,
    batch_size: int,
    device: str | None,
    scales: str | None,
    max_side: int | None,
    max_pixels: int | None,
    nms_iou: float | None,
    limit: int | None,
    overwrite: bool,
    list_detectors: bool,
    json_path: str | None,
) -> None:
    """Detect faces with a checkpoint or a peer detector; write WIDER / FDDB outputs.

    \b
    facebench detect --detector retinaface-mnet --images WIDER_val/images --out preds/
    facebench detect --checkpoint runs/x --images WIDER_val/images --out preds/ --per-scale
    facebench detect --onnx model.onnx --images WIDER_val/images --out preds/
    facebench detect --detector yunet --fddb-folds FDDB-folds --images originalPics \\
        --format fddb-ellipse --out fddb_dets/
    """
    from facebench import detection

    if list_detectors:
        _list_detectors(json_path)
        return
    if out is None:
        raise FacebenchError("--out is required")
    if batch_size < 1 or (threads is not None and threads < 1) or (limit is not None and limit < 1):
        raise FacebenchError("--batch-size, --threads and --limit must be >= 1")
    checkpoint_options = {
        "device": device, "scales": _floats(scales, "--scales"), "max_side": max_side,
        "max_pixels": max_pixels, "nms_iou": nms_iou,
    }  # fmt: skip
    if onnx_path is not None:
        if checkpoint is not None or detector_name not in (None, OWN_DETECTOR):
            raise FacebenchError("--onnx replaces --checkpoint/--detector: give only one")
        if device not in (None, "cpu"):
            raise FacebenchError("--onnx runs on the CPU (onnxruntime); drop --device")
        if merge == "calibrated":
            raise FacebenchError("--merge calibrated needs --checkpoint (its calibration file)")
        checkpoint_options.pop("device")
    name = _detector_name(detector_name, checkpoint or onnx_path,
                          {**checkpoint_options, "merge": merge}, per_scale)  # fmt: skip

    items, source = resolve_source(images, split, fddb_folds, folds)
    if limit is not None:
        items = items[:limit]
        source["limit"] = limit
    fmt = fmt or ("fddb-rect" if fddb_folds is not None else "wider")
    _check_headers(items)
    _check_empty(out, overwrite)

    calibration = None
    if onnx_path is not None:
        det = build_onnx_detector(
            onnx_path, threads, score_thresh=score_thresh, batch_size=batch_size,
            nms_per_scale=True if per_scale else None, **checkpoint_options,
        )  # fmt: skip
    elif name == OWN_DETECTOR:
        from detector.calibration import merge_calibration

        calibration = merge_calibration(merge, checkpoint)
        det = build_checkpoint_detector(
            str(checkpoint), threads, score_thresh=score_thresh, batch_size=batch_size,
            nms_per_scale=True if per_scale or calibration else None,
            # Calibrated: each sub-detector keeps up to 1000 boxes (raw scores must not cut
            # a low-scoring scale before calibration); the merge keeps 1000.
            max_detections=4 * MERGED_KEEP if calibration else None, **checkpoint_options,
        )  # fmt: skip
        if calibration is None and merge is None:
            log("detect: no calibration beside the checkpoint (`facebench calibrate` fits "
                "one); merging raw scores across anchor scales")
    else:
        det = build_peer_detector(name, score_thresh, threads)
    writers = _writers(det, out, fmt, per_scale, overwrite, calibration)

    log(f"detect: {det.name} on {len(items)} images -> {out} ({fmt})")
    progress = ProgressCallback(f"detect {det.name}")
    try:
        stats = detection.run_detection(det, items, writers, batch_size, progress)
    finally:
        progress.close()
    options = {"format": fmt, "batch_size": batch_size, "threads": threads,
               "per_scale": per_scale, "score_thresh": score_thresh}  # fmt: skip
    if name == OWN_DETECTOR:
        options["merge"] = "calibrated" if calibration else "nms"
        if calibration:
            options["calibration"] = calibration.to_dict()
    outputs = [w.close() for w in writers]
    record = detection.protocol_record(det, source, outputs, stats, options)
    detection.write_protocol(out, record)
    run = record["run"]
    log(
        f"detect: {run['images']} images, {run['detections']} detections, "
        f"{run['seconds']:.1f}s, median {run['latency_ms_median']:.1f} ms/image"
    )
    if json_path:
        write_json(json_path, record)


def _list_detectors(json_path: str | None) -> None:
    """Print every peer detector and whether its package is installed."""
    from facebench import peers

    rows = [
        {"name": n, "installed": peers.is_installed(n), "install": s.install,
         "summary": s.summary}
        for n, s in peers.PEERS.items()
    ]  # fmt: skip
    if json_path != "-":
        for r in rows:
            mark = "installed" if r["installed"] else f"missing: {r['install']}"
            click.echo(f"{r['name']:<16} {r['summary']}  [{mark}]")
    if json_path:
        write_json(json_path, {"detectors": rows})


def _detector_name(
    detector_name: str | None,
    checkpoint: Path | None,
    checkpoint_options: dict[str, Any],
    per_scale: bool,
) -> str:
    """The detector to run; checkpoint-only options are refused for peers."""
    name = detector_name or (OWN_DETECTOR if checkpoint is not None else None)
    if name is None:
        raise FacebenchError("choose a detector: --detector NAME or --checkpoint PATH")
    if name == OWN_DETECTOR:
        if checkpoint is None:
            raise FacebenchError("--detector facebench needs --checkpoint PATH")
        return name
    given = {"--checkpoint": checkpoint, **{
        "--" + k.replace("_", "-"): v for k, v in checkpoint_options.items()
    }}  # fmt: skip
    used = [k for k, v in given.items() if v is not None] + (["--per-scale"] * per_scale)
    if used:
        raise FacebenchError(f"{', '.join(used)} apply to checkpoints (--detector facebench)")
    return name


def _writers(det: Any, out: Path, fmt: str, per_scale: bool, overwrite: bool,
             calibration: Any = None) -> list:
    """The output writers: the main layout (the calibrated merge of the per-scale boxes
    when ``calibration`` is given), plus per-anchor-scale WIDER folders."""
    from facebench import detection

    if fmt == "wider":
        main: Any = detection.WiderWriter(out)
    elif fmt == "coco":
        main = detection.CocoWriter(out)
    else:
        main = detection.FddbWriter(out, ellipse=fmt == "fddb-ellipse")
    from detector.merge import MergedWriter

    if calibration is not None:
        from detector.calibration import CalibratedWriter

        used = tuple(float(s) for s in calibration.settings.get("scales", det.scales))
        if used != tuple(det.scales):
            log(f"detect: the calibration was fitted with pyramid scales {list(used)}, this "
                f"run uses {list(det.scales)}; refit with `facebench calibrate --scales`")
        log("detect: calibrated merge (per-scale Platt scaling, then greedy NMS at IoU "
            f"{det.nms_iou} across scales, top {MERGED_KEEP})")
        merged: Any = CalibratedWriter(MergedWriter(main, det.nms_iou, MERGED_KEEP),
                                       calibration)
    elif per_scale:
        merged = MergedWriter(main, det.nms_iou, det.max_detections)
    else:
        return [main]
    if not per_scale:
        return [merged]

    names = anchor_scale_names(det)
    for s in names or []:
        _check_empty(out.parent / f"{out.name}@{s}", overwrite)
    log(
        "--per-scale: NMS runs within each anchor scale; the main output is their cross-scale "
        f"merge (greedy NMS at IoU {det.nms_iou}, top {det.max_detections})"
    )
    return [merged, detection.PerScaleWiderWriter(out, names)]
