"""Anchor statistics per scale: the paper's Figure 2 analysis for any data set and design.

For every image of a training set and every epoch, the training augmentation is drawn (seeded
by ``(seed, epoch, index)`` exactly like :mod:`detector.data`), the design's anchors are tiled
on the augmented size (:func:`detector.anchors.anchors_for`), matched to the faces with the
two-pass matcher and the design's own sampler picks the training samples, both from the
design's :class:`detector.targets.Assigner`, the one the model trains with. Counted per
anchor scale and summed over the data set:

* ``anchors``, ``positives`` (label 1), ``negatives`` (label 0), ``ignored`` (label -1);
* ``sampled_positives`` / ``sampled_negatives``: the anchors the sampler hands to the loss;
* ``faces``: labelled (not ignored) faces after augmentation, bucketed by the face scale
  ``sqrt(w h)`` to the nearest anchor scale in log space (edges at the geometric means of
  neighbouring scales; faces outside the range fall in the end buckets);
* ``faces_unmatched``: those faces no anchor is matched to, so no detector of that design can
  learn them; ``recall_ceiling`` = 1 - unmatched / faces.

Speed: only anchors that can overlap a face need IoUs, because an anchor whose IoU with every
face is 0 is a negative under the matcher's contract (and never a pass-2 candidate, which needs
IoU >= ``neg_iou``). :func:`label_anchors` finds that superset from the grid geometry with a
difference array per scale (no anchor x face product), matches only it, and scatters the labels
back into the full vector, which the sampler then draws from exactly as in training. Designs
with the same anchor geometry and thresholds share one matching per image. Images are split
into chunks that DataLoader workers count in parallel; results do not depend on the number of
workers or the chunking, because all randomness is a function of ``(seed, epoch, index)``.

Training sets (:func:`open_training_set`) are read from annotations only (no pixels): a WIDER
FACE layout with images, the WIDER split text with image sizes from the VOC XML files
(``voc_xml/WIDER_<split>_annotations/<stem>.xml``) or a CSV, an FDDB layout (ellipses
converted to their bounding boxes) or the synthetic data folder.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detector.anchors import anchors_for, grid_shapes
from detector.augment import TrainAugment
from detector.data import sample_seed
from detector.designs import Design, get_design
from detector.targets import Assigner, check_countable
from facebench.errors import FacebenchError, FormatError

#: The five designs of the paper's section 3 / Figure 2 (a)-(e), in the figure's order.
PAPER_DESIGNS: tuple[str, ...] = (
    "rpn",
    "fpn",
    "fpn-finest-stride",
    "fpn-finest",
    "fpn-finest-sampling",
)

#: Rows of a per-design count table, in order; each row holds one count per anchor scale.
COUNT_FIELDS: tuple[str, ...] = (
    "anchors",
    "positives",
    "negatives",
    "ignored",
    "sampled_positives",
    "sampled_negatives",
    "faces",
    "faces_unmatched",
)
_ROW = {name: i for i, name in enumerate(COUNT_FIELDS)}


# =========================================================================== training sets


@dataclass(frozen=True)
class AnnotatedImage:
    """One training image without pixels: ``height`` x ``width`` pixels, ``boxes`` (N, 4)
    float32 x1y1x2y2 and ``ignore`` (N,) bool (faces that count neither way)."""

    name: str
    height: int
    width: int
    boxes: np.ndarray
    ignore: np.ndarray


@dataclass(frozen=True)
class TrainingSet:
    """Annotated images and where they came from (``kind`` names the layout detected)."""

    kind: str
    root: Path
    split: str
    images: list[AnnotatedImage]

    @property
    def num_faces(self) -> int:
        return int(sum(len(im.boxes) for im in self.images))

    @property
    def num_ignored(self) -> int:
        return int(sum(int(im.ignore.sum()) for im in self.images))

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "path": str(self.root),
            "split": self.split,
            "images": len(self.images),
            "faces": self.num_faces,
            "faces_ignored": self.num_ignored,
        }


def open_training_set(
    data: str | Path, split: str = "train", image_sizes: str | Path | None = None
) -> TrainingSet:
    """Read the annotations of ``data``, detecting its layout.

    Layouts, tried in order:

    * synthetic data folder (``data/widerface/wider_face_split``): its WIDER part;
    * WIDER (``data/wider_face_split/wider_face_<split>_bbx_gt.txt``), image sizes from
      ``image_sizes`` (CSV ``name,width,height``; names as in the split file, with or without
      the event folder or extension) if given, else the images' headers under
      ``data/WIDER_<split>/images``, else the VOC XML files under
      ``data/voc_xml/WIDER_<split>_annotations``, else ``data/image_sizes.csv``;
    * FDDB (``data/FDDB-folds``, all ten folds; ``split`` is ignored), sizes from
      ``image_sizes``, ``data/image_sizes.csv`` or the headers under ``data/originalPics``.

    WIDER faces flagged invalid become ignore regions and zero-area boxes are dropped, as in
    :func:`detector.data.wider_records`. Raises FacebenchError for an unknown layout or a
    missing size source, FormatError for bad files.
    """
    root = Path(data)
    if not root.is_dir():
        raise FacebenchError(f"{root}: data folder not found")
    if (root / "widerface" / "wider_face_split").is_dir():
        return _wider_set(root / "widerface", split, image_sizes, kind="synthetic")
    if (root / "wider_face_split").is_dir():
        return _wider_set(root, split, image_sizes, kind="wider")
    if (root / "FDDB-folds").is_dir():
        return _fddb_set(root, image_sizes)
    raise FacebenchError(
        f"{root}: not a WIDER FACE layout (wider_face_split/), an FDDB layout (FDDB-folds/) or"
        " a synthetic data folder (widerface/)"
    )


def _wider_set(
    root: Path, split: str, image_sizes: str | Path | None, kind: str
) -> TrainingSet:
    from facebench.formats.wider import read_split_txt

    txt = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    if not txt.is_file():
        found = sorted(
            p.name[len("wider_face_") : -len("_bbx_gt.txt")]
            for p in (root / "wider_face_split").glob("wider_face_*_bbx_gt.txt")
        )
        hint = f"; splits here: {', '.join(found)} (--split)" if found else ""
        raise FacebenchError(f"{txt}: WIDER split file not found{hint}")
    items = read_split_txt(txt)
    if not items:
        raise FormatError(txt, "no images listed")
    names = [item.name for item in items]
    image_dir = root / f"WIDER_{split}" / "images"
    voc_dir = root / "voc_xml" / f"WIDER_{split}_annotations"
    if image_sizes is not None:
        sizes, source = _sizes_from_csv(Path(image_sizes), names), "sizes from CSV"
    elif image_dir.is_dir():
        sizes, source = _sizes_from_headers(image_dir, names, ""), "images"
    elif voc_dir.is_dir():
        sizes, source = _sizes_from_voc(voc_dir, names), "sizes from VOC XML"
    elif (root / "image_sizes.csv").is_file():
        sizes, source = _sizes_from_csv(root / "image_sizes.csv", names), "sizes from CSV"
    else:
        raise FacebenchError(
            f"{root}: no image sizes for the {split} split: need {image_dir}, {voc_dir},"
            f" {root / 'image_sizes.csv'} or --image-sizes CSV"
        )
    images = []
    for item, (width, height) in zip(items, sizes, strict=True):
        boxes, ignore = wider_faces(item.boxes, item.attributes)
        images.append(AnnotatedImage(item.name, height, width, boxes, ignore))
    return TrainingSet(f"{kind} ({source})", root, split, images)


def wider_faces(xywh: np.ndarray, attributes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WIDER ``x y w h`` boxes and attributes -> (boxes (N, 4) float32 x1y1x2y2, ignore (N,)).

    Zero-area boxes are dropped; faces flagged invalid (attribute column 3) are ignore regions
    (the convention of :func:`detector.data.wider_records`).
    """
    xywh = np.asarray(xywh, dtype=np.float32).reshape(-1, 4)
    attrs = np.asarray(attributes).reshape(-1, 6)
    keep = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    xywh = xywh[keep]
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return boxes.astype(np.float32), attrs[keep, 3] != 0


