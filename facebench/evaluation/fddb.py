"""The official FDDB evaluation (discrete and continuous ROC), number for number.

Protocol (Jain & Learned-Miller's ``evaluate``, current revision), reproduced here:

1. Every region is a pixel mask at its image's size (see :mod:`.fddb_regions` for the
   exact rounding); the overlap of an annotation A and a detection D is
   ``|A and D| / |A or D|``.
2. Per image and for every distinct detection score ``s``, the detections with score
   ``>= s`` are matched one-to-one to the annotations by the assignment maximising the sum
   of overlaps (pairs with overlap 0 are not matches; see :mod:`.fddb_matching`). A
   matched pair with overlap ``> 0.5`` is a discrete true positive; the continuous score
   adds the overlaps of all matched pairs. False positives (both curves) = detections kept
   minus discrete true positives.
3. One ROC row per distinct score over the whole set, lowest threshold first, plus a final
   row at threshold DBL_MAX when some image has no detections. TPR = TP / faces.

TPR at ``k`` false positives (the table, ``--at``): among the rows with ``FP <= k``, the
one with the largest FP, and of those the first in row order (the lowest threshold, hence
the highest TPR); 0 when no row qualifies. With ``interpolate=True``: the upper envelope
of the (FP, TPR) points, starting at (0, 0), linearly interpolated at ``k`` (and held
flat beyond the largest FP).

Differences from the official program, all deliberate: the assignment is exact (LAPJV
via ``scipy.sparse.csgraph``, the optimum ``linear_sum_assignment`` finds; the official
Hungarian routine is not always optimal on non-square matrices, which can change a face
or two: measured, the official sum was lower in each of the 8 differing image-thresholds
of 4 runs over all folds), and bad input is an error naming file and line rather than an
abort or a silent misalignment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facebench.atomic import atomic_open
from facebench.errors import FacebenchError, FormatError
from facebench.evaluation.fddb_matching import (
    DBL_MAX,
    MatchEvents,
    RocRows,
    match_events,
    roc_rows,
)
from facebench.evaluation.fddb_regions import pixel_overlaps_many
from facebench.formats.fddb import (
    DetectionFile,
    FddbImage,
    read_detection_file,
    rect_to_ellipse_s3fd,
)

Overlap = Literal["pixel", "geometric"]
Progress = Callable[[int, int], None]

DEFAULT_AT: tuple[int, ...] = (200, 500, 1000)
_FOLD_OUT = re.compile(r"^fold-(\d+)-out\.txt$")


# --------------------------------------------------------------------------- detections


@dataclass(frozen=True)
class FddbDetections:
    """A method's detections, by image name, with the file and line each block came from.

    ``kind``: ``"rect"`` (regions (K, 5) ``x y w h score``) or ``"ellipse"`` (regions
    (K, 6) ``ra rb theta cx cy score``).
    """

    kind: Literal["rect", "ellipse"]
    regions: dict[str, np.ndarray]
    sources: dict[str, tuple[Path, int]]
    files: tuple[Path, ...]

    @property
    def n_detections(self) -> int:
        return int(sum(len(r) for r in self.regions.values()))


def detection_files(path: str | Path) -> list[Path]:
    """The files behind a DETS argument: the file itself, or a folder's ``fold-XX-out.txt``.

    A folder must hold at least one ``fold-XX-out.txt``; they are returned in fold order.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(
            (int(m.group(1)), p)
            for p in path.iterdir()
            if p.is_file() and (m := _FOLD_OUT.match(p.name))
        )
        if not found:
            raise FacebenchError(f"{path}: folder holds no fold-XX-out.txt detection files")
        return [p for _, p in found]
    if not path.exists():
        raise FacebenchError(f"{path}: file not found")
    return [path]


