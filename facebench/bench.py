"""Compare detectors on labelled data: the library behind ``facebench bench``.

Each detector runs in its own process through ``facebench detect`` (same code path as a
user's run, a clean peak-memory figure, thread count fixed by ``threads`` and the
OpenMP/BLAS variables), writes the WIDER submission layout under ``OUT/<set>/<detector>``,
and is scored by the official WIDER protocol (:func:`facebench.evaluation.wider.
evaluate_wider`) after re-reading its files. Data sets: a WIDER layout with its evaluation
``ground_truth/`` (easy / medium / hard / all), dlib imglab XML, or PASCAL VOC XML per image
(one "all" setting; dlib ``ignore`` and VOC ``difficult`` faces are neither rewarded nor
penalised, like faces outside a WIDER setting). :func:`run_bench` writes
``OUT/leaderboard.json``, ``OUT/leaderboard.md`` and one PR plot per data set
``OUT/pr_<set>.png``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebench.atomic import atomic_open, write_json
from facebench.errors import FacebenchError
from facebench.evaluation.plots import plot_pr

WIDER_SETTINGS = ("easy", "medium", "hard", "all")
LABELLED = "labelled"  # the one setting of dlib / VOC sets: every face not marked ignore
ONNX_RUN = "facebench-onnx"  # the checkpoint exported to ONNX, run through onnxruntime


@dataclass
class BenchSet:
    """A labelled image set: the images to run (ImageItem list) and WIDER-style ground truth."""

    name: str
    items: list
    gt: Any  # facebench.formats.wider.WiderEvalGT, image order = items order
    settings: tuple[str, ...]


# --------------------------------------------------------------------------- data sets


def gt_from_boxes(
    keys: Sequence[tuple[str, str]], boxes_xyxy: Sequence[np.ndarray], ignore: Sequence[np.ndarray]
):
    """WIDER evaluation ground truth from per-image boxes (one setting, ``labelled``).

    ``keys``: (event, stem) per image; boxes become int32 ``x y w h`` (rounded, as the
    official .mat stores them); faces flagged in ``ignore`` are left out of the setting.
    """
    from facebench.formats.wider import WiderEvalGT

    events: list[str] = []
    files: list[list[str]] = []
    boxes: list[list[np.ndarray]] = []
    keep: list[list[np.ndarray]] = []
    for (event, stem), xyxy, ign in zip(keys, boxes_xyxy, ignore, strict=True):
        if not events or events[-1] != event:
            if event in events:
                raise FacebenchError(f"images of event {event!r} must be contiguous")
            events.append(event)
            files.append([])
            boxes.append([])
            keep.append([])
        xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        xywh = np.round(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1))
        files[-1].append(stem)
        boxes[-1].append(xywh.astype(np.int32))
        keep[-1].append(np.flatnonzero(~np.asarray(ign, dtype=bool)).astype(np.int64) + 1)
    return WiderEvalGT(events, files, boxes, {LABELLED: keep})


def wider_set(root: Path, limit: int | None) -> BenchSet:
    """``root`` holds ``WIDER_val/images/<event>/*.jpg`` and ``ground_truth/*.mat``."""
    from facebench.detection import ImageItem
    from facebench.formats.wider import read_eval_gt

    gt = read_eval_gt(root / "ground_truth")
    if limit is not None:
        gt = _first_images(gt, limit)
    images = root / "WIDER_val" / "images"
    items = []
    for event, stem in gt.image_keys():
        path = images / event / f"{stem}.jpg"
        if not path.is_file():
            raise FacebenchError(f"{path}: image of the ground truth not found")
        items.append(ImageItem(path, f"{event}/{stem}"))
    return BenchSet(root.name, items, gt, WIDER_SETTINGS)


def _first_images(gt, n: int):
    """The ground truth restricted to its first ``n`` images (.mat order)."""
    from facebench.formats.wider import WiderEvalGT

    events, files, boxes, attributes = [], [], [], []
    keep: dict[str, list] = {k: [] for k in gt.keep}
    left = n
    for e, event in enumerate(gt.events):
        if left <= 0:
            break
        take = min(left, len(gt.files[e]))
        left -= take
        events.append(event)
        files.append(gt.files[e][:take])
        boxes.append(gt.boxes[e][:take])
        for k in keep:
            keep[k].append(gt.keep[k][e][:take])
        if gt.attributes is not None:
            attributes.append(gt.attributes[e][:take])
    return WiderEvalGT(events, files, boxes, keep, attributes if gt.attributes else None)


def dlib_set(xml_paths: Sequence[Path], limit: int | None) -> BenchSet:
    """dlib imglab files; images lie beside each XML file (as in dlib/examples/faces)."""
    from facebench.detection import ImageItem
    from facebench.formats.voc import read_imglab_xml

    items, keys, boxes, ignore = [], [], [], []
    for xml in xml_paths:
        for image in read_imglab_xml(xml):
            path = xml.parent / image.file
            if not path.is_file():
                raise FacebenchError(f"{xml}: image {image.file!r} not found beside it")
            key = ("dlib", Path(image.file).with_suffix("").as_posix())
            if key in keys:
                continue  # the same photo listed by two files
            items.append(ImageItem(path, "/".join(key)))
            keys.append(key)
            boxes.append(image.boxes)
            ignore.append(image.ignore)
    return _labelled_set("dlib", items, keys, boxes, ignore, limit)


def voc_set(ann_dir: Path, images_dir: Path, limit: int | None) -> BenchSet:
    """PASCAL VOC XML per image (mmdetection's WIDER layout); images under ``images_dir``
    at ``<folder>/<filename>`` or ``<filename>``."""
    from facebench.detection import ImageItem
    from facebench.formats.voc import read_voc_dir

    anns = read_voc_dir(ann_dir)
    anns.sort(key=lambda a: a.image_relpath)  # events contiguous
    items, keys, boxes, ignore = [], [], [], []
    for ann in anns[:limit] if limit else anns:
        path = images_dir / ann.image_relpath
        if not path.is_file():
            path = images_dir / ann.filename
        if not path.is_file():
            raise FacebenchError(f"{ann.path}: image {ann.image_relpath!r} not under {images_dir}")
        key = (ann.folder or "voc", Path(ann.filename).with_suffix("").as_posix())
        items.append(ImageItem(path, "/".join(key)))
        keys.append(key)
        boxes.append(ann.boxes)
        ignore.append(ann.difficult)
    return _labelled_set(ann_dir.name, items, keys, boxes, ignore, None)


def _labelled_set(name, items, keys, boxes, ignore, limit) -> BenchSet:
    if limit is not None:
        items, keys, boxes, ignore = items[:limit], keys[:limit], boxes[:limit], ignore[:limit]
    if not items:
        raise FacebenchError(f"data set {name!r} has no images")
    return BenchSet(name, items, gt_from_boxes(keys, boxes, ignore), (LABELLED,))


# --------------------------------------------------------------------------- running


def _write_image_list(bench_set: BenchSet, folder: Path) -> Path:
    """A folder of symlinks ``<event>/<stem><ext>`` so `facebench detect` sees exactly
    the set's images under their keys."""
    for item in bench_set.items:
        link = folder / f"{item.key}{item.path.suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.symlink(item.path.resolve(), link)
    return folder


def run_detector_process(
    detector: str,
    images: Path,
    out: Path,
    threads: int,
    checkpoint: Path | None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``facebench detect`` in a fresh process; return its protocol record."""
    record_path = out.parent / f"{out.name}.run.json"
    cmd = [sys.executable, "-c", "from cli.app import main; main()", "detect",
           "--images", str(images), "--out", str(out), "--overwrite",
           "--threads", str(threads), "--json", str(record_path), *extra]  # fmt: skip
    if detector == ONNX_RUN:
        cmd += ["--onnx", str(checkpoint)]  # the exported model stands in for the checkpoint
    else:
        cmd += ["--checkpoint", str(checkpoint)] if checkpoint else ["--detector", detector]
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise FacebenchError(f"{detector}: detect failed (exit {result.returncode}): {tail[0]}")
    return json.loads(record_path.read_text())


def evaluate_folder(bench_set: BenchSet, folder: Path, protocol: str):
    """Re-read a prediction folder against the set's ground truth and score it."""
    from facebench.evaluation.wider import evaluate_wider
    from facebench.formats.wider import read_wider_predictions

    predictions = read_wider_predictions(folder, bench_set.gt)
    if predictions.missing or predictions.invalid:
        raise FacebenchError(
            f"{folder}: {len(predictions.missing)} missing and {len(predictions.invalid)} "
            "unreadable prediction files"
        )
    return evaluate_wider(bench_set.gt, predictions, protocol=protocol, settings=bench_set.settings)


# --------------------------------------------------------------------------- reporting


def leaderboard_markdown(results: list[dict[str, Any]], threads: int) -> str:
    """One markdown table per data set: AP per setting, latency, peak memory.

    Latency is the median over images of wall time and of process CPU time per image
    (the detector call only, image decoding excluded), at the images' own size.
    """
    lines = []
    for set_name in dict.fromkeys(r["set"] for r in results):
        rows = [r for r in results if r["set"] == set_name]
        settings = list(rows[0]["ap"])
        size = rows[0]["image_size_median"]
        head = " | ".join(s.capitalize() if s != LABELLED else "AP" for s in settings)
        lines += [
            f"**{set_name}** ({rows[0]['images']} images, median size "
            f"{size[0]:.0f}x{size[1]:.0f}; CPU, {threads} thread(s))",
            "",
            f"| detector | {head} | ms/image (wall) | CPU ms/image | peak RSS MiB "
            "| score threshold |",
            "|---|" + "---:|" * len(settings) + "---:|---:|---:|---|",
        ]
        for r in sorted(rows, key=lambda r: -r["ap"][settings[-1]]):
            aps = " | ".join(f"{r['ap'][s]:.3f}" for s in settings)
            lines.append(
                f"| {r['detector']} | {aps} | {r['latency_ms_median']:.1f} | "
                f"{r['cpu_ms_median']:.1f} | {r['peak_rss_mib']:.0f} | "
                f"{'none' if r['score_threshold'] is None else r['score_threshold']} |"
            )
        lines.append("")
        timed = [r for r in rows if r.get("phase_cpu_ms_per_image")]
        if timed:
            lines += [
                "CPU ms/image by phase (preprocess: resize + batch; forward: the network; "
                "postprocess: decode, NMS, merge):",
                "",
                "| detector | preprocess | forward | postprocess | total |",
                "|---|---:|---:|---:|---:|",
            ]
            for r in timed:
                p = r["phase_cpu_ms_per_image"]
                lines.append(
                    f"| {r['detector']} | {p['preprocess']:.1f} | {p['forward']:.1f} | "
                    f"{p['postprocess']:.1f} | {sum(p.values()):.1f} |"
                )
            lines.append("")
    return "\n".join(lines)


def load_sets(
    wider_roots: Sequence[Path],
    dlib_xmls: Sequence[Path],
    voc_dir: Path | None,
    voc_images: Path | None,
    limit: int | None,
) -> list[BenchSet]:
    if (voc_dir is None) != (voc_images is None):
        raise FacebenchError("--voc and --voc-images go together")
    sets = [wider_set(r, limit) for r in wider_roots]
    if dlib_xmls:
        sets.append(dlib_set(dlib_xmls, limit))
    if voc_dir is not None and voc_images is not None:
        sets.append(voc_set(voc_dir, voc_images, limit))
    if not sets:
        raise FacebenchError("no data: give --wider ROOT, --dlib XML or --voc DIR")
    return sets


def select_detectors(
    detectors: str | None,
    checkpoint: Path | None,
    warn: Callable[[str], None] = print,
    onnx: Path | None = None,
) -> list[tuple[str, Path | None]]:
    """(name, checkpoint) pairs to run: the named peers (default: every installed one), the
    checkpoint as ``facebench`` and an exported ONNX model as ``facebench-onnx``."""
    from facebench import peers

    names = [d.strip() for d in detectors.split(",") if d.strip()] if detectors else None
    if names is None:
        names = peers.installed_peers()
        missing = [n for n in peers.peer_names() if n not in names]
        if missing:
            warn(f"not installed, skipped: {', '.join(missing)}")
    for name in names:
        if name not in peers.PEERS:
            raise FacebenchError(f"unknown detector {name!r}; choose from {peers.peer_names()}")
        if not peers.is_installed(name):
            raise FacebenchError(f"{name}: not installed; {peers.PEERS[name].install}")
    runs: list[tuple[str, Path | None]] = [(n, None) for n in names]
    if checkpoint is not None:
        runs.append(("facebench", checkpoint))
    if onnx is not None:
        runs.append((ONNX_RUN, onnx))
    if not runs:
        raise FacebenchError("no detector to run (install a peer or pass --checkpoint)")
    return runs


def _run_set(
    bench_set: BenchSet,
    runs: Sequence[tuple[str, Path | None]],
    out: Path,
    threads: int,
    protocol: str,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Run and score every detector on one set; write its PR plot; one result row each."""
    images = _write_image_list(bench_set, out / bench_set.name / "_images")
    evaluations = {}
    results = []
    for name, ckpt in runs:
        log(f"bench: {name} on {bench_set.name} ({len(bench_set.items)} images)")
        pred = out / bench_set.name / name
        record = run_detector_process(name, images, pred, threads, ckpt)
        evaluation = evaluate_folder(bench_set, pred, protocol)
        evaluations[name] = evaluation
        proto = record["detector_protocol"]
        results.append({
            "set": bench_set.name,
            "detector": name,
            "images": len(bench_set.items),
            "ap": {s: round(float(v), 4) for s, v in evaluation.ap.items()},
            "faces": {s: c.faces for s, c in evaluation.curves.items()},
            "predictions": evaluation.predictions,
            "latency_ms_median": record["run"]["latency_ms_median"],
            "cpu_ms_median": record["run"]["cpu_ms_median"],
            "image_size_median": record["run"]["image_size_median"],
            "peak_rss_mib": record["run"]["peak_rss_mib"],
            "phase_ms_per_image": record["run"].get("phase_ms_per_image"),
            "phase_cpu_ms_per_image": record["run"].get("phase_cpu_ms_per_image"),
            "threads": threads,
            "score_threshold": proto.get("score_threshold", proto.get("score_thresh")),
            "protocol": proto,
            "predictions_dir": str(pred),
            "notes": evaluation.notes,
        })  # fmt: skip
    plot_pr(bench_set.name, evaluations, out / f"pr_{bench_set.name}.png")
    return results


def run_bench(
    sets: Sequence[BenchSet],
    runs: Sequence[tuple[str, Path | None]],
    out: Path,
    threads: int,
    protocol: str,
    limit: int | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run and score every detector on every set; write ``OUT/leaderboard.{json,md}`` and
    the PR plots; return the summary (the leaderboard JSON document)."""
    results: list[dict[str, Any]] = []
    for bench_set in sets:
        results += _run_set(bench_set, runs, out, threads, protocol, log)
    summary = {"protocol": protocol, "threads": threads, "limit": limit, "results": results}
    write_json(out / "leaderboard.json", summary)
    with atomic_open(out / "leaderboard.md", "w", encoding="utf-8") as f:
        f.write(leaderboard_markdown(results, threads))
    return summary