def _sizes_from_headers(folder: Path, names: Sequence[str], ext: str) -> list[tuple[int, int]]:
    from facebench.formats.imagesize import image_size

    sizes = []
    for name in names:
        path = folder / f"{name}{ext}"
        if not path.is_file():
            raise FacebenchError(f"{path}: image not found (needed for its size)")
        sizes.append(image_size(path))
    return sizes


def _sizes_from_voc(folder: Path, names: Sequence[str]) -> list[tuple[int, int]]:
    from facebench.formats.voc import read_voc_xml

    sizes = []
    for name in names:
        path = folder / f"{Path(name).stem}.xml"
        if not path.is_file():
            raise FacebenchError(f"{path}: VOC annotation not found (needed for {name}'s size)")
        note = read_voc_xml(path)
        if note.width <= 0 or note.height <= 0:
            raise FormatError(path, f"image size {note.width}x{note.height} is not positive")
        sizes.append((int(note.width), int(note.height)))
    return sizes


def _sizes_from_csv(path: Path, names: Sequence[str]) -> list[tuple[int, int]]:
    from facebench.formats.imagesize import read_sizes_csv

    table = read_sizes_csv(path)
    sizes = []
    for name in names:
        for key in (name, os.path.splitext(name)[0], Path(name).name, Path(name).stem):
            if key in table:
                sizes.append(table[key])
                break
        else:
            raise FormatError(path, f"no size for image {name!r}")
    return sizes


