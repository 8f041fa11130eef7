"""``facebench eval wider``: WIDER FACE easy/medium/hard/all AP with the official protocol."""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import eval_group
from cli.console import ProgressCallback, log, warn
from cli.specs import parse_method_specs

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
@click.option("--json", "json_path", help="Write AP, curves and counts as JSON ('-' = stdout).")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write precision-recall curves as a PNG.",
)
@click.option(
    "--curves",
    "curves_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the PR curve points as CSV.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Missing or malformed prediction files are errors (default: no predictions).",
)
def eval_wider(
    pred: tuple[str, ...],
    gt_dir: Path,
    protocol: str,
    json_path: str | None,
    plot_path: Path | None,
    curves_path: Path | None,
    strict: bool,
) -> None:
    """Evaluate prediction folders PRED (official layout <event>/<image>.txt, or NAME=DIR).

    Prints one row per method with AP (%) for Easy, Medium, Hard and All (every face).
    """
    from facebench.atomic import write_json
    from facebench.evaluation.wider import evaluate_wider
    from facebench.evaluation.wider_report import (
        MethodResult,
        format_table,
        report_json,
        write_curves_csv,
        write_plot,
    )
    from facebench.formats.wider import read_eval_gt, read_wider_predictions

    methods = parse_method_specs(pred)
    gt = read_eval_gt(gt_dir)
    log(f"ground truth: {gt.n_images} images, {len(gt.events)} events ({gt_dir})")
    results = []
    for name, folder in methods:
        reading = ProgressCallback(f"reading {name}")
        try:
            preds = read_wider_predictions(folder, gt, strict=strict, progress=reading)
        finally:
            reading.close()
        _report_problems(name, preds)
        matching = ProgressCallback(f"evaluating {name}")
        try:
            evaluation = evaluate_wider(gt, preds, protocol=protocol, progress=matching)
        finally:
            matching.close()
        for note in evaluation.notes:
            warn(f"{name}: {note}")
        results.append(MethodResult(name, folder, preds, evaluation))
    if json_path:
        write_json(json_path, report_json(results, gt_dir, protocol))
    if curves_path:
        write_curves_csv(curves_path, results)
    if plot_path:
        write_plot(plot_path, results, protocol)
    # The table is the result; with JSON on stdout it moves to stderr to keep stdout parseable.
    to_stderr = json_path == "-"
    click.echo(f"WIDER FACE AP (%), protocol {protocol}", err=to_stderr)
    click.echo(format_table(results), err=to_stderr)


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
