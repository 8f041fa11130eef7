"""``facebench data synth OUT``: write the synthetic default data set (WIDER + FDDB layouts)."""

from __future__ import annotations

import time

import click

from cli.app import data_group
from cli.console import ProgressCallback, log
from cli.options import OutputDir, OutputFile


@data_group.command("synth")
@click.argument(
    "out",
    type=OutputDir(),
)
@click.option(
    "--images",
    "num_images",
    default=200,
    show_default=True,
    type=click.IntRange(min=11),
    help="Number of images (train + val; val needs one per FDDB fold, so >= 11).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Random seed: the same seed writes the same bytes.",
)
@click.option(
    "--val-fraction",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="Share of images in the val split (at least 10 images).",
)
@click.option(
    "--max-side",
    default=512,
    show_default=True,
    type=click.IntRange(128, 4096),
    help="Long side of every image in pixels; face sizes scale with it.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Processes to draw with [default: up to 2]."
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    help="Write the manifest as JSON to this path ('-' = stdout).",
)
def synth_command(
    out: str,
    num_images: int,
    seed: int,
    val_fraction: float,
    max_side: int,
    workers: int | None,
    json_path: str | None,
) -> None:
    """Write a synthetic face data set to OUT, in both the WIDER FACE and FDDB layouts.

    \b
    OUT/widerface/   WIDER_{train,val}/images, wider_face_split/*.txt, ground_truth/*.mat
    OUT/fddb/        originalPics/ (the val images), FDDB-folds/, image_sizes.csv
    OUT/synth.json   manifest: counts, face-size histogram, easy/medium/hard rules

    Every facebench command runs on it: train, detect, eval wider/fddb, stats anchors.
    """
    from facebench.atomic import write_json
    from facebench.synth import generate
    from facebench.synth.generate import split_counts

    split_counts(num_images, val_fraction)  # fail on a bad split before any work
    start = time.monotonic()
    bar = ProgressCallback("drawing images")
    try:
        manifest = generate(
            out,
            num_images=num_images,
            seed=seed,
            val_fraction=val_fraction,
            max_side=max_side,
            progress=bar,
            workers=workers,
        )
    finally:
        bar.close()
    counts = manifest["counts"]
    train, val = counts["train"], counts["val"]
    log(
        f"wrote {out}: train {train['images']} images / {train['faces']} faces, val"
        f" {val['images']} images / {val['faces']} faces (easy {val['easy']}, medium"
        f" {val['medium']}, hard {val['hard']}) in {time.monotonic() - start:.1f}s"
    )
    if json_path is not None:
        write_json(json_path, manifest)
        if json_path != "-":
            log(f"wrote {json_path}")