def _fddb_set(root: Path, image_sizes: str | Path | None) -> TrainingSet:
    from facebench.formats.fddb import read_folds

    folds = read_folds(root / "FDDB-folds")
    names = [item.name for item in folds]
    csv = Path(image_sizes) if image_sizes is not None else root / "image_sizes.csv"
    if csv.is_file() or image_sizes is not None:
        sizes, source = _sizes_from_csv(csv, names), "sizes from CSV"
    elif (root / "originalPics").is_dir():
        sizes, source = _sizes_from_headers(root / "originalPics", names, ".jpg"), "images"
    else:
        raise FacebenchError(
            f"{root}: no FDDB image sizes: need {csv}, {root / 'originalPics'} or --image-sizes"
        )
    images = []
    for item, (width, height) in zip(folds, sizes, strict=True):
        boxes = ellipse_boxes(item.ellipses, width, height)
        images.append(
            AnnotatedImage(item.name, height, width, boxes, np.zeros(len(boxes), dtype=bool))
        )
    return TrainingSet(f"fddb ({source})", root, "all folds", images)


def ellipse_boxes(ellipses: np.ndarray, width: int, height: int) -> np.ndarray:
    """FDDB ellipses (N, 5) ``a b angle cx cy`` -> their axis-aligned bounding boxes (M, 4)
    float32 x1y1x2y2, clipped to the image; boxes with no area left are dropped.

    The ellipse ``(a cos t, b sin t)`` rotated by ``angle`` spans half-widths
    ``sqrt((a cos angle)^2 + (b sin angle)^2)`` in x and ``sqrt((a sin angle)^2 +
    (b cos angle)^2)`` in y.
    """
    e = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    a, b, angle, cx, cy = e.T
    cos, sin = np.cos(angle), np.sin(angle)
    hx = np.hypot(a * cos, b * sin)
    hy = np.hypot(a * sin, b * cos)
    boxes = np.stack([cx - hx, cy - hy, cx + hx, cy + hy], axis=1)
    boxes = np.clip(boxes, 0.0, [width, height, width, height])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep].astype(np.float32)


# =========================================================================== one image


