"""``facebench quickstart``: options and output; the pipeline is
:func:`detector.quickstart.run_quickstart` (its docstring lists the steps)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import main
from cli.console import ProgressCallback, console, interactive, log
from cli.options import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    OutputDir,
    OutputFile,
)
from detector.quickstart import QUICK, Reporter, run_quickstart, summary_rows


@main.command("quickstart")
@click.option(
    "--out",
    "out",
    type=OutputDir(),
    required=True,
    help="Folder for data, run, detections and report (created; must be new or empty).",
)
@click.option("--images", default=200, show_default=True, help="Synthetic images (25% val).")
@click.option(
    "--iterations",
    type=POSITIVE_INT,
    default=QUICK["iterations"],
    show_default=True,
    help="Training iterations (2 images each).",
)
@click.option(
    "--backbone",
    default="tiny",
    show_default=True,
    type=click.Choice(["tiny", "resnet18"]),
    help="Small backbone for CPU.",
)
@click.option(
    "--seed",
    type=NON_NEGATIVE_INT,
    default=0,
    show_default=True,
)
@click.option(
    "--threads",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="torch threads (0: torch's default). One thread is as fast for the small "
    "CPU model and immune to oversubscription on a busy machine.",
)
@click.option(
    "--workers",
    type=NON_NEGATIVE_INT,
    default=0,
    show_default=True,
    help="Data-loading processes (0: load in the training process).",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(),
    help="Also write the summary JSON here ('-' for stdout).",
)
def quickstart_command(
    out: str,
    images: int,
    iterations: int,
    backbone: str,
    seed: int,
    threads: int,
    workers: int,
    json_path: str | None,
) -> None:
    """Synthetic data -> train -> detect -> WIDER AP and FDDB ROC report, on CPU.

    Writes OUT/summary.json ({"wider": {"easy", "medium", "hard"}, "fddb": {"discrete":
    {"1000": tpr}}, "train": {"iterations", "seconds"}, ...}) and OUT/report/.
    """
    from cli.train import set_threads
    from facebench.atomic import write_json

    set_threads(threads)
    from cli.console import warn
    from cli.train import TrainProgress

    reporter = Reporter(log=log, warn=warn, progress=ProgressCallback,
                        train_progress=TrainProgress())
    summary = run_quickstart(Path(out), images, iterations, backbone, seed, workers, reporter)
    _print_table(summary)
    if json_path:
        write_json(json_path, summary)


def _print_table(summary: dict) -> None:
    if interactive():
        from rich.table import Table

        table = Table(title="facebench quickstart")
        table.add_column("metric")
        table.add_column("value")
        for k, v in summary_rows(summary):
            table.add_row(k, v)
        console.print(table)
    else:
        for k, v in summary_rows(summary):
            log(f"{k}: {v}")
    log(f"summary: {Path(summary['report']).parent / 'summary.json'}")
