"""``facebench eval wider``: WIDER FACE easy/medium/hard/all AP with the official protocol."""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import eval_group
from cli.console import ProgressCallback, log, warn
from cli.options import (
    OutputFile,
    protocol_hint_options,
)
from cli.specs import parse_floats, parse_method_specs
from facebench.errors import FacebenchError

_SHOWN = 5  # problems listed one by one before summarising the rest


@eval_group.command("wider")
@click.argument("pred", nargs=-1, required=True)
@click.option(
    "--gt",
    "gt_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat.",
)
@click.option(
    "--protocol",
    type=click.Choice(["official", "python-port"]),
    default="official",
    show_default=True,
    help="official: eval_tools (MATLAB); python-port: the widely copied Python port.",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    help="Write AP, curves and counts as JSON ('-' = stdout).",
)
@click.option(
    "--plot",
    "plot_path",
    type=OutputFile(allow_stdout=False, path_type=Path),
    help="Write precision-recall curves as a PNG.",
)
@click.option(
    "--curves",
    "curves_path",
    type=OutputFile(allow_stdout=False, path_type=Path),
    help="Write the PR curve points as CSV.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Missing or malformed prediction files are errors (default: no predictions).",
)
@click.option(
    "--image-ids",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Image-id map of COCO results PRED.json (default: images.json beside each).",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="WIDER images (<event>/<image>.jpg): image sizes for the outside-image check.",
)
@click.option(
    "--image-sizes",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV name,width,height (name event/image) instead of --images.",
)
@protocol_hint_options("PRED/protocol.json")
@click.option(
    "--breakdown",
    is_flag=True,
    help="Recall and AP by face size, attribute and event (README: Breakdowns).",
)
@click.option(
    "--breakdown-plot",
    type=OutputFile(allow_stdout=False, path_type=Path),
    default=None,
    help="Write the breakdown as a PNG (implies --breakdown).",
)
def eval_wider(
    pred: tuple[str, ...],
    gt_dir: Path,
    protocol: str,
    json_path: str | None,
    plot_path: Path | None,
    curves_path: Path | None,
    strict: bool,
    image_ids: Path | None,
    images_dir: Path | None,
    image_sizes: Path | None,
    score_thresh: float | None,
    test_scales: str | None,
    at_precision: float,
    at_fppi: float,
    breakdown: bool,
    breakdown_plot: Path | None,
) -> None:
    """Evaluate prediction folders PRED (official layout <event>/<image>.txt, or NAME=DIR)
    or COCO results files PRED.json ([{"image_id", "bbox": [x,y,w,h], "score"}]).

    Prints one row per method with AP (%) for Easy, Medium, Hard and All (every face),
    then operating points per method and setting, protocol-check warnings and, with
    --breakdown, recall and AP per face size, attribute and event.
    """
    from facebench.atomic import write_json
    from facebench.evaluation.breakdown import format_breakdown, write_breakdown_plot
    from facebench.evaluation.wider import evaluate_wider
    from facebench.evaluation.wider_extras import (
        analyse_wider,
        format_operating_points,
        read_protocol_hints,
        wider_image_sizes,
    )
    from facebench.evaluation.wider_report import (
        MethodResult,
        format_table,
        report_json,
        write_curves_csv,
        write_plot,
    )
    from facebench.formats.coco import (
        is_coco_results,
        read_coco_results,
        wider_predictions_from_coco,
    )
    from facebench.formats.wider import read_eval_gt, read_wider_predictions

    if images_dir is not None and image_sizes is not None:
        raise FacebenchError("give --images or --image-sizes, not both")
    scales = parse_floats(test_scales, "--test-scales")
    breakdown = breakdown or breakdown_plot is not None
    methods = parse_method_specs(pred)
    gt = read_eval_gt(gt_dir)
    log(f"ground truth: {gt.n_images} images, {len(gt.events)} events ({gt_dir})")
    sizes = wider_image_sizes(gt, images_dir, image_sizes)
    results = []
    for name, folder in methods:
        reading = ProgressCallback(f"reading {name}")
        try:
            if is_coco_results(folder):
                preds = wider_predictions_from_coco(read_coco_results(folder, image_ids), gt)
            else:
                preds = read_wider_predictions(folder, gt, strict=strict, progress=reading)
        finally:
            reading.close()
        _report_problems(name, preds)
        matching = ProgressCallback(f"evaluating {name}")
        try:
            evaluation = evaluate_wider(gt, preds, protocol=protocol, progress=matching)
        finally:
            matching.close()
        hints = read_protocol_hints(folder).override(score_thresh, scales)
        analysis = analyse_wider(
            gt, evaluation, preds.rows, preds.offsets, hints=hints, image_sizes=sizes,
            at_precision=at_precision, at_fppi=at_fppi, breakdown=breakdown,
        )  # fmt: skip
        for note in evaluation.notes:
            if "pre-thresholded" not in note:  # the thresholded check says it, with reasons
                warn(f"{name}: {note}")
        for check in analysis.checks:
            # The evaluation's own note already explains equal scores (division by zero).
            if check.status == "warn" and check.name != "equal_scores":
                warn(f"{name}: {check.message}")
        results.append(MethodResult(name, folder, preds, evaluation, analysis))
    # The tables are the result: shown before any file is written, so a failed write loses
    # nothing. With JSON on stdout they move to stderr to keep stdout parseable.
    to_stderr = json_path == "-"
    click.echo(f"WIDER FACE AP (%), protocol {protocol}", err=to_stderr)
    click.echo(format_table(results), err=to_stderr)
    named = [(r.name, r.analysis) for r in results if r.analysis is not None]
    click.echo("\nOperating points (%; thr: normalised WIDER threshold, score: raw)",
               err=to_stderr)  # fmt: skip
    click.echo(format_operating_points(named), err=to_stderr)
    parts = [(n, a.breakdown) for n, a in named if a.breakdown is not None]
    if breakdown:
        click.echo("\nBreakdown (%; AP, and R = recall at the best-F1 threshold of All)",
                   err=to_stderr)  # fmt: skip
        click.echo(format_breakdown(parts), err=to_stderr)
    if json_path:
        write_json(json_path, report_json(results, gt_dir, protocol))
    if curves_path:
        write_curves_csv(curves_path, results)
    if plot_path:
        write_plot(plot_path, results, protocol)
    if breakdown and breakdown_plot is not None:
        write_breakdown_plot(breakdown_plot, parts)

def _report_problems(name: str, preds) -> None:
    total = preds.n_images
    if preds.missing:
        shown = ", ".join(preds.missing[:_SHOWN])
        more = f" and {len(preds.missing) - _SHOWN} more" if len(preds.missing) > _SHOWN else ""
        warn(
            f"{name}: {len(preds.missing)} of {total} prediction files missing "
            f"(no predictions for those images): {shown}{more}"
        )
    for problem in preds.invalid[:_SHOWN]:
        warn(f"{name}: {problem} (file ignored)")
    if len(preds.invalid) > _SHOWN:
        warn(f"{name}: {len(preds.invalid) - _SHOWN} more prediction files ignored as malformed")
    for note in preds.notes[:_SHOWN]:
        warn(f"{name}: {note}")
    if preds.empty:
        log(f"{name}: {len(preds.empty)} prediction files hold no boxes (count 0)")
    if preds.extra:
        warn(
            f"{name}: {len(preds.extra)} prediction files are not in the ground truth "
            f"(ignored), e.g. {preds.extra[0]}"
        )