def near_face_mask(
    design: Design, height: int, width: int, faces: torch.Tensor
) -> torch.Tensor:
    """Bool mask (A,) over ``anchors_for(design, height, width)``: a superset of the anchors
    whose box overlaps some face with positive area (all others have IoU 0 with every face).

    Uses the anchor layout of :mod:`detector.anchors` (scale-major, row-major grid, centres
    at ``(c + 0.5) * stride``): per scale, each face covers a rectangle of grid cells, painted
    with a 2-D difference array. Cost O(cells + faces), no anchor x face product.
    """
    parts = []
    faces = faces.double().reshape(-1, 4)
    for scale_id, (rows, cols) in enumerate(grid_shapes(design, height, width)):
        stride, half = design.strides[scale_id], design.scales[scale_id] / 2.0
        # Centre c overlaps [x1, x2] iff x1 - half < (c + .5) * stride < x2 + half; floor /
        # ceil of the bounds widen the range by at most one cell, which keeps a superset.
        c0 = torch.floor((faces[:, 0] - half) / stride - 0.5).clamp(0, cols - 1).long()
        c1 = torch.ceil((faces[:, 2] + half) / stride - 0.5).clamp(0, cols - 1).long()
        r0 = torch.floor((faces[:, 1] - half) / stride - 0.5).clamp(0, rows - 1).long()
        r1 = torch.ceil((faces[:, 3] + half) / stride - 0.5).clamp(0, rows - 1).long()
        diff = torch.zeros((rows + 1) * (cols + 1), dtype=torch.int32)
        one = torch.ones_like(c0, dtype=torch.int32)
        w = cols + 1
        diff.index_add_(0, r0 * w + c0, one)
        diff.index_add_(0, r0 * w + c1 + 1, -one)
        diff.index_add_(0, (r1 + 1) * w + c0, -one)
        diff.index_add_(0, (r1 + 1) * w + c1 + 1, one)
        cover = diff.view(rows + 1, w).cumsum(0).cumsum(1)[:rows, :cols]
        parts.append((cover > 0).reshape(-1))
    return torch.cat(parts)


@dataclass(frozen=True)
class Labelled:
    """One image's matching under one anchor geometry: labels (A,) in {1, 0, -1},
    matched (A,) face index of positives else -1, scale_ids (A,)."""

    labels: torch.Tensor
    matched: torch.Tensor
    scale_ids: torch.Tensor


def label_anchors(
    design: Design, height: int, width: int, faces: torch.Tensor, ignore: torch.Tensor
) -> Labelled:
    """The design's matching (:meth:`detector.targets.Assigner.match`) over all its anchors
    for a ``height x width`` input, computed on the anchors near faces only (same result, see
    the module docstring)."""
    anchors, scale_ids = anchors_for(design, height, width)
    labels = torch.zeros(len(anchors), dtype=torch.int64)
    matched = torch.full((len(anchors),), -1, dtype=torch.int64)
    if len(faces):
        near = near_face_mask(design, height, width, faces).nonzero().squeeze(1)
        sub_labels, sub_matched = Assigner.for_design(design).match(anchors[near], faces, ignore)
        labels[near] = sub_labels
        matched[near] = sub_matched
    return Labelled(labels, matched, scale_ids)


