"""Write the synthetic data set in both the WIDER FACE and the FDDB layouts.

Layout under ``out_dir`` (mirrors the real data)::

    synth.json                                   manifest (see :func:`generate`)
    widerface/WIDER_{train,val}/images/<event>/<stem>.jpg
    widerface/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    widerface/ground_truth/wider_{face,easy,medium,hard}_val.mat        (val split)
    fddb/originalPics/synth/<event>/<stem>.jpg                          (val images again)
    fddb/FDDB-folds/FDDB-fold-XX.txt, FDDB-fold-XX-ellipseList.txt      (XX = 01..10)
    fddb/image_sizes.csv

The whole folder is built beside ``out_dir`` and moved into place at the end, so an
interrupted run leaves no half-written data set. A folder that already holds a synthetic
data set (it has ``synth.json``) is replaced; any other non-empty folder is refused.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np

from facebench import __version__
from facebench.atomic import write_json
from facebench.errors import FacebenchError
from facebench.formats.fddb import N_FOLDS, fold_paths, write_ellipse_list, write_fold_list
from facebench.formats.imagesize import write_sizes_csv
from facebench.formats.wider import WiderEvalGT, WiderImage, write_eval_gt, write_split_txt
from facebench.synth import labels, layout
from facebench.synth.scene import SynthImage, render_image

MANIFEST = "synth.json"
MANIFEST_VERSION = 1
MIN_MAX_SIDE = 128
MAX_MAX_SIDE = 4096
#: Face-height histogram bin edges (pixels) reported in the manifest; the last bin is open.
HEIGHT_BINS = (0, 6, 10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 400)

ProgressFn = Callable[[int, int], None]


def split_counts(num_images: int, val_fraction: float) -> tuple[int, int]:
    """``(n_train, n_val)``: ``n_val = max(10, round(num_images * val_fraction))`` (one
    image per FDDB fold at least) and ``n_train >= 1``. Raises FacebenchError otherwise."""
    if not 0.0 < val_fraction < 1.0:
        raise FacebenchError(
            f"val fraction must be between 0 and 1 (exclusive), got {val_fraction}"
        )
    n_val = max(N_FOLDS, round(num_images * val_fraction))
    if num_images - n_val < 1:
        raise FacebenchError(
            f"{num_images} images are too few: the val split needs at least {N_FOLDS} (one per"
            f" FDDB fold) and the train split at least 1, so use {N_FOLDS + 1} or more"
        )
    return num_images - n_val, n_val


def generate(
    out_dir: str | Path,
    num_images: int = 200,
    seed: int = 0,
    val_fraction: float = 0.25,
    max_side: int = 512,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Render ``num_images`` images with ``seed`` and write the data set to ``out_dir``.

    ``max_side``: long side of every image in pixels (face sizes scale with it);
    ``progress(done, total)`` is called as images finish; ``workers``: processes to draw
    with (default: up to 2, one for small sets). The output is a function of
    ``(num_images, seed, val_fraction, max_side)`` only, byte for byte. Returns the
    manifest, also written to ``out_dir/synth.json``: version, parameters, counts per
    split, the measured face-size distribution, attribute counts and the subset rules.
    """
    _, n_val = split_counts(num_images, val_fraction)
    if not MIN_MAX_SIDE <= max_side <= MAX_MAX_SIDE:
        raise FacebenchError(f"max side must be in {MIN_MAX_SIDE}..{MAX_MAX_SIDE}, got {max_side}")
    if seed < 0:
        raise FacebenchError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir).resolve()  # so that the temporary sibling never lands inside it
    _check_target(out)
    val_set = set(_val_indices(seed, num_images, n_val).tolist())

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        train, val = [], []
        for done, image in enumerate(_render_all(seed, num_images, max_side, workers), 1):
            is_val = image.index in val_set
            _write_image(tmp, image, is_val)
            image.jpeg = b""  # annotations only from here on: memory stays bounded
            (val if is_val else train).append(image)
            if progress is not None:
                progress(done, num_images)
        manifest = _write_annotations(tmp, train, val)
        manifest["parameters"] = {
            "num_images": num_images, "seed": seed, "val_fraction": val_fraction,
            "max_side": max_side,
        }
        write_json(tmp / MANIFEST, manifest)
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# --------------------------------------------------------------------------- rendering


