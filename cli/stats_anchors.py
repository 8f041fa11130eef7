"""``facebench stats anchors``: positive / negative training anchors per scale and design.

The paper's Figure 2 (a)-(e) for any training set: per design, how many anchors of each
scale are tiled, matched positive or negative, and sampled for training, over the data set
with the training augmentation; plus faces per scale bucket and the faces no anchor matches.
The counting lives in :mod:`detector.anchor_stats`; this module parses options and renders
the table (stderr), JSON, CSV and the PNG figure.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from cli.app import stats_group
from cli.console import ProgressCallback, console, interactive, log
from cli.options import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    OutputFile,
)
from facebench.atomic import atomic_open, write_json
from facebench.errors import FacebenchError

_DEFAULT_DESIGNS = "rpn,fpn,fpn-finest-stride,fpn-finest,fpn-finest-sampling"


@stats_group.command("anchors")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--designs",
    default=_DEFAULT_DESIGNS,
    show_default=True,
    help="Comma-separated design names (see detector.designs).",
)
@click.option(
    "--group-size",
    type=POSITIVE_INT,
    default=None,
    help="Override every design's sample budget N (per scale for group sampling, N x scales"
    " per image for random 1:3); default: each design's own (2048).",
)
@click.option(
    "--epochs",
    type=POSITIVE_INT,
    default=1,
    show_default=True,
    help="Augmented passes.",
)
@click.option(
    "--seed",
    type=NON_NEGATIVE_INT,
    default=0,
    show_default=True,
    help="Augmentation/sampling seed.",
)
@click.option(
    "--max-side",
    type=POSITIVE_INT,
    default=1200,
    show_default=True,
    help="Training crop's longest side.",
)
@click.option(
    "--limit",
    type=POSITIVE_INT,
    default=None,
    help="Count only the first N images.",
)
@click.option(
    "--workers",
    type=NON_NEGATIVE_INT,
    default=None,
    help="Worker processes (default: CPU count, at most 4; 0 counts in this process).",
)
@click.option("--split", default="train", show_default=True, help="WIDER split (train or val).")
@click.option(
    "--image-sizes",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV name,width,height giving image sizes when the images are absent.",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    default=None,
    help="Write the report as JSON ('-': stdout).",
)
@click.option(
    "--csv",
    "csv_path",
    type=OutputFile(allow_stdout=False, path_type=Path),
    default=None,
    help="Write one row per design and scale.",
)
@click.option(
    "--plot",
    "plot_path",
    type=OutputFile(allow_stdout=False, path_type=Path),
    default=None,
    help="PNG of the positive/negative distributions per scale, designs side by side (Figure 2).",
)
def stats_anchors(
    data: Path,
    designs: str,
    group_size: int | None,
    epochs: int,
    seed: int,
    max_side: int,
    limit: int | None,
    workers: int | None,
    split: str,
    image_sizes: Path | None,
    json_path: str | None,
    csv_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Anchors, positives, negatives and training samples per anchor scale, per design.

    DATA: a WIDER FACE layout (images, or sizes from voc_xml/ or a CSV when the images are
    absent), an FDDB layout (FDDB-folds/ + image_sizes.csv) or a synthetic data folder.
    """
    from detector.anchor_stats import count_anchor_stats, open_training_set
    from detector.augment import TrainAugment
    from detector.designs import get_design

    names = [n.strip() for n in designs.split(",") if n.strip()]
    if not names:
        raise FacebenchError("--designs: give at least one design name")
    if group_size is not None and group_size < 1:
        raise FacebenchError(f"--group-size must be >= 1, got {group_size}")
    overrides = {} if group_size is None else {"group_size": group_size}
    chosen = [get_design(n, **overrides) for n in names]
    if max_side < 1:
        raise FacebenchError(f"--max-side must be >= 1, got {max_side}")
    if limit is not None and limit < 1:
        raise FacebenchError(f"--limit must be >= 1, got {limit}")
    if plot_path is not None and plot_path.suffix.lower() != ".png":
        raise FacebenchError(f"--plot {plot_path}: the figure is a PNG; use a .png name")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)

    start = time.monotonic()
    training = open_training_set(data, split=split, image_sizes=image_sizes)
    count = len(training.images) if limit is None else min(limit, len(training.images))
    log(
        f"{training.kind}: {len(training.images)} images, {training.num_faces} faces"
        f" ({training.num_ignored} ignored); counting {count} x {epochs} epoch(s),"
        f" {len(names)} design(s), {workers} worker(s)"
    )
    progress = ProgressCallback("counting anchors")
    try:
        stats = count_anchor_stats(
            training,
            chosen,
            epochs=epochs,
            seed=seed,
            augment=TrainAugment(max_side=max_side),
            workers=workers,
            limit=limit,
            progress=progress,
        )
    finally:
        progress.close()
    stats.extra["seconds"] = round(time.monotonic() - start, 3)

    # Piped output has no terminal width (rich assumes 80 and elides numbers): give the
    # tables the room they need there.
    out = console if interactive() else Console(file=sys.stderr, width=160, highlight=False)
    compact = out.width < 150
    for name, design_stats in stats.designs.items():
        out.print(_table(name, design_stats, compact))
    log(f"counted in {stats.extra['seconds']:.1f} s")
    if json_path is not None:
        write_json(json_path, stats.to_dict())
    if csv_path is not None:
        write_csv(csv_path, stats.rows())
    if plot_path is not None:
        from detector.anchor_stats import plot_distributions

        plot_distributions(stats, plot_path)
        log(f"figure: {plot_path}")