def face_buckets(boxes: np.ndarray, scales: Sequence[int]) -> np.ndarray:
    """Bucket (N,) int64 of each face: the anchor scale nearest to ``sqrt(w h)`` in log space.

    Edges are the geometric means of neighbouring scales (16|22.6|32|45.3|64|...); faces
    below the first or above the last scale fall in the end buckets.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
    size = np.sqrt(wh[:, 0] * wh[:, 1])
    return np.searchsorted(bucket_edges(scales), size, side="right").astype(np.int64)


def bucket_edges(scales: Sequence[int]) -> list[float]:
    """The face-bucket boundaries used by :func:`face_buckets` (len(scales) - 1 values)."""
    return [math.sqrt(a * b) for a, b in itertools.pairwise(scales)]


class ImageCounter:
    """Counts one (epoch, image) under several designs: ``counter(image, epoch, index)``
    returns ``{design name: (len(COUNT_FIELDS), num_scales) int64}``."""

    def __init__(self, designs: Sequence[Design], augment: TrainAugment, seed: int) -> None:
        self.designs = list(designs)
        self.augment = augment
        self.seed = int(seed)

    def __call__(self, image: AnnotatedImage, epoch: int, index: int) -> dict[str, np.ndarray]:
        seed = sample_seed(self.seed, epoch, index)
        params = self.augment.sample(image.height, image.width, np.random.default_rng(seed))
        boxes, ignore = self.augment.apply_to_boxes(params, image.boxes, image.ignore)
        height, width = params.out_hw
        faces = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
        ignore_t = torch.from_numpy(np.asarray(ignore, dtype=bool))
        real = ~np.asarray(ignore, dtype=bool)
        per_geometry: dict[tuple, tuple[Labelled, torch.Tensor, np.ndarray]] = {}
        per_sampler: dict[tuple, np.ndarray] = {}
        out = {}
        for design in self.designs:
            geometry = (design.scales, design.strides, design.pos_iou, design.neg_iou)
            if geometry not in per_geometry:
                lab = label_anchors(design, height, width, faces, ignore_t)
                per_geometry[geometry] = _match_counts(design, lab, boxes, real)
            lab, code, base = per_geometry[geometry]
            # Same seed for every design, like the trainer's per-image torch.manual_seed; so
            # designs that share geometry and sampler share the draw (e.g. fpn and
            # fpn-finest-stride), computed once.
            how = (*geometry, design.sampler, design.group_size, design.positive_fraction)
            if how not in per_sampler:
                generator = torch.Generator().manual_seed(seed)
                # The sampler the model trains with (OHEM was refused up front).
                assigner = Assigner.for_design(design)
                mask = assigner.sample(lab.labels, lab.scale_ids, lab.matched, generator).mask
                n = design.num_scales
                chosen = torch.bincount(code[mask], minlength=3 * n).view(n, 3).numpy()
                counts = base.copy()
                counts[_ROW["sampled_negatives"]] = chosen[:, 1]
                counts[_ROW["sampled_positives"]] = chosen[:, 2]
                per_sampler[how] = counts
            out[design.name] = per_sampler[how].copy()
        return out


def _match_counts(
    design: Design, lab: Labelled, boxes: np.ndarray, real: np.ndarray
) -> tuple[Labelled, torch.Tensor, np.ndarray]:
    """Counts that depend on the matching only; also returns each anchor's code
    ``3 * scale + label + 1``, from which one bincount gives ignored / negatives / positives
    (columns 0 / 1 / 2) per scale (reused for the sampled anchors)."""
    n = design.num_scales
    counts = np.zeros((len(COUNT_FIELDS), n), dtype=np.int64)
    code = lab.scale_ids * 3 + (lab.labels + 1)
    every = torch.bincount(code, minlength=3 * n).view(n, 3).numpy()
    counts[_ROW["anchors"]] = every.sum(axis=1)
    counts[_ROW["ignored"]] = every[:, 0]
    counts[_ROW["negatives"]] = every[:, 1]
    counts[_ROW["positives"]] = every[:, 2]
    bucket = face_buckets(boxes, design.scales)
    hit = np.zeros(len(boxes), dtype=bool)
    hit[lab.matched[lab.labels == 1].numpy()] = True
    counts[_ROW["faces"]] = np.bincount(bucket[real], minlength=n)
    counts[_ROW["faces_unmatched"]] = np.bincount(bucket[real & ~hit], minlength=n)
    return lab, code, counts


# =========================================================================== data set


@dataclass
class DesignStats:
    """Counts for one design summed over the data set; ``counts[field]`` is (num_scales,)."""

    design: Design
    counts: np.ndarray  # (len(COUNT_FIELDS), num_scales) int64

    def __getitem__(self, name: str) -> np.ndarray:
        return self.counts[_ROW[name]]

    @property
    def recall_ceiling(self) -> float | None:
        faces = int(self["faces"].sum())
        return None if faces == 0 else 1.0 - int(self["faces_unmatched"].sum()) / faces

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """Sampled positives and negatives per scale, each divided by all of the design's
        training samples (the normalisation of the paper's Figure 2 caption; together they
        sum to 1)."""
        total = int(self["sampled_positives"].sum() + self["sampled_negatives"].sum())
        denom = max(total, 1)
        return self["sampled_positives"] / denom, self["sampled_negatives"] / denom

    def distributions(self) -> tuple[np.ndarray, np.ndarray]:
        """Sampled positives over scales as a distribution (sums to 1), and likewise the
        sampled negatives: the shapes Figure 2 compares across designs."""
        pos, neg = self["sampled_positives"], self["sampled_negatives"]
        return pos / max(int(pos.sum()), 1), neg / max(int(neg.sum()), 1)

    def to_dict(self) -> dict:
        d = self.design
        out: dict = {
            "scales": list(d.scales),
            "strides": list(d.strides),
            "sampler": d.sampler,
            "group_size": d.group_size,
        }
        out.update({name: [int(v) for v in self[name]] for name in COUNT_FIELDS})
        pos, neg = self.shares()
        out["normalised"] = {
            "positives": [float(v) for v in pos],
            "negatives": [float(v) for v in neg],
        }
        pos, neg = self.distributions()
        out["distribution"] = {
            "positives": [float(v) for v in pos],
            "negatives": [float(v) for v in neg],
        }
        out["face_bucket_edges"] = bucket_edges(d.scales)
        out["recall_ceiling"] = self.recall_ceiling
        return out


@dataclass
class AnchorStats:
    """The whole report: per-design counts plus the run's settings."""

    designs: dict[str, DesignStats]
    source: dict
    epochs: int
    seed: int
    augment: dict
    images_counted: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "images": self.images_counted,
            "epochs": self.epochs,
            "seed": self.seed,
            "augment": self.augment,
            **self.extra,
            "designs": {name: s.to_dict() for name, s in self.designs.items()},
        }

    def rows(self) -> list[dict]:
        """One flat row per (design, scale), for CSV."""
        rows = []
        for name, stats in self.designs.items():
            pos, neg = stats.shares()
            pos_dist, neg_dist = stats.distributions()
            for k, scale in enumerate(stats.design.scales):
                row = {"design": name, "scale": scale, "stride": stats.design.strides[k]}
                row.update({f: int(stats[f][k]) for f in COUNT_FIELDS})
                row["positive_share"] = float(pos[k])
                row["negative_share"] = float(neg[k])
                row["positive_distribution"] = float(pos_dist[k])
                row["negative_distribution"] = float(neg_dist[k])
                rows.append(row)
        return rows