def _val_indices(seed: int, num_images: int, n_val: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
    return np.sort(rng.permutation(num_images)[:n_val])


def _render_one(args: tuple[int, int, int]) -> SynthImage:
    return render_image(*args)


def _render_all(seed: int, num_images: int, max_side: int, workers: int | None
                ) -> Iterator[SynthImage]:
    jobs = [(seed, i, max_side) for i in range(num_images)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if num_images >= 24 else 1
    if workers <= 1:
        yield from map(_render_one, jobs)
        return
    # fork starts fast and needs no __main__ guard in the caller's script, but is unsafe
    # once other threads run (one may hold a lock); then spawn.
    single_thread = threading.active_count() == 1
    method = "fork" if single_thread and "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=get_context(method)) as pool:
        yield from pool.map(_render_one, jobs, chunksize=4)


def _split_dir(split: str) -> str:
    return f"WIDER_{split}"


def _fddb_name(image: SynthImage) -> str:
    return f"synth/{image.event}/{image.stem}"


def _write_image(root: Path, image: SynthImage, is_val: bool) -> None:
    split = "val" if is_val else "train"
    paths = [root / "widerface" / _split_dir(split) / "images" / image.event / f"{image.stem}.jpg"]
    if is_val:
        paths.append(root / "fddb" / "originalPics" / f"{_fddb_name(image)}.jpg")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.jpeg)


# --------------------------------------------------------------------------- annotations


def _ordered(images: list[SynthImage]) -> list[SynthImage]:
    # WIDER files list images grouped by event.
    return sorted(images, key=lambda im: (layout.EVENTS.index(im.event), im.index))


def _write_annotations(root: Path, train: list[SynthImage], val: list[SynthImage]
                       ) -> dict[str, Any]:
    wider = root / "widerface"
    train, val = _ordered(train), _ordered(val)
    split_dir = wider / "wider_face_split"
    for split, images in (("train", train), ("val", val)):
        write_split_txt(
            split_dir / f"wider_face_{split}_bbx_gt.txt",
            [WiderImage(im.name, im.boxes, im.attributes) for im in images],
        )
    subset_counts = _write_eval_gt(wider / "ground_truth", val)
    _write_fddb(root / "fddb", val)
    return _manifest(train, val, subset_counts)


def _write_eval_gt(gt_dir: Path, val: list[SynthImage]) -> dict[str, int]:
    events = [ev for ev in layout.EVENTS if any(im.event == ev for im in val)]
    per_event = [[im for im in val if im.event == ev] for ev in events]
    keep: dict[str, list[list[np.ndarray]]] = {s: [] for s in labels.SUBSETS}
    counts = dict.fromkeys(labels.SUBSETS, 0)
    for images in per_event:
        masks = [labels.subset_masks(im.boxes, im.attributes) for im in images]
        for s in labels.SUBSETS:
            keep[s].append([np.flatnonzero(m[s]) + 1 for m in masks])
            counts[s] += int(sum(m[s].sum() for m in masks))
    gt = WiderEvalGT(
        events=events,
        files=[[im.stem for im in images] for images in per_event],
        boxes=[[im.boxes.astype(np.int32) for im in images] for images in per_event],
        keep=keep,
        attributes=[[im.attributes for im in images] for images in per_event],
    )
    write_eval_gt(gt_dir, gt)
    return counts


def _write_fddb(root: Path, val: list[SynthImage]) -> None:
    folds_dir = root / "FDDB-folds"
    by_index = sorted(val, key=lambda im: im.index)
    for fold, chunk in enumerate(np.array_split(np.arange(len(by_index)), N_FOLDS), 1):
        images = [by_index[i] for i in chunk]
        list_path, ellipse_path = fold_paths(folds_dir, fold)
        write_fold_list(list_path, [_fddb_name(im) for im in images])
        write_ellipse_list(
            ellipse_path,
            [(_fddb_name(im), im.ellipses[im.attributes[:, 3] == 0]) for im in images],
        )
    write_sizes_csv(root / "image_sizes.csv",
                    [(_fddb_name(im), im.width, im.height) for im in by_index])


# --------------------------------------------------------------------------- manifest


def _split_summary(images: list[SynthImage]) -> dict[str, int]:
    attrs = np.concatenate([im.attributes for im in images]) if images else np.zeros((0, 6))
    return {
        "images": len(images),
        "faces": len(attrs),
        "valid_faces": int((attrs[:, 3] == 0).sum()),
        "images_without_faces": sum(1 for im in images if len(im.boxes) == 0),
    }


def _height_histogram(heights: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for lo, hi in itertools.pairwise([*HEIGHT_BINS, None]):
        sel = (heights >= lo) if hi is None else (heights >= lo) & (heights < hi)
        out.append({"from": lo, "to": hi, "count": int(sel.sum())})
    return out


def _manifest(train: list[SynthImage], val: list[SynthImage], subsets: dict[str, int]
              ) -> dict[str, Any]:
    images = train + val
    boxes = np.concatenate([im.boxes for im in images]) if images else np.zeros((0, 4))
    attrs = np.concatenate([im.attributes for im in images]) if images else np.zeros((0, 6))
    heights = boxes[:, 3]
    faces_per_image = np.array([len(im.boxes) for im in images])
    val_summary = _split_summary(val) | subsets
    fddb_faces = int(sum((im.attributes[:, 3] == 0).sum() for im in val))

    def stats(x: np.ndarray) -> dict[str, float]:
        if not len(x):
            return {}
        q = np.percentile(x, [10, 25, 50, 75, 90, 99])
        return {"min": float(x.min()), "p10": float(q[0]), "p25": float(q[1]),
                "median": float(q[2]), "p75": float(q[3]), "p90": float(q[4]),
                "p99": float(q[5]), "max": float(x.max()), "mean": float(x.mean())}

    return {
        "format": "facebench-synth",
        "version": MANIFEST_VERSION,
        "generator": f"facebench {__version__}",
        "counts": {
            "train": _split_summary(train),
            "val": val_summary,
            "fddb": {"images": len(val), "faces": fddb_faces, "folds": N_FOLDS},
            "events": {ev: sum(1 for im in images if im.event == ev) for ev in layout.EVENTS},
            "scenes": {k: sum(1 for im in images if im.kind == k) for k in layout.SCENES},
            "distractors": int(sum(im.n_distractors for im in images)),
        },
        "size_distribution": {
            "model": layout.__doc__.split("- Head ellipse")[0].strip(),
            "measured_box_height": stats(heights),
            "height_histogram": _height_histogram(heights),
            "faces_per_image": stats(faces_per_image),
        },
        "attributes": {
            "blur": np.bincount(attrs[:, 0].astype(int), minlength=3).tolist(),
            "occlusion": np.bincount(attrs[:, 4].astype(int), minlength=3).tolist(),
            "pose": np.bincount(attrs[:, 5].astype(int), minlength=2).tolist(),
            "invalid": int(attrs[:, 3].sum()),
        },
        "rules": labels.RULES,
        "layout": {
            "wider_root": "widerface",
            "wider_images": "widerface/WIDER_{split}/images/<event>/<stem>.jpg",
            "wider_split": "widerface/wider_face_split/wider_face_{split}_bbx_gt.txt",
            "wider_ground_truth": "widerface/ground_truth",
            "fddb_images": "fddb/originalPics/<name>.jpg",
            "fddb_folds": "fddb/FDDB-folds",
            "fddb_image_sizes": "fddb/image_sizes.csv",
            "fddb_names": "synth/<event>/<stem>",
        },
    }


# --------------------------------------------------------------------------- output folder


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FacebenchError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise FacebenchError(
            f"{out}: folder is not empty and holds no synthetic data set ({MANIFEST});"
            " choose a new or empty folder"
        )


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    elif out.is_dir():
        out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
