"""``facebench eval fddb``: the official FDDB discrete/continuous ROC for one or more methods."""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import eval_group
from cli.console import ProgressCallback, console, interactive, log, warn
from cli.options import (
    OutputDir,
    OutputFile,
    max_image_pixels_option,
    protocol_hint_options,
)
from cli.specs import parse_floats, parse_method_specs
from facebench.errors import FacebenchError


def _parse_at(values: tuple[str, ...]) -> tuple[float, ...]:
    out: list[float] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                k = float(part)
            except ValueError:
                raise click.BadParameter(f"{part!r} is not a number", param_hint="--at") from None
            if not k >= 0 or k == float("inf"):
                raise click.BadParameter(
                    f"{part!r} must be a finite number >= 0", param_hint="--at"
                )
            out.append(k)
    if not out:
        raise click.BadParameter("give at least one false-positive count", param_hint="--at")
    return tuple(out)


@eval_group.command("fddb")
@max_image_pixels_option
@click.argument("dets", nargs=-1, required=True, metavar="DETS [DETS ...]")
@click.option(
    "--folds",
    "folds_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="FDDB-folds directory (FDDB-fold-XX.txt and FDDB-fold-XX-ellipseList.txt).",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Image root (<root>/<name>.jpg); sizes are read from the headers only.",
)
@click.option(
    "--image-sizes",
    "sizes_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns name (or image),width,height instead of the images.",
)
@click.option(
    "--image-ids",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Image-id map of COCO results DETS.json (default: images.json beside each).",
)
@click.option("--fold", type=click.IntRange(1, 10), help="Evaluate one fold only (default: all).")
@click.option(
    "--format",
    "det_format",
    type=click.Choice(["auto", "rect", "ellipse"]),
    default="auto",
    show_default=True,
    help="Detection form: rect 'x y w h score' or ellipse 'ra rb theta cx cy score'.",
)
@click.option(
    "--rect-to-ellipse",
    type=click.Choice(["none", "s3fd"]),
    default="none",
    show_default=True,
    help="Convert rectangles to ellipses with the S3FD regressor before evaluating.",
)
@click.option(
    "--overlap",
    type=click.Choice(["pixel", "geometric"]),
    default="pixel",
    show_default=True,
    help="pixel: the official mask overlap; geometric: areas of the true shapes.",
)
@click.option(
    "--at",
    "at_values",
    multiple=True,
    default=("200,500,1000",),
    show_default=True,
    help="False-positive counts for the TPR table (comma-separated or repeated).",
)
@click.option(
    "--interpolate",
    is_flag=True,
    help="TPR at k by linear interpolation of the ROC instead of the official step rule.",
)
@click.option(
    "--out",
    "out_dir",
    type=OutputDir(path_type=Path),
    help="Write <name>DiscROC.txt and <name>ContROC.txt (official format) here.",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    help="Write results as JSON to this path ('-' = stdout).",
)
@click.option(
    "--plot",
    "plot_path",
    type=OutputFile(allow_stdout=False, path_type=Path),
    help="PNG with discrete and continuous ROC panels.",
)
@click.option(
    "--plot-max-fp",
    type=click.FloatRange(min=1),
    default=1000,
    show_default=True,
    help="x range of the plot (false positives).",
)
@protocol_hint_options("protocol.json beside DETS")
def eval_fddb(
    dets: tuple[str, ...],
    folds_dir: Path,
    images_dir: Path | None,
    sizes_csv: Path | None,
    image_ids: Path | None,
    fold: int | None,
    det_format: str,
    rect_to_ellipse: str,
    overlap: str,
    at_values: tuple[str, ...],
    interpolate: bool,
    out_dir: Path | None,
    json_path: str | None,
    plot_path: Path | None,
    plot_max_fp: float,
    score_thresh: float | None,
    test_scales: str | None,
    at_precision: float,
    at_fppi: float,
) -> None:
    """Evaluate FDDB detections with the official discrete and continuous ROC.

    DETS are detection files in the official layout (per image: name line, count line,
    one region per line), optionally as NAME=FILE, folders of fold-XX-out.txt files, or
    COCO results files DETS.json ([{"image_id", "bbox": [x,y,w,h], "score"}]).
    All 10 folds are evaluated in one run, as the FDDB protocol requires (--fold K for
    one). Image sizes come from the images' headers (--images) or a CSV (--image-sizes).

    \b
    Example:
      facebench eval fddb mine=dets.txt --folds FDDB-folds --image-sizes sizes.csv \\
          --out roc/ --json fddb.json --plot fddb.png
    """
    from facebench.atomic import write_json
    from facebench.evaluation.fddb import (
        align_detections,
        evaluate_fddb,
        load_detections,
        plot_rocs,
        rects_to_ellipses,
        write_roc_files,
    )
    from facebench.evaluation.fddb_extras import analyse_fddb, fddb_protocol_hints
    from facebench.evaluation.fddb_report import report_json
    from facebench.formats.fddb import available_folds, read_folds
    from facebench.formats.imagesize import image_sizes_from_folder, read_sizes_csv

    at = _parse_at(at_values)
    scales = parse_floats(test_scales, "--test-scales")
    if (images_dir is None) == (sizes_csv is None):
        raise click.UsageError("give exactly one of --images DIR or --image-sizes CSV")
    methods = parse_method_specs(dets)

    fold_numbers = available_folds(folds_dir)
    all_images = read_folds(folds_dir, fold_numbers)
    images = [im for im in all_images if fold is None or im.fold == fold]
    if fold is not None and not images:
        raise FacebenchError(f"{folds_dir}: fold {fold} not found")
    if fold is None and len(fold_numbers) != 10:
        warn(f"{folds_dir}: {len(fold_numbers)} folds found (the FDDB protocol uses all 10)")
    if sizes_csv is not None:
        sizes = read_sizes_csv(sizes_csv)
        source = str(sizes_csv)
    else:
        assert images_dir is not None
        sizes = image_sizes_from_folder(images_dir, [im.name for im in images])
        source = str(images_dir)
    missing = [im.name for im in images if im.name not in sizes]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FacebenchError(f"{source}: no size for image {missing[0]!r}{more}")
    log(
        f"FDDB: {len(images)} images, {sum(len(im.ellipses) for im in images)} faces, "
        f"folds {fold if fold is not None else ', '.join(map(str, fold_numbers))}"
    )

    known = [im.name for im in all_images]
    results = {}
    analyses = {}
    for name, path in methods:
        detections = load_detections(path, det_format, image_ids)  # type: ignore[arg-type]
        if rect_to_ellipse == "s3fd":
            detections = rects_to_ellipses(detections)
        progress = ProgressCallback(f"{name}: overlaps")
        result = evaluate_fddb(images, sizes, detections, overlap, known, progress)  # type: ignore[arg-type]
        progress.close()
        results[name] = result
        analyses[name] = analyse_fddb(
            images, sizes, align_detections(images, detections, known).per_image,
            detections.kind, result, hints=fddb_protocol_hints(path).override(score_thresh, scales),
            at_precision=at_precision, at_fppi=at_fppi,
        )  # fmt: skip
        for message in analyses[name].warnings:
            warn(f"{name}: {message}")
        if result.images_without_block:
            first = result.images_without_block[0]
            warn(
                f"{name}: {len(result.images_without_block)} images have no detection block "
                f"(counted as no detections), e.g. {first!r}"
            )
        if result.ignored_blocks:
            log(f"{name}: ignored {result.ignored_blocks} blocks of images in other folds")

    # The tables come before any file: a failed write loses nothing already computed.
    _print_table(results, at, interpolate)
    _print_operating_points(analyses)
    if out_dir is not None:
        for name, result in results.items():
            disc, cont = write_roc_files(out_dir, name, result)
            log(f"{name}: wrote {disc} and {cont}")
    if plot_path is not None:
        plot_rocs(plot_path, results, max_fp=plot_max_fp)
        log(f"wrote {plot_path}")
    if json_path is not None:
        folds = [fold] if fold is not None else fold_numbers
        payload = report_json(results, folds, overlap, rect_to_ellipse, at, interpolate, analyses)
        write_json(json_path, payload)
        if json_path != "-":
            log(f"wrote {json_path}")