class _ChunkDataset(torch.utils.data.Dataset):
    """Item k: the summed counts of the k-th chunk of (epoch, image) pairs."""

    def __init__(
        self, images: Sequence[AnnotatedImage], counter: ImageCounter, epochs: int, chunk: int
    ) -> None:
        self.images = images
        self.counter = counter
        self.total = len(images) * epochs
        self.chunk = chunk

    def __len__(self) -> int:
        return math.ceil(self.total / self.chunk)

    def __getitem__(self, k: int) -> tuple[int, dict[str, np.ndarray]]:
        sums: dict[str, np.ndarray] = {}
        stop = min((k + 1) * self.chunk, self.total)
        for flat in range(k * self.chunk, stop):
            epoch, index = divmod(flat, len(self.images))
            for name, counts in self.counter(self.images[index], epoch, index).items():
                if name in sums:
                    sums[name] += counts
                else:
                    sums[name] = counts
        return stop - k * self.chunk, sums


def _single_thread(_worker: int) -> None:
    # Workers are the parallelism; intra-op threads would only oversubscribe the cores.
    torch.set_num_threads(1)


def count_anchor_stats(
    training: TrainingSet,
    designs: Sequence[str | Design] = PAPER_DESIGNS,
    epochs: int = 1,
    seed: int = 0,
    augment: TrainAugment | None = None,
    workers: int = 0,
    limit: int | None = None,
    chunk: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> AnchorStats:
    """Count anchors, matches and samples per scale for every design over ``training``.

    ``augment`` defaults to the paper's ``TrainAugment()`` (scale jitter 0.25..2, crop to
    1,200 px, flip); ``epochs`` passes draw fresh augmentations; ``limit`` keeps the first N
    images; ``workers`` > 0 counts chunks of ``chunk`` images in that many DataLoader worker
    processes (0: in this process). ``progress(done, total)`` is called with images counted.
    The result depends only on the data, designs, augmentation, epochs and seed.
    """
    if epochs < 1:
        raise FacebenchError(f"--epochs must be >= 1, got {epochs}")
    if workers < 0:
        raise FacebenchError(f"--workers must be >= 0, got {workers}")
    resolved = [get_design(d) for d in designs]
    if not resolved:
        raise FacebenchError("no designs given")
    names = [d.name for d in resolved]
    if len(set(names)) != len(names):
        raise FacebenchError(f"design listed twice: {', '.join(names)}")
    for d in resolved:
        check_countable(d)
    augment = augment if augment is not None else TrainAugment()
    images = training.images if limit is None else training.images[: max(limit, 0)]
    counter = ImageCounter(resolved, augment, seed)
    dataset = _ChunkDataset(images, counter, epochs, chunk)
    totals = {d.name: np.zeros((len(COUNT_FIELDS), d.num_scales), np.int64) for d in resolved}
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_single_thread if workers else None,
        persistent_workers=False,
    )
    # The per-image tensors are small: intra-op threads cost more in hand-offs (and spin far
    # worse on a busy machine) than they gain, so the counting runs single-threaded.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Start (fork) the workers before a progress display starts its refresh thread.
        batches = iter(loader)
        done = 0
        if progress is not None:
            progress(0, dataset.total)
        for n, sums in batches:
            for name, counts in sums.items():
                totals[name] += np.asarray(counts, dtype=np.int64)
            done += int(n)
            if progress is not None:
                progress(done, dataset.total)
    finally:
        torch.set_num_threads(threads)
    return AnchorStats(
        designs={d.name: DesignStats(d, totals[d.name]) for d in resolved},
        source=training.describe(),
        epochs=int(epochs),
        seed=int(seed),
        augment=augment.config(),
        images_counted=len(images),
    )