def load_detections(
    path: str | Path,
    format: Literal["auto", "rect", "ellipse"] = "auto",
    image_ids: str | Path | None = None,
) -> FddbDetections:
    """Read a detection file or a folder of ``fold-XX-out.txt`` files into one set.

    With ``format="auto"`` each file's form is taken from its number of fields; all files
    of a set must agree. An image may have only one block across all files. A ``.json``
    file is a COCO results file (rectangles; :mod:`facebench.formats.coco`) whose ids
    ``image_ids`` (default ``images.json`` beside it) maps to FDDB names.
    """
    from facebench.formats import coco

    if coco.is_coco_results(path):
        if format == "ellipse":
            raise FacebenchError(f"{path}: COCO results hold rectangles, not ellipses")
        results = coco.read_coco_results(path, image_ids)
        sources = {name: (results.path, None) for name in results.boxes}
        return FddbDetections("rect", results.boxes, sources, (results.path,))  # type: ignore[arg-type]
    files = detection_files(path)
    parsed: list[DetectionFile] = [read_detection_file(f, format=format) for f in files]
    kinds = {p.format for p in parsed if p.n_regions}
    if len(kinds) > 1:
        detail = ", ".join(f"{p.path.name}: {p.format}" for p in parsed if p.n_regions)
        raise FacebenchError(f"{path}: files mix rectangle and ellipse detections ({detail})")
    kind = kinds.pop() if kinds else (format if format != "auto" else "rect")
    regions: dict[str, np.ndarray] = {}
    sources: dict[str, tuple[Path, int]] = {}
    for p in parsed:
        for name, line, reg in zip(p.names, p.lines, p.regions, strict=True):
            if name in sources:
                first, first_line = sources[name]
                raise FormatError(
                    p.path, f"image {name!r} already has a block in {first}:{first_line}", line
                )
            regions[name] = reg if len(reg) else np.zeros((0, 5 if kind == "rect" else 6))
            sources[name] = (p.path, line)
    return FddbDetections(kind, regions, sources, tuple(files))  # type: ignore[arg-type]


def rects_to_ellipses(dets: FddbDetections) -> FddbDetections:
    """Convert rectangle detections to ellipses with the S3FD regressor (keeps scores)."""
    if dets.kind != "rect":
        raise FacebenchError(
            f"{dets.files[0]}: --rect-to-ellipse s3fd needs rectangle detections, got ellipses"
        )
    regions = {
        name: np.c_[rect_to_ellipse_s3fd(r[:, :4]), r[:, 4]] if len(r) else np.zeros((0, 6))
        for name, r in dets.regions.items()
    }
    return FddbDetections("ellipse", regions, dets.sources, dets.files)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FddbResult:
    """One method's evaluation: the ROC rows and what went into them."""

    rows: RocRows
    n_images: int
    n_detections: int
    images_without_block: list[str] = field(default_factory=list)
    images_without_detections: int = 0
    ignored_blocks: int = 0
    overlap: str = "pixel"
    kind: str = "rect"

    @property
    def tpr_discrete(self) -> np.ndarray:
        return _rate(self.rows.tp_discrete, self.rows.n_faces)

    @property
    def tpr_continuous(self) -> np.ndarray:
        return _rate(self.rows.tp_continuous, self.rows.n_faces)

    def tpr_at(
        self,
        k: float,
        curve: Literal["discrete", "continuous"] = "discrete",
        interpolate: bool = False,
    ) -> float:
        """TPR at ``k`` false positives (rule in the module docstring)."""
        tpr = self.tpr_discrete if curve == "discrete" else self.tpr_continuous
        return tpr_at(self.rows.fp, tpr, k, interpolate=interpolate)

    def summary(
        self, at: Sequence[float] = DEFAULT_AT, interpolate: bool = False
    ) -> dict[str, Any]:
        """JSON-ready summary: TPR at each ``at`` for both curves, counts and ROC rows."""
        keys = [_key(k) for k in at]
        tpr_d, tpr_c = self.tpr_discrete, self.tpr_continuous
        rows = [
            {
                "threshold": float(t),
                "fp": float(fp),
                "tp_discrete": float(td),
                "tp_continuous": float(tc),
                "tpr_discrete": float(rd),
                "tpr_continuous": float(rc),
            }
            for t, fp, td, tc, rd, rc in zip(
                self.rows.threshold, self.rows.fp, self.rows.tp_discrete,
                self.rows.tp_continuous, tpr_d, tpr_c, strict=True,
            )
        ]  # fmt: skip
        return {
            "discrete": {
                key: self.tpr_at(k, "discrete", interpolate)
                for key, k in zip(keys, at, strict=True)
            },
            "continuous": {
                key: self.tpr_at(k, "continuous", interpolate)
                for key, k in zip(keys, at, strict=True)
            },
            "rule": "interpolated" if interpolate else "largest FP <= k, lowest threshold first",
            "n_faces": self.rows.n_faces,
            "n_images": self.n_images,
            "n_detections": self.n_detections,
            "images_without_detections": self.images_without_detections,
            "images_without_block": len(self.images_without_block),
            "ignored_blocks": self.ignored_blocks,
            "overlap": self.overlap,
            "detections": self.kind,
            "rows": rows,
        }