def _print_table(results, at: tuple[float, ...], interpolate: bool) -> None:
    from rich.table import Table

    rule = "interpolated" if interpolate else "step"
    table = Table(title=f"FDDB true positive rate at k false positives ({rule})")
    table.add_column("method")
    for curve in ("disc", "cont"):
        for k in at:
            table.add_column(f"{curve}@{k:g}", justify="right")
    for name, res in results.items():
        cells = [f"{res.tpr_at(k, 'discrete', interpolate):.4f}" for k in at]
        cells += [f"{res.tpr_at(k, 'continuous', interpolate):.4f}" for k in at]
        table.add_row(name, *cells)
    if interactive():
        console.print(table)
    else:
        header = ["method"] + [c.header for c in table.columns[1:]]  # type: ignore[misc]
        log("  ".join(str(h) for h in header))
        for name, res in results.items():
            row = [f"{res.tpr_at(k, 'discrete', interpolate):.4f}" for k in at]
            row += [f"{res.tpr_at(k, 'continuous', interpolate):.4f}" for k in at]
            log("  ".join([name, *row]))


def _print_operating_points(analyses) -> None:
    """One log line per method: best F1, the precision target and the FPPI target."""
    for name, a in analyses.items():
        p = a.operating_points
        best, at_p, at_f = p["best_f1"] or {}, p["at_precision"], p["at_fppi"]

        def fmt(point, key):
            value = point.get(key)
            return "n/a" if value is None else f"{value:.4g}"

        log(
            f"{name}: best F1 {fmt(best, 'f1')} at score {fmt(best, 'score')} "
            f"(P {fmt(best, 'precision')}, R {fmt(best, 'recall')}); "
            f"P>={at_p['target']:g}: score {fmt(at_p, 'score')}, R {fmt(at_p, 'recall')}; "
            f"R at {at_f['target']:g} FP/image: {fmt(at_f, 'recall')}"
        )