def plot_distributions(stats, path: str | Path) -> None:
    """The paper's Figure 2, one column per design (side by side): the distribution over
    anchor scales of the sampled positives (top row) and of the sampled negatives (bottom
    row), each normalised to sum to 1 for the design; titles give the positives' share of all
    samples, which is too small on WIDER to show on a common axis."""
    import matplotlib

    from facebench.atomic import atomic_open

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    items = list(stats.designs.items())
    fig, axes = plt.subplots(
        2, len(items), figsize=(2.9 * len(items), 5.2), sharey="row", squeeze=False
    )
    for k, (name, design_stats) in enumerate(items):
        pos, neg = design_stats.distributions()
        pos_share = float(design_stats.shares()[0].sum())
        x = np.arange(design_stats.design.num_scales)
        labels = [str(s) for s in design_stats.design.scales]
        letter = f"({chr(ord('a') + k)}) " if k < 26 else ""
        for row, (values, colour, what) in enumerate(
            ((pos, "tab:red", "positive"), (neg, "tab:blue", "negative"))
        ):
            ax = axes[row][k]
            ax.bar(x, values, width=0.6, color=colour)
            ax.set_xticks(x, labels)
            ax.grid(axis="y", alpha=0.3)
            if row == 0:
                ax.set_title(f"{letter}{name}\npositives {pos_share:.2%} of samples", fontsize=9)
            else:
                ax.set_xlabel("anchor scale")
            if k == 0:
                ax.set_ylabel(f"{what} samples\n(fraction per scale)")
    fig.suptitle(
        f"{stats.source['kind']}: {stats.images_counted} images x {stats.epochs} epoch(s)",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