def _key(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else str(k)


def _rate(tp: np.ndarray, n: int) -> np.ndarray:
    return tp / n if n else np.zeros_like(tp)


def tpr_at(fp: np.ndarray, tpr: np.ndarray, k: float, interpolate: bool = False) -> float:
    """TPR at ``k`` false positives from ROC rows in official order (ascending threshold).

    Step rule: the first row (lowest threshold) among those with the largest ``FP <= k``;
    0 if none. Interpolated: the upper envelope of (FP, TPR) from (0, 0), linear in FP,
    flat past the largest FP.
    """
    fp = np.asarray(fp, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    if not interpolate:
        ok = np.flatnonzero(fp <= k)
        if len(ok) == 0:
            return 0.0
        best = fp[ok].max()
        return float(tpr[ok[fp[ok] == best][0]])
    xs = np.r_[0.0, fp]
    ys = np.r_[0.0, tpr]
    ux, inv = np.unique(xs, return_inverse=True)
    uy = np.full(len(ux), -np.inf)
    np.maximum.at(uy, inv, ys)
    uy = np.maximum.accumulate(uy)
    return float(np.interp(k, ux, uy))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class _Aligned:
    """Detections lined up with the evaluated images (one array per image, maybe empty)."""

    per_image: list[np.ndarray]
    without_block: list[str]
    ignored_blocks: int


def align_detections(
    images: Sequence[FddbImage], dets: FddbDetections, known_names: Iterable[str] | None = None
) -> _Aligned:
    """Line detections up with the evaluated images.

    A block for an image not in the folds at all is an error naming its file and line
    (typically a name written with an extension or a different prefix). Blocks for images
    in ``known_names`` but not evaluated (other folds) are ignored and counted. Images
    without a block have no detections and are listed.
    """
    evaluated = {im.name for im in images}
    known = set(known_names) if known_names is not None else evaluated
    ignored = 0
    for name, (path, line) in dets.sources.items():
        if name in evaluated:
            continue
        if name in known:
            ignored += 1
            continue
        hint = ""
        stem = re.sub(r"\.(jpe?g|png|bmp)$", "", name, flags=re.IGNORECASE)
        if stem != name and stem in known:
            hint = f" (FDDB names have no extension: write {stem!r})"
        elif any(n.endswith(name) or name.endswith(n) for n in known):
            hint = " (the path prefix differs from the FDDB fold lists)"
        raise FormatError(path, f"image {name!r} is not in the FDDB folds{hint}", line)
    width = 5 if dets.kind == "rect" else 6
    per_image = [dets.regions.get(im.name, np.zeros((0, width))) for im in images]
    missing = [im.name for im in images if im.name not in dets.regions]
    return _Aligned(per_image, missing, ignored)


def check_sizes(
    images: Sequence[FddbImage], sizes: Mapping[str, tuple[int, int]], source: str | Path
) -> None:
    """Raise FacebenchError naming ``source`` if an evaluated image has no size."""
    missing = [im.name for im in images if im.name not in sizes]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise FacebenchError(f"{source}: no image size for {missing[0]!r}{more}")


def evaluate_fddb(
    images: Sequence[FddbImage],
    sizes: Mapping[str, tuple[int, int]],
    detections: FddbDetections,
    overlap: Overlap = "pixel",
    known_names: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> FddbResult:
    """Evaluate one method's detections on the given images (official protocol).

    ``sizes``: ``{name: (width, height)}`` for every image; ``known_names``: every image
    name of the FDDB folds (blocks for those not evaluated are ignored, others are an
    error); ``progress(done, total)`` is called as images are processed.
    """
    check_sizes(images, sizes, "image sizes")
    aligned = align_detections(images, detections, known_names)
    kind = detections.kind
    counts_a = np.array([len(im.ellipses) for im in images], dtype=np.int64)
    counts_d = np.array([len(d) for d in aligned.per_image], dtype=np.int64)
    off_a = np.r_[0, np.cumsum(counts_a)]
    off_d = np.r_[0, np.cumsum(counts_d)]
    scores = np.concatenate([d[:, -1] for d in aligned.per_image]) if len(images) else np.zeros(0)
    if overlap == "pixel":
        pa, pd, po = _pixel_pairs(images, sizes, aligned.per_image, kind, progress)
    elif overlap == "geometric":
        from facebench.evaluation.fddb_geometric import geometric_pairs

        pa, pd, po = geometric_pairs(images, sizes, aligned.per_image, kind, off_a, off_d)
    else:
        raise ValueError(f"unknown overlap {overlap!r}")
    events: MatchEvents = match_events(pa, pd, po, scores, int(off_a[-1]))
    rows = roc_rows(scores, events, int(off_a[-1]), add_dbl_max=bool((counts_d == 0).any()))
    return FddbResult(
        rows=rows,
        n_images=len(images),
        n_detections=int(off_d[-1]),
        images_without_block=aligned.without_block,
        images_without_detections=int((counts_d == 0).sum()),
        ignored_blocks=aligned.ignored_blocks,
        overlap=overlap,
        kind=kind,
    )


def _pixel_pairs(
    images: Sequence[FddbImage],
    sizes: Mapping[str, tuple[int, int]],
    per_image: Sequence[np.ndarray],
    kind: str,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = 5 if kind == "rect" else 6
    pairs = pixel_overlaps_many(
        np.concatenate([im.ellipses for im in images]).reshape(-1, 5)
        if images
        else np.zeros((0, 5)),
        np.array([len(im.ellipses) for im in images], dtype=np.int64),
        np.concatenate(per_image).reshape(-1, width) if images else np.zeros((0, width)),
        np.array([len(d) for d in per_image], dtype=np.int64),
        kind,
        np.array([sizes[im.name] for im in images], dtype=np.int64).reshape(-1, 2),
        progress,
    )
    return pairs.annot, pairs.det, pairs.overlap


# --------------------------------------------------------------------------- outputs


def write_roc_files(out_dir: str | Path, name: str, result: FddbResult) -> tuple[Path, Path]:
    """Write ``<name>DiscROC.txt`` (``TPR FP threshold``) and ``<name>ContROC.txt`` (``TPR FP``).

    Numbers are printed as the official program's C++ streams print doubles (``%g``, six
    significant digits), so existing plotting scripts read them unchanged.
    """
    out_dir = Path(out_dir)
    disc_path = out_dir / f"{name}DiscROC.txt"
    cont_path = out_dir / f"{name}ContROC.txt"
    rows = result.rows
    n = rows.n_faces
    with atomic_open(disc_path, "w", encoding="utf-8", newline="\n") as f:
        for t, fp, tp in zip(rows.threshold, rows.fp, rows.tp_discrete, strict=True):
            f.write(f"{tp / n:g} {fp:g} {t:g}\n" if n else f"0 0 {t:g}\n")
    with atomic_open(cont_path, "w", encoding="utf-8", newline="\n") as f:
        for fp, tp in zip(rows.fp, rows.tp_continuous, strict=True):
            f.write(f"{tp / n:g} {fp:g}\n" if n else "0 0\n")
    return disc_path, cont_path


def plot_rocs(path: str | Path, results: Mapping[str, FddbResult], max_fp: float = 1000) -> None:
    """PNG with discrete and continuous ROC panels (x = false positives, y = TPR)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for ax, curve in zip(axes, ("discrete", "continuous"), strict=True):
        for name, res in results.items():
            tpr = res.tpr_discrete if curve == "discrete" else res.tpr_continuous
            fp = res.rows.fp
            keep = res.rows.threshold < DBL_MAX
            ax.plot(fp[keep], tpr[keep], label=name, linewidth=1.5)
        ax.set_xlim(0, max_fp)
        ax.set_ylim(0, 1)
        ax.set_xlabel("False positives")
        ax.set_ylabel("True positive rate")
        ax.set_title(f"FDDB {curve} ROC")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