def _table(name: str, stats, compact: bool = False):
    """A rich table of one design's counts; ``compact`` abbreviates large numbers (12.3M)
    so the table fits an 80-column terminal."""
    from rich.table import Table

    number = _compact if compact else (lambda n: f"{int(n):,}")
    design = stats.design
    ceiling = stats.recall_ceiling
    caption = "scale/str: anchor scale / stride; pos, neg: anchors matched; unmatch: faces no"
    caption += " anchor matches; recall ceiling: "
    caption += "n/a (no faces)" if ceiling is None else f"{ceiling:.4f}"
    table = Table(
        title=f"{name} ({design.sampler} sampling, N={design.group_size})",
        caption=caption,
        show_footer=True,
        padding=(0, 0 if compact else 1),
    )
    pos_dist, neg_dist = stats.distributions()
    columns = [
        ("scale/str", [f"{s}/{t}" for s, t in zip(design.scales, design.strides, strict=True)]),
        ("anchors", stats["anchors"]),
        ("pos", stats["positives"]),
        ("neg", stats["negatives"]),
        ("ignored", stats["ignored"]),
        ("sampled pos", stats["sampled_positives"]),
        ("sampled neg", stats["sampled_negatives"]),
        ("pos dist", pos_dist),
        ("neg dist", neg_dist),
        ("faces", stats["faces"]),
        ("unmatch", stats["faces_unmatched"]),
    ]
    for header, values in columns:
        if header == "scale/str":
            footer = "total"
        elif header.endswith("dist"):
            footer = f"{float(sum(values)):.3f}"
        else:
            footer = number(sum(int(v) for v in values))
        table.add_column(header, footer=footer, justify="right")

    def cell(header: str, value) -> str:
        if isinstance(value, str):
            return value
        return f"{float(value):.3f}" if header.endswith("dist") else number(value)

    for k in range(design.num_scales):
        table.add_row(*[cell(header, values[k]) for header, values in columns])
    return table


def _compact(n) -> str:
    n = int(n)
    for size, suffix in ((10**9, "G"), (10**6, "M"), (10**4, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}" if abs(n) < 100 * size else f"{n // size}{suffix}"
    return str(n)


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """One row per (design, scale), header from the first row's keys (atomically)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
